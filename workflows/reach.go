package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"
	_ "time/tzdata" // wait-until-local-time reads zones from the binary, the same on every worker

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
)

var a *activities.Activities

// Changes to the workflow's commands, behind workflow.GetVersion so runs in flight replay (see
// TestReplay and the histories in testdata).
const (
	// changeSkipIdleRegister: runs that listen for no response and have no open-run bound do not
	// register in the open-reach index.
	changeSkipIdleRegister = "skip-idle-register"
)

// A lean reach (ReachInput.Lean, set by every starter since) does its work in as few workflow
// tasks as it can: the send is a local activity first (a regular, retried activity only when the
// provider does not answer quickly, under the same idempotency key); search attributes the start
// set are not set again; the run's search-attribute updates and audit records are written once per
// workflow task (before the run blocks, and when it ends) instead of once per step. It is keyed on
// the input rather than on workflow.GetVersion because the Go SDK upserts TemporalChangeVersion for
// every GetVersion of a new run (a visibility write each): runs recorded before it replay as they
// ran, and a lean run makes no version call at all.

// localDispatchTimeout bounds the send tried in the workflow task itself; past it the send is
// retried as a regular activity.
const localDispatchTimeout = 5 * time.Second

// ReachWorkflow runs one reach: it pins the journey's active version, then interprets its steps,
// each filter verdict, send, wait and response audited once.
func ReachWorkflow(ctx workflow.Context, in ReachInput) (ReachResult, error) {
	ctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	r := &reachRun{ctx: ctx, in: in, m: in.Match, reachID: workflow.GetInfo(ctx).WorkflowExecution.ID}
	r.lctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		// Without it the retries stop after StartToCloseTimeout: a PostgreSQL or Redis outage
		// longer than 10 s would fail the run and lose the match (the fault suite's PostgreSQL
		// scenario found it). The local steps retry until the store is back.
		ScheduleToCloseTimeout: 7 * 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second,
		},
	})
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) { return r.st, nil }); err != nil {
		return ReachResult{}, err
	}
	workflow.Go(ctx, func(gctx workflow.Context) {
		var s CancelSignal
		workflow.GetSignalChannel(gctx, SignalCancel).Receive(gctx, &s)
		r.cancelReason = s.Reason
		cancel()
	})
	workflow.Go(ctx, func(gctx workflow.Context) {
		ch := workflow.GetSignalChannel(gctx, SignalResponse)
		for {
			var resp Response
			if !ch.Receive(gctx, &resp) {
				return
			}
			r.onResponse(resp)
		}
	})
	return r.run()
}

// reachRun is one run's interpreter state.
type reachRun struct {
	ctx, lctx workflow.Context
	in        ReachInput
	m         Match
	reachID   string
	j         journey.Journey
	p         profile.Profile
	st        State

	pending      []audit.Record
	flushes      int // the audit batches written (trail.flush)
	cancelReason string
	converted    *Response
	reserved     *filter.Request // the filter chain may hold a reservation for the send in flight
	registered   bool
	lean         bool                             // changeLeanReach applies to this run
	sa           []temporal.SearchAttributeUpdate // updates not yet published (lean runs)
	indexUntil   time.Time                        // when the run's open-reach entry goes stale unless refreshed
	steps        int                              // steps taken by this run (since the last continue-as-new)
}

