package backfill

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/workflows"
)

// TemporalStarter starts reaches on Temporal with the options live matching uses
// (workflows.StartOptions): the same workflow ID, refused when it exists, even closed.
type TemporalStarter struct {
	Client    client.Client
	TaskQueue string
}

// StartReach implements Starter.
func (t *TemporalStarter) StartReach(ctx context.Context, m workflows.Match) (bool, error) {
	if m.TraceID == "" {
		m.TraceID = tracing.IDForEvent(m.LastEvent())
	}
	m.Bulk = true // a backfill may start thousands: live reaches do not wait behind them
	opts := workflows.StartOptions(m, t.TaskQueue)
	_, err := t.Client.ExecuteWorkflow(tracing.Ensure(ctx, m.TraceID), opts, workflows.ReachWorkflow, workflows.NewReachInput(m))
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		metrics.WorkflowStarts.WithLabelValues("backfill", "duplicate").Inc()
		return false, nil
	}
	if err != nil {
		metrics.WorkflowStarts.WithLabelValues("backfill", "error").Inc()
		return false, fmt.Errorf("start %s: %w", opts.ID, err)
	}
	metrics.WorkflowStarts.WithLabelValues("backfill", "started").Inc()
	return true, nil
}
