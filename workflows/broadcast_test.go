package workflows_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/workflows"
)

// fakePages serves n profiles' pages: every third user is in the audience; a page takes a minute.
func fakePages(env *testsuite.TestWorkflowEnvironment, n int, afters *[]string) {
	env.OnActivity(a.BroadcastPage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.BroadcastPageInput) (activities.BroadcastPageResult, error) {
			*afters = append(*afters, in.After)
			from := 0
			if in.After != "" {
				_, _ = fmt.Sscanf(in.After, "u%05d", &from)
				from++
			}
			res := activities.BroadcastPageResult{Next: in.After}
			for i := from; i < n && i < from+in.Limit; i++ {
				res.Scanned++
				res.Next = fmt.Sprintf("u%05d", i)
				if i%3 == 0 {
					res.Matched++
					res.Started++
				}
			}
			res.Done = from+in.Limit > n
			return res, nil
		})
}

func TestBroadcastPagesThroughTheAudience(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var afters []string
	fakePages(env, 1200, &afters)
	env.ExecuteWorkflow(workflows.BroadcastWorkflow, workflows.BroadcastInput{Audience: audience.Audience{ID: "gold"},
		JourneyID: "promo", Run: "r1", PageSize: 500})
	require.NoError(t, env.GetWorkflowError())
	var st workflows.BroadcastProgress
	require.NoError(t, env.GetWorkflowResult(&st))
	require.Equal(t, []string{"", "u00499", "u00999"}, afters, "each page after the last user of the one before")
	require.Equal(t, "done", st.State)
	require.EqualValues(t, 1200, st.Scanned)
	require.EqualValues(t, 400, st.Matched)
	require.EqualValues(t, 400, st.Started)
}

func TestBroadcastPausesResumesAndCancels(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var afters []string
	fakePages(env, 100_000, &afters)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalPause, nil) }, time.Millisecond)
	var paused workflows.BroadcastProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryBroadcast)
		require.NoError(t, err)
		require.NoError(t, v.Get(&paused))
	}, time.Hour)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalResume, nil) }, 2*time.Hour)
	env.RegisterDelayedCallback(func() { env.CancelWorkflow() }, 2*time.Hour+time.Millisecond)
	env.ExecuteWorkflow(workflows.BroadcastWorkflow, workflows.BroadcastInput{Audience: audience.Audience{ID: "gold"},
		JourneyID: "promo", Run: "r1", PageSize: 500})
	require.NoError(t, env.GetWorkflowError())
	var st workflows.BroadcastProgress
	require.NoError(t, env.GetWorkflowResult(&st))
	require.Equal(t, "paused", paused.State)
	require.Less(t, paused.Scanned, int64(100_000), "paused before the end")
	require.Equal(t, "cancelled", st.State)
	require.Less(t, st.Scanned, int64(100_000))
}
