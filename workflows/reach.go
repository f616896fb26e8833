package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
)

// Reach statuses, as kept in the ReachStatus search attribute and the final audit record.
const (
	StatusRunning    = "running"
	StatusSent       = "sent"
	StatusSuppressed = "suppressed"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
)

// SignalCancel asks a reach to stop; its payload is a CancelSignal.
const SignalCancel = "cancel"

// CancelSignal carries why a reach was cancelled.
type CancelSignal struct {
	Reason string `json:"reason"`
}

// Match is what the CEP stage (or an API trigger) found: who to reach, because of which rule,
// through which journey.
type Match struct {
	RuleID      string `json:"rule_id"`
	RuleVersion int    `json:"rule_version,omitempty"`
	// CorrelationKey is the pattern key the rule matched on (user, user|item, ...).
	CorrelationKey string `json:"correlation_key,omitempty"`
	// Shadow matches are recorded and start nothing.
	Shadow    bool           `json:"shadow,omitempty"`
	UserID    string         `json:"user_id"`
	JourneyID string         `json:"journey_id"`
	MatchKey  string         `json:"match_key"`
	EventIDs  []string       `json:"event_ids,omitempty"`
	EventType string         `json:"event_type,omitempty"`
	ItemID    string         `json:"item_id,omitempty"`
	EventTime time.Time      `json:"event_time,omitzero"`
	MatchedAt time.Time      `json:"matched_at,omitzero"`
	Attrs     map[string]any `json:"attrs,omitempty"`
}

// ReachInput is the reach workflow's input.
type ReachInput struct {
	Match Match `json:"match"`
}

// ReachResult says what the reach did.
type ReachResult struct {
	Status  string         `json:"status"`
	Channel string         `json:"channel,omitempty"`
	Verdict filter.Verdict `json:"verdict"`
	Reason  string         `json:"reason,omitempty"`
}

// APIRuleID is the rule ID of reaches started through ReachService.Trigger.
const APIRuleID = "api"

// ReachID is the workflow ID of a match: replays of the same match collapse onto one run.
func ReachID(ruleID, userID, matchKey string) string {
	return "reach/" + ruleID + "/" + userID + "/" + matchKey
}

// The one send step of the first journeys.
const stepSend = "send"

var a *activities.Activities