func (r *reachRun) run() (ReachResult, error) {
	r.lean = r.in.Lean
	if res := r.in.Resume; res != nil {
		r.j, r.p, r.st = res.Journey, res.Profile, res.State
		r.st.Runs++
		for i := range r.st.Responses {
			if r.converted == nil && r.j.Converts(r.st.Responses[i].Type) {
				r.converted = &r.st.Responses[i]
			}
		}
	} else {
		r.details(fmt.Sprintf("routing to journey %s", r.m.JourneyID))
		var route activities.RouteResult
		err := workflow.ExecuteLocalActivity(withSummary(r.lctx, "route to journey "+r.m.JourneyID), a.Route,
			activities.RouteInput{JourneyID: r.m.JourneyID, UserID: r.m.UserID}).Get(r.ctx, &route)
		if err != nil {
			return r.fail("route", fmt.Errorf("route: %w", err))
		}
		r.j, r.p = route.Journey, route.Profile
		r.st = State{JourneyID: r.j.ID, JourneyVersion: r.j.Version, Current: r.j.First(), Status: StatusRunning,
			Visits: map[string]int{}}
		if !r.m.ReceivedAt.IsZero() {
			r.record(audit.Record{Step: "receive", Kind: audit.KindReceived, At: r.m.ReceivedAt, EventID: r.m.LastEvent(),
				Reason: receiveReason(r.m)})
		}
		r.record(audit.Record{Step: "match", Kind: audit.KindMatched, At: r.m.MatchedAt, EventID: r.m.LastEvent(), Reason: matchReason(r.m)})
		r.record(audit.Record{Step: "route", Kind: audit.KindRouted, Outcome: fmt.Sprintf("v%d", r.j.Version),
			Reason: fmt.Sprintf("journey %s version %d: %d steps", r.j.ID, r.j.Version, len(r.j.Steps))})
		if !r.lean { // the start set both
			r.upsert(SearchJourneyID.ValueSet(r.j.ID), SearchReachStatus.ValueSet(StatusRunning))
		}
		if route.HeldOut {
			reason := "global control group: held out of every marketing journey, its conversions compared with the users reached"
			r.record(audit.Record{Step: "control", Kind: audit.KindHeldOut, Outcome: journey.ControlGroup, Reason: reason})
			return r.finish(ReachResult{Status: StatusHeldOut, Reason: reason})
		}
	}

	// Index the run so response events find it, and apply the rule's bound on open runs. Since
	// version skipIdleRegister a run that listens for nothing and is not bounded stays out of the
	// index (one Redis round trip less per reach); runs started before keep registering.
	needsIndex := len(r.j.ResponseEvents()) > 0 || r.m.MaxOpen > 0
	skipIdle := r.lean || workflow.GetVersion(r.ctx, changeSkipIdleRegister, workflow.DefaultVersion, 1) != workflow.DefaultVersion
	if needsIndex || !skipIdle {
		// Once registration is attempted the run unregisters when it ends, whatever happens: the
		// entry may exist even if the run is cancelled while the call is in flight.
		r.registered = true
		var ok bool
		err := workflow.ExecuteLocalActivity(withSummary(r.lctx, "register open reach"), a.Register, r.registration()).Get(r.ctx, &ok)
		if err != nil {
			return r.fail("register", fmt.Errorf("register: %w", err))
		}
		if !ok {
			reason := fmt.Sprintf("re-entry: the user already has %d open runs of rule %s", r.m.MaxOpen, r.m.RuleID)
			r.record(audit.Record{Step: "register", Kind: audit.KindSuppressed, Outcome: filter.Drop, Reason: reason})
			r.registered = false // refused: nothing was written
			return r.finish(ReachResult{Status: StatusSuppressed, Reason: reason})
		}
		r.indexUntil = workflow.Now(r.ctx).Add(indexTTL)
	}

	for {
		if r.converted != nil {
			return r.convert()
		}
		if r.ctx.Err() != nil {
			return r.cancelled("")
		}
		if r.st.Current == journey.End {
			return r.finish(ReachResult{Status: journey.EndStatus(r.st.Sent), Channel: r.st.Channel, Reason: "journey completed"})
		}
		if r.continueAsNewDue() {
			return r.continueAsNew()
		}
		s, name, ok := r.j.Enter(r.st.Visits, r.st.Current)
		if !ok {
			return r.fail(r.st.Current, fmt.Errorf("journey %s v%d has no step %q", r.j.ID, r.j.Version, r.st.Current))
		}
		r.steps++
		next, end, err := r.step(name, s)
		if err != nil {
			return r.fail(name, err)
		}
		if end != nil {
			return r.finish(*end)
		}
		if !r.lean {
			if err := r.flush(); err != nil {
				return ReachResult{}, err
			}
		}
		if r.converted == nil {
			r.st.Current = next // a goal reached during the step ends the run where it is
		}
	}
}

// step runs one step and says where to go next, or how the journey ends.

func (r *reachRun) onResponse(resp Response) {
	if resp.EventID == "" || resp.Type == "" {
		r.log().Warn("response without event_id or type ignored", "type", resp.Type)
		return
	}
	if slices.Contains(r.st.Seen, resp.EventID) {
		return // a redelivered signal changes nothing
	}
	r.st.Seen = append(r.st.Seen, resp.EventID)
	if n := len(r.st.Seen); n > maxSeen {
		r.st.Seen = slices.Clone(r.st.Seen[n-maxSeen:])
	}
	resp.Consumed = false
	r.st.Responses = append(r.st.Responses, resp)
	if n := len(r.st.Responses); n > maxResponses {
		r.st.Responses = slices.Clone(r.st.Responses[n-maxResponses:])
	}
	if r.converted == nil && r.j.Converts(resp.Type) {
		r.converted = &resp
	}
}

