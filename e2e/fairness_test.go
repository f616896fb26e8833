package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/workflows"
)

// TestFairnessKeepsABurstApart: reaches start with their rule's fairness key
// (workflows.StartOptions), and omega-dev's Temporal shares a task queue's workers among the keys.
// A burst of one rule's reaches waiting in the queue (a restart's overdue timers, a price drop fanned
// out) does not hold another rule's fresh reach behind it: with one workflow task at a time, the
// fresh reach runs among the first, not after the half of the burst queued before it (as it does
// without fairness).
func TestFairnessKeepsABurstApart(t *testing.T) {
	env := testenv.Require(t)
	tc := env.Temporal(t)
	queue := testenv.Unique("fair")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var ran []string // rule IDs, in the order their reaches' first workflow task ran
	probe := func(ctx workflow.Context, rule string) error {
		mu.Lock()
		ran = append(ran, rule)
		mu.Unlock()
		return nil
	}
	start := func(rule, user string) {
		opts := workflows.StartOptions(workflows.Match{RuleID: rule, UserID: user, MatchKey: "k"}, queue)
		opts.ID = queue + "/" + opts.ID
		_, err := tc.ExecuteWorkflow(ctx, opts, "FairnessProbe", rule)
		require.NoError(t, err)
	}
	// The burst's reaches, the fresh one, then as many more of the burst. No worker polls yet:
	// every task waits in the queue, the fresh one behind the first half of the burst.
	const burst = 400
	for i := range burst / 2 {
		start("burst", fmt.Sprintf("u%d", i))
	}
	start("fresh", "f")
	for i := burst / 2; i < burst; i++ {
		start("burst", fmt.Sprintf("u%d", i))
	}
	// A start returns before its first workflow task is in the queue (history hands it to
	// matching a moment later, in order): the worker starts once every task waits there.
	require.Eventually(t, func() bool {
		d, err := tc.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW, ReportStats: true,
		})
		return err == nil && d.GetStats().GetApproximateBacklogCount() >= burst+1
	}, time.Minute, 50*time.Millisecond, "the reaches' tasks never reached the queue")

	w := worker.New(tc, queue, worker.Options{MaxConcurrentWorkflowTaskExecutionSize: 8, MaxConcurrentWorkflowTaskPollers: 8})
	w.RegisterWorkflowWithOptions(probe, workflow.RegisterOptions{Name: "FairnessProbe"})
	require.NoError(t, w.Start())
	defer w.Stop()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(ran, "fresh")
	}, time.Minute, 20*time.Millisecond, "the fresh reach never ran")
	mu.Lock()
	at := slices.Index(ran, "fresh")
	mu.Unlock()
	t.Logf("the fresh reach ran after %d of the burst's %d (%d were queued before it)", at, burst, burst/2)
	require.Less(t, at, burst/8, "the fresh reach waited behind another rule's burst")
}
