package filter_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/internal/testenv"
)

var day = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func capRequest(user, key string) filter.Request {
	return filter.Request{UserID: user, DispatchKey: key, Now: day, Channel: "webhook"}
}

func TestBlacklist(t *testing.T) {
	env := testenv.Require(t)
	rdb := env.Redis(t)
	ctx := context.Background()
	key := testenv.Unique("test:blacklist:")
	t.Cleanup(func() { rdb.Del(context.Background(), key) })
	banned := testenv.Unique("u")
	require.NoError(t, rdb.SAdd(ctx, key, banned).Err())
	bl := filter.NewBlacklist(rdb, key)

	tests := []struct {
		name string
		user string
		want filter.Verdict
	}{
		{name: "listed user dropped", user: banned, want: filter.Verdict{Outcome: filter.Drop, Reason: "user is on the blacklist"}},
		{name: "other user passes", user: testenv.Unique("u"), want: filter.Verdict{Outcome: filter.Pass}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bl.Check(ctx, filter.Request{UserID: tt.user})
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	// In a chain, the verdict names the filter.
	v, err := filter.Chain{bl}.Check(ctx, filter.Request{UserID: banned})
	require.NoError(t, err)
	require.Equal(t, "blacklist", v.Filter)
}

func TestDailyCap(t *testing.T) {
	env := testenv.Require(t)
	rdb := env.Redis(t)
	ctx := context.Background()
	dc := filter.NewDailyCap(rdb, testenv.Unique("t"), 3)
	user := testenv.Unique("u")

	var passed []string
	for i := range 5 {
		key := fmt.Sprintf("reach/r/%s/e%d/send/webhook", user, i)
		v, err := dc.Check(ctx, capRequest(user, key))
		require.NoError(t, err)
		if v.Outcome == filter.Pass {
			passed = append(passed, key)
		} else {
			require.Equal(t, filter.Drop, v.Outcome)
			require.Equal(t, "daily cap of 3 sends reached", v.Reason)
		}
	}
	require.Len(t, passed, 3)

	// A retried check of a send that holds a slot passes and takes no second slot.
	v, err := dc.Check(ctx, capRequest(user, passed[0]))
	require.NoError(t, err)
	require.Equal(t, filter.Pass, v.Outcome)
	v, err = dc.Check(ctx, capRequest(user, "reach/r/"+user+"/new/send/webhook"))
	require.NoError(t, err)
	require.Equal(t, filter.Drop, v.Outcome, "the retry must not have freed or taken a slot")

	// Another user and another day have their own caps.
	v, err = dc.Check(ctx, capRequest(testenv.Unique("u"), "k"))
	require.NoError(t, err)
	require.Equal(t, filter.Pass, v.Outcome)
	next := capRequest(user, "reach/r/"+user+"/tomorrow/send/webhook")
	next.Now = day.Add(24 * time.Hour)
	v, err = dc.Check(ctx, next)
	require.NoError(t, err)
	require.Equal(t, filter.Pass, v.Outcome)

	// Release frees a slot for another send.
	require.NoError(t, dc.Release(ctx, capRequest(user, passed[1])))
	v, err = dc.Check(ctx, capRequest(user, "reach/r/"+user+"/after-release/send/webhook"))
	require.NoError(t, err)
	require.Equal(t, filter.Pass, v.Outcome)
	v, err = dc.Check(ctx, capRequest(user, "reach/r/"+user+"/one-more/send/webhook"))
	require.NoError(t, err)
	require.Equal(t, filter.Drop, v.Outcome)
}

// Two reaches must never both take the last slot.
func TestDailyCapConcurrent(t *testing.T) {
	env := testenv.Require(t)
	rdb := env.Redis(t)
	ctx := context.Background()
	dc := filter.NewDailyCap(rdb, testenv.Unique("t"), 3)
	user := testenv.Unique("u")

	const n = 50
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		passes int
		errs   []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			v, err := dc.Check(ctx, capRequest(user, fmt.Sprintf("reach/r/%s/e%d/send/webhook", user, i)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if v.Outcome == filter.Pass {
				passes++
			}
		})
	}
	close(start)
	wg.Wait()
	require.Empty(t, errs)
	require.Equal(t, 3, passes)
}