func (r *reachRun) continueAsNewDue() bool {
	info := workflow.GetInfo(r.ctx)
	limit := r.in.MaxSteps
	if limit <= 0 {
		limit = DefaultMaxSteps
	}
	return r.steps >= limit || info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= maxHistory
}

// continueAsNew hands the pinned journey and the state to a fresh run under the same workflow
// ID; signals that arrived meanwhile are taken first so none is lost.
func (r *reachRun) continueAsNew() (ReachResult, error) {
	for {
		var resp Response
		if !workflow.GetSignalChannel(r.ctx, SignalResponse).ReceiveAsync(&resp) {
			break
		}
		r.onResponse(resp)
	}
	var c CancelSignal
	if workflow.GetSignalChannel(r.ctx, SignalCancel).ReceiveAsync(&c) {
		r.cancelReason = c.Reason
		return r.cancelled("")
	}
	if r.ctx.Err() != nil {
		return r.cancelled("")
	}
	if r.converted != nil {
		return r.convert()
	}
	if err := r.publish(); err != nil {
		return ReachResult{}, err
	}
	r.details(fmt.Sprintf("continuing as new at step %s", r.st.Current))
	in := r.in
	in.Resume = &Resume{Journey: r.j, Profile: r.p, State: r.st}
	return ReachResult{}, workflow.NewContinueAsNewError(r.ctx, ReachWorkflow, in)
}

func (r *reachRun) finish(res ReachResult) (ReachResult, error) {
	r.release()
	if r.registered {
		dctx, _ := workflow.NewDisconnectedContext(r.lctx)
		if err := workflow.ExecuteLocalActivity(withSummary(dctx, "unregister open reach"), a.Unregister, r.registration()).Get(dctx, nil); err != nil {
			r.log().Warn("unregister open reach", "err", err)
		}
		r.registered = false
	}
	res.Sent = r.st.Sent
	if res.Channel == "" {
		res.Channel = r.st.Channel
	}
	kind := audit.KindCompleted
	if res.Status == StatusCancelled {
		kind = audit.KindCancelled
	}
	r.record(audit.Record{Step: "end", Kind: kind, Channel: res.Channel, Outcome: res.Status, Reason: res.Reason})
	r.st.Current = journey.End
	r.st.Status = res.Status
	r.upsert(SearchReachStatus.ValueSet(res.Status))
	r.details(fmt.Sprintf("%s: %s", res.Status, res.Reason))
	return res, r.publish()
}

func (r *reachRun) convert() (ReachResult, error) {
	c := r.converted
	reason := fmt.Sprintf("goal %s (event %s) at step %s", c.Type, c.EventID, r.st.Current)
	r.took(r.st.Current, journey.KindGoal, StatusConverted, reason)
	// At is the goal event's time: the attribution of the same event after the run (audit.Attribute)
	// then collides with this record instead of converting the reach twice. A time before the
	// match (a producer's stale clock) is the workflow's own: the record stays after the reach's
	// start, and out of partitions the retention drops first.
	at := c.At
	if at.Before(r.m.MatchedAt) || at.After(workflow.Now(r.ctx)) {
		at = time.Time{}
	}
	r.record(audit.Record{Step: "goal", Kind: audit.KindConverted, Outcome: c.Type, Reason: reason, EventID: c.EventID, At: at})
	return r.finish(ReachResult{Status: StatusConverted, Reason: reason})
}

func (r *reachRun) cancelled(reason string) (ReachResult, error) {
	if r.cancelReason != "" {
		reason = r.cancelReason
	}
	if reason == "" {
		reason = "cancelled"
	}
	return r.finish(ReachResult{Status: StatusCancelled, Reason: reason})
}

// fail ends the run on an error that retries cannot fix (unknown journey, bad template) or on
// cancellation; either way the trail says why.
func (r *reachRun) fail(step string, err error) (ReachResult, error) {
	if temporal.IsCanceledError(err) || errors.Is(r.ctx.Err(), workflow.ErrCanceled) {
		return r.cancelled("cancelled during " + step)
	}
	r.record(audit.Record{Step: step, Kind: audit.KindFailed, Outcome: "error", Reason: errReason(err)})
	res, ferr := r.finish(ReachResult{Status: StatusFailed, Reason: errReason(err)})
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

// journeyMatch is the match as the journey machine reads it.
