package cep

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// TemporalStarter starts reach workflows on a Temporal cluster.
type TemporalStarter struct {
	Client    client.Client
	TaskQueue string
}

// Start starts the match's workflow. The workflow ID is derived from the match and a duplicate ID
// is refused even after the first run closed, so a replayed match never reaches the user twice.
func (t *TemporalStarter) Start(ctx context.Context, m workflows.Match) error {
	opts := workflows.StartOptions(m, t.TaskQueue)
	_, err := t.Client.ExecuteWorkflow(ctx, opts, workflows.ReachWorkflow, workflows.ReachInput{Match: m})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		metrics.WorkflowStarts.WithLabelValues("cep", "duplicate").Inc()
		return nil
	}
	if err != nil {
		metrics.WorkflowStarts.WithLabelValues("cep", "error").Inc()
		return fmt.Errorf("start %s: %w", opts.ID, err)
	}
	metrics.WorkflowStarts.WithLabelValues("cep", "started").Inc()
	return nil
}

// Signal delivers a response to a reach; false when the run is gone (closed or unknown).
func (t *TemporalStarter) Signal(ctx context.Context, reachID string, r workflows.Response) (bool, error) {
	err := t.Client.SignalWorkflow(ctx, reachID, "", workflows.SignalResponse, r)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	// Too large, or past the run's signal limit: no retry fixes those.
	var inv *serviceerror.InvalidArgument
	var pre *serviceerror.FailedPrecondition
	if errors.As(err, &inv) || errors.As(err, &pre) {
		return false, fmt.Errorf("%w: signal %s: %v", ErrPermanent, reachID, err)
	}
	if err != nil {
		return false, fmt.Errorf("signal %s: %w", reachID, err)
	}
	return true, nil
}
