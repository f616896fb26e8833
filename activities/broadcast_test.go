package activities_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/profile"
)

type fakePager []profile.Profile

func (f fakePager) Page(_ context.Context, after string, limit int) ([]profile.Profile, error) {
	var out []profile.Profile
	for _, p := range f {
		if p.UserID > after && len(out) < limit {
			out = append(out, p)
		}
	}
	return out, nil
}

type fakeStarter struct {
	mu      sync.Mutex
	started map[string]bool
	fail    string
}

func (f *fakeStarter) StartAudienceReach(_ context.Context, aud, user, journeyID, run string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if user == f.fail {
		return false, errors.New("temporal is away")
	}
	id := aud + "/" + user + "/" + run
	if f.started[id] {
		return false, nil
	}
	f.started[id] = true
	return true, nil
}

// A page starts its members (once: a retried page finds them started) at the rate, and says
// where the next page starts.
func TestBroadcastPage(t *testing.T) {
	var ps fakePager
	for i := range 120 {
		tier := "silver"
		if i%3 == 0 {
			tier = "gold"
		}
		ps = append(ps, profile.Profile{UserID: fmt.Sprintf("u%03d", i), Attrs: map[string]any{"tier": tier}})
	}
	st := &fakeStarter{started: map[string]bool{}}
	acts := &activities.Activities{Pages: ps, Reaches: st}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	in := activities.BroadcastPageInput{Audience: audience.Audience{ID: "gold", When: `profile.attrs.tier == "gold"`},
		JourneyID: "j", Run: "r", Limit: 100, Rate: 400}
	began := time.Now()
	v, err := env.ExecuteActivity(acts.BroadcastPage, in)
	require.NoError(t, err)
	var res activities.BroadcastPageResult
	require.NoError(t, v.Get(&res))
	require.Equal(t, activities.BroadcastPageResult{Next: "u099", Scanned: 100, Matched: 34, Started: 34}, res)
	require.GreaterOrEqual(t, time.Since(began), 80*time.Millisecond, "34 starts at 400/s take 83ms")

	v, err = env.ExecuteActivity(acts.BroadcastPage, in) // the page again
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	require.EqualValues(t, 0, res.Started)
	require.EqualValues(t, 34, res.Already)

	in.After = "u099"
	v, err = env.ExecuteActivity(acts.BroadcastPage, in)
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	require.Equal(t, activities.BroadcastPageResult{Next: "u119", Scanned: 20, Matched: 6, Started: 6, Done: true}, res)

	st.fail = "u003"
	in.After, in.Rate = "", 0
	_, err = env.ExecuteActivity(acts.BroadcastPage, in)
	require.ErrorContains(t, err, "start the reach of u003")
}

type fakeLists map[string]bool

func (f fakeLists) HasMany(_ context.Context, list string, users []string) ([]bool, error) {
	on := make([]bool, len(users))
	for i, u := range users {
		on[i] = f[list+"/"+u]
	}
	return on, nil
}

// An audience naming lists reaches only the members on every one of them.
func TestBroadcastPageLists(t *testing.T) {
	var ps fakePager
	for i := range 10 {
		ps = append(ps, profile.Profile{UserID: fmt.Sprintf("u%d", i)})
	}
	acts := &activities.Activities{Pages: ps, Reaches: &fakeStarter{started: map[string]bool{}},
		Lists: fakeLists{"whitelist/u2": true, "whitelist/u7": true}}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	v, err := env.ExecuteActivity(acts.BroadcastPage, activities.BroadcastPageInput{Audience: audience.Audience{ID: "wl", Lists: []string{"whitelist"}},
		JourneyID: "j", Run: "r", Limit: 100})
	require.NoError(t, err)
	var res activities.BroadcastPageResult
	require.NoError(t, v.Get(&res))
	require.EqualValues(t, 10, res.Scanned)
	require.EqualValues(t, 2, res.Started)
}