// ReachWorkflow runs one reach: route, filter chain, dispatch, with an audit row per step.
func ReachWorkflow(ctx workflow.Context, in ReachInput) (ReachResult, error) {
	m := in.Match
	reachID := workflow.GetInfo(ctx).WorkflowExecution.ID

	ctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	r := &reachRun{ctx: ctx, m: m, reachID: reachID}
	workflow.Go(ctx, func(ctx workflow.Context) {
		var s CancelSignal
		workflow.GetSignalChannel(ctx, SignalCancel).Receive(ctx, &s)
		r.cancelReason = s.Reason
		cancel()
	})

	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second,
		},
	})

	// Route.
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Routing %s's match of rule %s to journey %s.", m.UserID, m.RuleID, m.JourneyID))
	var route activities.RouteResult
	err := workflow.ExecuteLocalActivity(withSummary(lctx, "route to journey "+m.JourneyID), a.Route,
		activities.RouteInput{JourneyID: m.JourneyID, Fields: templateFields(m)}).Get(ctx, &route)
	if err != nil {
		return r.fail(lctx, "route", fmt.Errorf("route: %w", err))
	}
	r.upsert(SearchJourneyID.ValueSet(route.JourneyID), SearchChannel.ValueSet(route.Channel))
	r.record(audit.Record{Step: "match", Kind: audit.KindMatched, At: m.MatchedAt, Reason: matchReason(m)})
	r.record(audit.Record{Step: "route", Kind: audit.KindRouted, JourneyID: route.JourneyID,
		Channel: route.Channel, Outcome: fmt.Sprintf("v%d", route.JourneyVersion), Reason: "template " + route.TemplateID})

	// Filter chain.
	key := reachID + "/" + stepSend + "/" + route.Channel
	freq := filter.Request{ReachID: reachID, UserID: m.UserID, RuleID: m.RuleID, JourneyID: route.JourneyID,
		Channel: route.Channel, DispatchKey: key, Now: workflow.Now(ctx)}
	// From here on the chain may hold a reservation for this send (a fatigue slot): every way out
	// that does not send gives it back.
	r.reserved = &freq
	var verdict filter.Verdict
	err = workflow.ExecuteLocalActivity(withSummary(lctx, "filter chain before "+route.Channel), a.Filter, freq).Get(ctx, &verdict)
	if err != nil {
		return r.fail(lctx, "filter", fmt.Errorf("filter: %w", err))
	}
	r.record(audit.Record{Step: stepSend, Kind: audit.KindFiltered, Channel: route.Channel, Outcome: verdict.Outcome,
		Reason: verdict.String()})
	if verdict.Outcome != filter.Pass {
		// Deferral (quiet hours) comes with multi-step journeys; until then a deferral is not a send.
		r.record(audit.Record{Step: stepSend, Kind: audit.KindSuppressed, Channel: route.Channel,
			Outcome: verdict.Outcome, Reason: verdict.String()})
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Not sent to %s: %s.", m.UserID, verdict))
		return r.finish(lctx, ReachResult{Status: StatusSuppressed, Channel: route.Channel, Verdict: verdict, Reason: verdict.String()})
	}
	if err := r.flush(lctx); err != nil {
		return ReachResult{}, err
	}

	// Dispatch.
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Sending %q to %s on %s.", route.Title, m.UserID, route.Channel))
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             fmt.Sprintf("send %s on %s", route.TemplateID, route.Channel),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts:        20,
			NonRetryableErrorTypes: []string{activities.ErrTypePermanentDispatch, activities.ErrTypeUnknownChannel},
		},
	})
	var res channel.Result
	err = workflow.ExecuteActivity(actx, a.Dispatch, activities.DispatchInput{Channel: route.Channel, Message: channel.Message{
		IdempotencyKey: key, ReachID: reachID, UserID: m.UserID, Template: route.TemplateID,
		Title: route.Title, Body: route.Body,
	}}).Get(ctx, &res)
	if err != nil {
		// The slot the filter chain reserved goes back: this send did not happen.
		r.release(lctx)
		if temporal.IsCanceledError(err) {
			return r.cancelled(lctx, r.cancelReason)
		}
		r.record(audit.Record{Step: stepSend, Kind: audit.KindFailed, Channel: route.Channel, Outcome: "error",
			Reason: err.Error(), IdempotencyKey: key})
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Send to %s on %s failed: %v", m.UserID, route.Channel, err))
		return r.finish(lctx, ReachResult{Status: StatusFailed, Channel: route.Channel, Verdict: verdict, Reason: err.Error()})
	}
	r.record(audit.Record{Step: stepSend, Kind: audit.KindDispatched, Channel: route.Channel, Outcome: "sent",
		Reason: fmt.Sprintf("provider %d %s", res.Status, res.ProviderMessageID), IdempotencyKey: key})
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Sent %q to %s on %s (provider message %s).", route.Title, m.UserID, route.Channel, res.ProviderMessageID))
	return r.finish(lctx, ReachResult{Status: StatusSent, Channel: route.Channel, Verdict: verdict})
}

// reachRun accumulates audit records so each write is one batched statement, and remembers what
// must be undone if the run ends without sending.
type reachRun struct {
	ctx          workflow.Context
	m            Match
	reachID      string
	pending      []audit.Record
	cancelReason string
	reserved     *filter.Request // the filter chain may hold a reservation for this send
}

