package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/workflows"
)

// probeWorkflowID names a run that never exists: describing it needs the history service.
const probeWorkflowID = "omega-readiness-probe"

// Serving reports whether Temporal serves taskQueue end to end, which a connection alone does not
// show (a frontend answers while its history and matching services are still joining the
// cluster): history answers (the probe run is not found) and matching answers for the queue. With
// an identity, matching must also list it among the pollers of the workflow and activity tasks of
// the queue and of its bulk queue: that reach worker's polls arrive.
func Serving(ctx context.Context, c client.Client, taskQueue, identity string) error {
	_, err := c.DescribeWorkflowExecution(ctx, probeWorkflowID, "")
	if err == nil || !errors.As(err, new(*serviceerror.NotFound)) {
		return fmt.Errorf("temporal history: %w", err)
	}
	queues := []string{taskQueue}
	if identity != "" {
		queues = append(queues, workflows.BulkQueue(taskQueue)) // a reach worker polls both
	}
	for _, q := range queues {
		for _, kind := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			resp, err := c.DescribeTaskQueue(ctx, q, kind)
			if err != nil {
				return fmt.Errorf("temporal matching: %w", err)
			}
			if identity != "" && !slices.ContainsFunc(resp.GetPollers(), func(p *taskqueuepb.PollerInfo) bool { return p.GetIdentity() == identity }) {
				return fmt.Errorf("temporal matching lists no %s task poller of %s on %s yet", kind, identity, q)
			}
		}
	}
	return nil
}

// WaitServing calls Serving until it succeeds (nil) or ctx ends (the last error); each try gets a
// few seconds, so a server that hangs is asked again.
func WaitServing(ctx context.Context, c client.Client, taskQueue, identity string) error {
	for {
		tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := Serving(tctx, c, taskQueue, identity)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
