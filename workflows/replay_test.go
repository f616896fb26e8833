package workflows_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/workflows"
)

// TestReplay replays the histories recorded on a real Temporal server (one per journey shape, see
// e2e.TestRecordHistories) against the current workflow code: a change that would break runs in
// flight fails here. Such a change goes behind workflow.GetVersion; the histories stay.
func TestReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 7, "one recorded history per journey shape")
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(workflows.ReachWorkflow)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}

// The replay test can fail: a workflow that adds a timer before its first step is refused on
// every recorded history.
func TestReplayCatchesAnIncompatibleChange(t *testing.T) {
	changed := func(ctx workflow.Context, in workflows.ReachInput) (workflows.ReachResult, error) {
		if err := workflow.Sleep(ctx, time.Second); err != nil {
			return workflows.ReachResult{}, err
		}
		return workflows.ReachWorkflow(ctx, in)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	for _, f := range files {
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflowWithOptions(changed, workflow.RegisterOptions{Name: "ReachWorkflow"})
		err := r.ReplayWorkflowHistoryFromJSONFile(nil, f)
		require.Error(t, err, f)
		require.Contains(t, err.Error(), "TMPRL1100", f) // the SDK's nondeterminism error
	}
}
