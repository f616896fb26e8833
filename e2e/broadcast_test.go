package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/workflows"
)

// TestBroadcast: an audience of the test's gold users (one profile in four) broadcast the
// cart-reminder journey on a real stack: every member is reached once and nobody else; the same
// run started again finds every reach started and reaches nobody twice.
func TestBroadcast(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	ctx := context.Background()
	const users = 800
	profiles := make([]profile.Profile, users)
	gold := map[string]bool{}
	for i := range profiles {
		tier := "silver"
		if i%4 == 0 {
			tier = "gold"
		}
		u := fmt.Sprintf("%s-u%04d", p.id, i)
		profiles[i] = profile.Profile{UserID: u, Attrs: map[string]any{"tier": tier}}
		if tier == "gold" {
			gold[u] = true
		}
	}
	require.NoError(t, profile.NewStore(p.store.Pool()).UpsertMany(ctx, profiles))

	aud := audience.Audience{ID: "gold-" + p.id, When: fmt.Sprintf(`profile.user_id.startsWith(%q) && profile.attrs.tier == "gold"`, p.id)}
	in := workflows.BroadcastInput{Audience: aud, JourneyID: "cart-reminder", Run: "r1", Rate: 500, PageSize: 100}
	tc := p.env.Temporal(t)
	run := func() workflows.BroadcastProgress {
		t.Helper()
		wr, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.BroadcastID(aud.ID, in.Run), TaskQueue: p.queue},
			workflows.BroadcastWorkflow, in)
		require.NoError(t, err)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var st workflows.BroadcastProgress
		require.NoError(t, wr.Get(wctx, &st))
		return st
	}
	st := run()
	require.Equal(t, "done", st.State)
	require.EqualValues(t, len(gold), st.Matched)
	require.EqualValues(t, len(gold), st.Started)
	require.GreaterOrEqual(t, st.Scanned, int64(users), "every profile read (the table holds other tests' too)")

	p.waitDeliveries(len(gold))
	byUser := p.deliveriesByUser()
	for u, n := range byUser {
		require.True(t, gold[u], "%s is not in the audience", u)
		require.Equal(t, 1, n, "%s reached once", u)
	}
	require.Len(t, byUser, len(gold))

	again := run()
	require.Equal(t, "done", again.State)
	require.EqualValues(t, len(gold), again.Already, "the same run again: every reach was started")
	require.Zero(t, again.Started)
	time.Sleep(time.Second)
	require.Len(t, p.receiver.Deliveries(), len(gold), "nobody reached twice")
}