// release gives back the filter chain's reservation, once, even when the run is cancelled.
func (r *reachRun) release(lctx workflow.Context) {
	if r.reserved == nil {
		return
	}
	rctx, _ := workflow.NewDisconnectedContext(lctx)
	if err := workflow.ExecuteLocalActivity(rctx, a.Release, *r.reserved).Get(rctx, nil); err != nil {
		workflow.GetLogger(r.ctx).Warn("release filter reservation", "err", err)
	}
	r.reserved = nil
}

func (r *reachRun) record(rec audit.Record) {
	rec.ReachID, rec.UserID, rec.RuleID = r.reachID, r.m.UserID, r.m.RuleID
	if rec.JourneyID == "" {
		rec.JourneyID = r.m.JourneyID
	}
	if rec.At.IsZero() {
		rec.At = workflow.Now(r.ctx)
	}
	r.pending = append(r.pending, rec)
}

func (r *reachRun) flush(lctx workflow.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	recs := r.pending
	r.pending = nil
	// A cancelled run still writes its trail.
	dctx, _ := workflow.NewDisconnectedContext(lctx)
	if err := workflow.ExecuteLocalActivity(withSummary(dctx, fmt.Sprintf("audit %d records", len(recs))), a.AppendAudit, recs).Get(dctx, nil); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (r *reachRun) upsert(updates ...temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(r.ctx, updates...); err != nil {
		workflow.GetLogger(r.ctx).Warn("upsert search attributes", "err", err)
	}
}

// finish writes the completed record and the final status.
func (r *reachRun) finish(lctx workflow.Context, res ReachResult) (ReachResult, error) {
	r.record(audit.Record{Step: "end", Kind: audit.KindCompleted, Channel: res.Channel, Outcome: res.Status, Reason: res.Reason})
	r.upsert(SearchReachStatus.ValueSet(res.Status))
	return res, r.flush(lctx)
}

func (r *reachRun) cancelled(lctx workflow.Context, reason string) (ReachResult, error) {
	r.release(lctx)
	if r.cancelReason != "" {
		reason = r.cancelReason
	}
	if reason == "" {
		reason = "cancelled"
	}
	r.record(audit.Record{Step: "end", Kind: audit.KindCancelled, Outcome: StatusCancelled, Reason: reason})
	r.upsert(SearchReachStatus.ValueSet(StatusCancelled))
	workflow.SetCurrentDetails(r.ctx, "Cancelled: "+reason)
	return ReachResult{Status: StatusCancelled, Reason: reason}, r.flush(lctx)
}

// fail ends the run on an error that retries cannot fix (unknown journey, bad template) or on
// cancellation; either way the trail says why.
func (r *reachRun) fail(lctx workflow.Context, step string, err error) (ReachResult, error) {
	if temporal.IsCanceledError(err) || errors.Is(r.ctx.Err(), workflow.ErrCanceled) {
		return r.cancelled(lctx, "cancelled during "+step)
	}
	r.record(audit.Record{Step: step, Kind: audit.KindFailed, Outcome: "error", Reason: err.Error()})
	res, ferr := r.finish(lctx, ReachResult{Status: StatusFailed, Reason: err.Error()})
	if ferr != nil {
		return res, ferr
	}
	return res, err
}

func withSummary(ctx workflow.Context, s string) workflow.Context {
	o := workflow.GetLocalActivityOptions(ctx)
	o.Summary = s
	return workflow.WithLocalActivityOptions(ctx, o)
}

func templateFields(m Match) map[string]any {
	f := map[string]any{"user_id": m.UserID, "item_id": m.ItemID, "rule_id": m.RuleID, "event_type": m.EventType}
	for k, v := range m.Attrs {
		if _, taken := f[k]; !taken {
			f[k] = v
		}
	}
	return f
}

func matchReason(m Match) string {
	if m.RuleID == APIRuleID {
		return "triggered through the API"
	}
	return fmt.Sprintf("rule %s matched %s event(s) %v", m.RuleID, m.EventType, m.EventIDs)
}
