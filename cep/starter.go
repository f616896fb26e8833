package cep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/workflows"
)

// TemporalStarter starts reach workflows on a Temporal cluster.
type TemporalStarter struct {
	Client    client.Client
	TaskQueue string
	// Audit, when set, records the matches refused as replays (deduplicated).
	Audit *audit.Store
	Log   *slog.Logger
	// Eager asks for eager workflow start: a worker for TaskQueue on Client must run in this
	// process (omega cep with OMEGA_CEP_EAGER_START).
	Eager bool
}

func (t *TemporalStarter) log() *slog.Logger {
	if t.Log == nil {
		return slog.Default()
	}
	return t.Log
}

// Start starts the match's workflow. The workflow ID is derived from the match and a duplicate ID
// is refused even after the first run closed, so a replayed match never reaches the user twice.
func (t *TemporalStarter) Start(ctx context.Context, m workflows.Match) error {
	if m.TraceID == "" && len(m.EventIDs) > 0 { // a timer's match (A not followed by B)
		m.TraceID = tracing.IDForEvent(m.EventIDs[0])
	}
	opts := workflows.StartOptions(m, t.TaskQueue)
	opts.EnableEagerStart = t.Eager && !m.Bulk // a bulk reach waits on its queue, not in this worker's slots
	// The start continues the event's trace: the workflow's spans (when exported) join it.
	ctx = tracing.Extract(ctx, propagation.MapCarrier{"traceparent": m.TraceParent})
	ctx = tracing.Ensure(ctx, m.TraceID)
	var span trace.Span
	if tracing.Enabled() {
		start := m.ReceivedAt
		if start.IsZero() {
			start = m.MatchedAt
		}
		ctx, span = tracing.Tracer().Start(ctx, "cep.match "+m.RuleID, trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("omega.rule_id", m.RuleID), attribute.String("omega.user_id", m.UserID),
				attribute.String("omega.reach_id", opts.ID)))
		defer span.End()
	}
	_, err := t.Client.ExecuteWorkflow(ctx, opts, workflows.ReachWorkflow, workflows.NewReachInput(m))
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		metrics.WorkflowStarts.WithLabelValues("cep", "duplicate").Inc()
		// The trail says a replay was refused; the time makes each refusal a row of its own.
		t.record(ctx, opts.ID, m, audit.KindDeduplicated, "duplicate",
			"the reach exists already (a restart or rebalance redelivered its events, or a start was sent again after its answer was lost); nothing started")
		return nil
	}
	// Temporal refuses this start for good (its input or an ID past a limit): no retry can
	// start it, and retrying would hold the partition for ever. The caller skips it, said loudly.
	var inv *serviceerror.InvalidArgument
	if errors.As(err, &inv) {
		metrics.WorkflowStarts.WithLabelValues("cep", "refused").Inc()
		t.record(ctx, opts.ID, m, audit.KindFailed, "refused", "Temporal refused to start the reach: "+inv.Error())
		return fmt.Errorf("%w: start %s: %v", ErrPermanent, opts.ID, err)
	}
	if err != nil {
		metrics.WorkflowStarts.WithLabelValues("cep", "error").Inc()
		return fmt.Errorf("start %s: %w", opts.ID, err)
	}
	metrics.WorkflowStarts.WithLabelValues("cep", "started").Inc()
	return nil
}

// record writes the match step's audit row for a start that started nothing (Audit set). Best
// effort: what matters is the start, or that it is skipped.
func (t *TemporalStarter) record(ctx context.Context, reachID string, m workflows.Match, kind, outcome, reason string) {
	if t.Audit == nil {
		return
	}
	if _, err := t.Audit.Append(ctx, audit.Record{ReachID: reachID, TraceID: m.TraceID, Step: "match", Kind: kind,
		UserID: m.UserID, RuleID: m.RuleID, RuleVersion: m.RuleVersion, JourneyID: m.JourneyID, Outcome: outcome,
		EventID: m.LastEvent(), Reason: reason, At: time.Now()}); err != nil {
		t.log().Warn("record match", "kind", kind, "reach_id", reachID, "trace_id", m.TraceID, "err", err)
	}
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
