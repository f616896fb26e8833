package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // wait-until-local-time reads zones from the binary, the same on every worker

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
)

// Reach statuses, as kept in the ReachStatus search attribute and the final audit record: the
// journey machine's.
const (
	StatusRunning    = journey.StatusRunning
	StatusWaiting    = journey.StatusWaiting
	StatusSent       = journey.StatusSent
	StatusSuppressed = journey.StatusSuppressed
	StatusConverted  = journey.StatusConverted
	StatusFailed     = journey.StatusFailed
	StatusCancelled  = journey.StatusCancelled
	StatusCompleted  = journey.StatusCompleted
)

// Signals and queries of a reach run.
const (
	// SignalCancel asks a reach to stop; its payload is a CancelSignal.
	SignalCancel = "cancel"
	// SignalResponse delivers a response event (Response) the journey may wait for.
	SignalResponse = "response"
	// QueryState returns the run's State: current step, step history, responses.
	QueryState = "state"
)

// CancelSignal carries why a reach was cancelled.
type CancelSignal struct {
	Reason string `json:"reason"`
}

// Response is a response event routed to the run (push_open, chat_started, order_paid...): the
// journey machine's, the signal's payload.
type Response = journey.Response

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
	// MaxOpen bounds the runs of the rule a user may have open at once (0: no bound).
	MaxOpen int `json:"max_open,omitempty"`
	// Rollout is the rule's gray rollout percentage (0: everyone).
	Rollout int `json:"rollout,omitempty"`
	// Chain is the rule's filter chain for sends that name none.
	Chain string `json:"chain,omitempty"`
	// TraceID is the W3C trace ID of the event that completed the match (its traceparent
	// header, else derived from its event ID); every tracking record of the reach carries it.
	TraceID string `json:"trace_id,omitempty"`
	// TraceParent is that event's traceparent header, when it had one: the workflow's spans join
	// the caller's trace under the right parent.
	TraceParent string `json:"trace_parent,omitempty"`
	// ReceivedAt is when Kafka took the event that completed the match (for an API trigger, the
	// call's time).
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// ReachInput is the reach workflow's input.
type ReachInput struct {
	Match Match `json:"match"`
	// Lean runs take as few workflow tasks as they can (see changeSkipIdleRegister's neighbour
	// comment); NewReachInput sets it.
	Lean bool `json:"lean,omitempty"`
	// Resume carries a run across continue-as-new.
	Resume *Resume `json:"resume,omitempty"`
	// MaxSteps is how many steps one run takes before it continues as new (DefaultMaxSteps when
	// zero); it also continues as new past maxHistory events or when the server suggests it.
	MaxSteps int `json:"max_steps,omitempty"`
}

// NewReachInput is the input of a new reach.
func NewReachInput(m Match) ReachInput { return ReachInput{Match: m, Lean: true} }

// DefaultMaxSteps and maxHistory keep histories far below Temporal's limits and quick to replay.
const (
	DefaultMaxSteps = 300
	maxHistory      = 2000
)

// Resume is what a continued run picks up: the pinned journey version, the profile and the state.
type Resume struct {
	Journey journey.Journey `json:"journey"`
	Profile profile.Profile `json:"profile"`
	State   State           `json:"state"`
}

// State is the run as the state query returns it.
type State struct {
	JourneyID      string `json:"journey_id"`
	JourneyVersion int    `json:"journey_version"`
	// Current is the step being run ("end" once done).
	Current string `json:"current"`
	Status  string `json:"status"`
	Channel string `json:"channel,omitempty"`
	// Sent counts the messages sent.
	Sent int `json:"sent"`
	// Steps is the step history (the most recent maxStepHistory).
	Steps     []StepRecord `json:"steps"`
	Responses []Response   `json:"responses,omitempty"`
	// Seen are the event IDs of the responses taken (the most recent maxSeen), so a redelivered
	// signal changes nothing.
	Seen   []string       `json:"seen,omitempty"`
	Visits map[string]int `json:"visits,omitempty"`
	// Runs counts the continue-as-new hops.
	Runs int `json:"runs,omitempty"`
}

// StepRecord is one step taken.
type StepRecord struct {
	Step    string    `json:"step"`
	Kind    string    `json:"kind"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

const (
	// indexTTL is how long a run's open-reach entry stays fresh; a wait that would outlast it
	// refreshes it first.
	indexTTL       = 30 * 24 * time.Hour
	maxStepHistory = 100
	maxSeen        = 1000
	maxResponses   = 100
	// maxDefers bounds how often one send is put off by the filter chain (quiet hours).
	maxDefers = 3
)

// ReachResult says what the reach did.
type ReachResult struct {
	Status  string         `json:"status"`
	Channel string         `json:"channel,omitempty"`
	Verdict filter.Verdict `json:"verdict"`
	Reason  string         `json:"reason,omitempty"`
	// Sent counts the messages sent.
	Sent int `json:"sent"`
}

// APIRuleID is the rule ID of reaches started through ReachService.Trigger.
const APIRuleID = "api"

// ReachID is the workflow ID of a match: replays of the same match collapse onto one run.
func ReachID(ruleID, userID, matchKey string) string {
	return "reach/" + ruleID + "/" + userID + "/" + matchKey
}

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
func (r *reachRun) step(name string, s *journey.Step) (string, *ReachResult, error) {
	switch {
	case s.Send != nil:
		return r.send(name, s)
	case s.Wait != nil:
		return r.wait(name, s)
	case s.WaitFor != nil:
		return r.waitFor(name, s)
	case s.Branch != nil:
		return r.branch(name, s)
	case s.Split != nil:
		mv := r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{})
		r.took(name, journey.KindSplit, mv.Outcome, "")
		r.record(audit.Record{Step: name, Kind: audit.KindSplit, Outcome: mv.Outcome, Reason: "split " + s.ID + ": path " + mv.Outcome})
		if mv.Done {
			return "", &ReachResult{Status: mv.Status, Reason: mv.Reason}, nil
		}
		return mv.Next, nil, nil
	case s.Exit != nil:
		mv := r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{})
		r.took(name, journey.KindExit, "exit", mv.Reason)
		r.record(audit.Record{Step: name, Kind: audit.KindExited, Outcome: "exit", Reason: mv.Reason})
		return "", &ReachResult{Status: mv.Status, Channel: r.st.Channel, Reason: mv.Reason}, nil
	}
	return "", nil, fmt.Errorf("step %s has no kind", s.ID)
}

// send runs the filter chain and dispatches; on a permanent failure it tries the fallback channel.
func (r *reachRun) send(name string, s *journey.Step) (string, *ReachResult, error) {
	tmpl := r.j.Templates[s.Send.Template]
	var lastErr error
	for i, ch := range s.Send.Channels() {
		// The audit step of this channel's attempt: the step's name, and name/channel for the
		// fallback, so each attempt's verdict and outcome is a row of its own.
		label := name
		if i > 0 {
			label = name + "/" + ch
		}
		key := r.reachID + "/" + name + "/" + ch
		verdict, err := r.filter(label, ch, key, s.Send)
		if err != nil {
			return "", nil, err
		}
		if r.converted != nil {
			// The goal came while the chain ran or a deferral waited: nothing more to send.
			r.release()
			return "", nil, nil
		}
		if verdict.Outcome != filter.Pass {
			r.reserved = nil // a chain that does not pass has given back what it reserved
			mv := r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{Dropped: true})
			r.took(label, journey.KindSend, mv.Status, verdict.String())
			r.record(audit.Record{Step: label, Kind: audit.KindSuppressed, Channel: ch, Outcome: verdict.Outcome, Reason: verdict.String()})
			return "", &ReachResult{Status: mv.Status, Channel: ch, Verdict: verdict, Reason: verdict.String()}, nil
		}
		if !r.lean {
			if err := r.flush(); err != nil {
				return "", nil, err
			}
		}
		r.details(fmt.Sprintf("sending %s on %s (step %s)", s.Send.Template, ch, name))
		// A send in flight completes even when the run is cancelled meanwhile: abandoning it would
		// leave a message the provider may still accept recorded as not sent, its fatigue slot
		// given back. The cancel takes effect right after.
		dctx, _ := workflow.NewDisconnectedContext(r.ctx)
		actx := workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
			StartToCloseTimeout: 30 * time.Second,
			Summary:             fmt.Sprintf("send %s on %s (step %s)", s.Send.Template, ch, name),
			RetryPolicy: &temporal.RetryPolicy{
				InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
				MaximumAttempts:        20,
				NonRetryableErrorTypes: nonRetryableDispatch,
			},
		})
		var res channel.Result
		in := activities.DispatchInput{
			Channel: ch, TemplateID: s.Send.Template, Template: tmpl, Fields: r.m.journeyMatch().Fields(r.p.Vars()),
			Message: channel.Message{IdempotencyKey: key, ReachID: r.reachID, UserID: r.m.UserID, TraceID: r.m.TraceID},
		}
		if r.st.Sent == 0 {
			in.MatchedAt = r.m.MatchedAt // the match-to-dispatch latency is the first send's
		}
		if r.lean {
			err = r.dispatchLocal(dctx, actx, in, fmt.Sprintf("send %s on %s (step %s)", s.Send.Template, ch, name), &res)
		} else {
			err = workflow.ExecuteActivity(actx, a.Dispatch, in).Get(dctx, &res)
		}
		if err == nil {
			r.reserved = nil
			r.st.Sent++
			r.st.Channel = ch
			detail := fmt.Sprintf("provider %d %s", res.Status, res.ProviderMessageID)
			r.took(label, journey.KindSend, StatusSent, ch+": "+detail)
			r.record(audit.Record{Step: label, Kind: audit.KindDispatched, Channel: ch, Outcome: "sent", Reason: detail, IdempotencyKey: key})
			r.upsert(SearchChannel.ValueSet(ch), SearchReachStatus.ValueSet(StatusSent))
			return r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{Channel: ch}).Next, nil, nil
		}
		// The slot the filter chain reserved goes back: this send did not happen.
		r.release()
		var ae *temporal.ApplicationError
		permanent := errors.As(err, &ae) && (ae.NonRetryable() || slices.Contains(nonRetryableDispatch, ae.Type()))
		r.record(audit.Record{Step: label, Kind: audit.KindFailed, Channel: ch, Outcome: "error", Reason: err.Error(), IdempotencyKey: key,
			Retryable: !permanent})
		r.took(label, journey.KindSend, StatusFailed, ch+": "+err.Error())
		lastErr = err
		if r.ctx.Err() != nil || !errors.As(err, &ae) || ae.Type() != activities.ErrTypePermanentDispatch {
			break // only a permanent refusal by the provider falls back, and not once cancelled
		}
	}
	if r.ctx.Err() != nil {
		return "", nil, nil // the loop ends the run as cancelled
	}
	mv := r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{})
	return "", &ReachResult{Status: mv.Status, Channel: r.st.Channel, Reason: lastErr.Error()}, nil
}

// dispatchLocal sends in the workflow task itself (a local activity, one attempt); when the
// provider fails to answer in time or fails in a way a retry may fix, the send is retried as a
// regular activity under the same idempotency key, so the provider sees one message either way.
func (r *reachRun) dispatchLocal(dctx, actx workflow.Context, in activities.DispatchInput, summary string, res *channel.Result) error {
	lctx := workflow.WithLocalActivityOptions(dctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: localDispatchTimeout, Summary: summary + " (in the workflow task)",
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	err := workflow.ExecuteLocalActivity(lctx, a.Dispatch, in).Get(dctx, res)
	var ae *temporal.ApplicationError
	if err == nil || (errors.As(err, &ae) && (ae.NonRetryable() || slices.Contains(nonRetryableDispatch, ae.Type()))) {
		return err
	}
	if err := r.publish(); err != nil { // the run waits for the activity: what it did is visible first
		return err
	}
	return workflow.ExecuteActivity(actx, a.Dispatch, in).Get(dctx, res)
}

// filter runs the chain for one send; a deferral (quiet hours) waits and asks again.
func (r *reachRun) filter(name, ch, key string, send *journey.Send) (filter.Verdict, error) {
	step := name
	for attempt := range maxDefers + 1 {
		if attempt > 0 {
			step = fmt.Sprintf("%s/recheck%d", name, attempt) // each check is a row of its own
		}
		req := filter.Request{ReachID: r.reachID, UserID: r.m.UserID, RuleID: r.m.RuleID, JourneyID: r.j.ID,
			Channel: ch, DispatchKey: key, Now: workflow.Now(r.ctx), Chain: cmp.Or(send.Chain, r.m.Chain), Category: send.Category,
			Priority: r.j.Priority, Rollout: r.m.Rollout}
		// From here on the chain may hold a reservation for this send (a fatigue slot): every way
		// out that does not send gives it back.
		r.reserved = &req
		var v filter.Verdict
		err := workflow.ExecuteLocalActivity(withSummary(r.lctx, "filter chain before "+ch+" (step "+name+")"), a.Filter, req).Get(r.ctx, &v)
		if err != nil {
			return v, fmt.Errorf("filter: %w", err)
		}
		if v.Outcome != filter.Defer || !v.Until.After(req.Now) {
			r.record(audit.Record{Step: step, Kind: audit.KindFiltered, Channel: ch, Outcome: v.Outcome, Reason: v.String()})
			return v, nil
		}
		r.record(audit.Record{Step: step, Kind: audit.KindDeferred, Channel: ch, Outcome: v.Outcome,
			Reason: v.String() + "; until " + v.Until.UTC().Format(time.RFC3339)})
		r.reserved = nil
		r.setStatus(StatusWaiting, fmt.Sprintf("send on %s put off until %s: %s", ch, v.Until.Format(time.RFC3339), v.Reason))
		if err := r.publish(); err != nil {
			return v, err
		}
		if _, err := workflow.AwaitWithOptions(r.ctx, workflow.AwaitOptions{Timeout: v.Until.Sub(req.Now),
			TimerOptions: workflow.TimerOptions{Summary: "deferred by " + v.Filter}}, func() bool { return r.converted != nil }); err != nil {
			return v, err
		}
		if r.converted != nil {
			return v, nil
		}
	}
	return filter.Verdict{Outcome: filter.Drop, Filter: "journey", Reason: fmt.Sprintf("put off %d times", maxDefers+1)}, nil
}

func (r *reachRun) wait(name string, s *journey.Step) (string, *ReachResult, error) {
	now := workflow.Now(r.ctx)
	d, what, err := s.Wait.Span(now, r.p.Location())
	if err != nil {
		return "", nil, err
	}
	r.setStatus(StatusWaiting, fmt.Sprintf("%s (step %s), until %s", what, name, now.Add(d).Format(time.RFC3339)))
	if err := r.publish(); err != nil {
		return "", nil, err
	}
	if err := r.refreshIndex(d); err != nil {
		return "", nil, err
	}
	if _, err := workflow.AwaitWithOptions(r.ctx, workflow.AwaitOptions{Timeout: d,
		TimerOptions: workflow.TimerOptions{Summary: what + " (step " + name + ")"}}, func() bool { return r.converted != nil }); err != nil {
		return "", nil, err
	}
	if r.converted != nil {
		return "", nil, nil // the loop ends the journey as converted
	}
	r.took(name, journey.KindWait, "waited", what)
	r.record(audit.Record{Step: name, Kind: audit.KindWaited, Outcome: "waited", Reason: what})
	r.setStatus(journey.ProgressStatus(r.st.Sent), "")
	return r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{}).Next, nil, nil
}

func (r *reachRun) waitFor(name string, s *journey.Step) (string, *ReachResult, error) {
	wf := s.WaitFor
	what := wf.Describe()
	r.setStatus(StatusWaiting, fmt.Sprintf("%s (step %s), until %s", what, name, workflow.Now(r.ctx).Add(wf.Timeout.D()).Format(time.RFC3339)))
	if err := r.publish(); err != nil {
		return "", nil, err
	}
	if err := r.refreshIndex(wf.Timeout.D()); err != nil {
		return "", nil, err
	}
	got := -1
	_, err := workflow.AwaitWithOptions(r.ctx, workflow.AwaitOptions{Timeout: wf.Timeout.D(),
		TimerOptions: workflow.TimerOptions{Summary: what + " (step " + name + ")"}}, func() bool {
		got = journey.Take(r.st.Responses, wf.Events)
		return got >= 0 || r.converted != nil
	})
	if err != nil {
		return "", nil, err
	}
	r.setStatus(journey.ProgressStatus(r.st.Sent), "")
	mv := r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{Responded: got >= 0})
	if got >= 0 {
		resp := &r.st.Responses[got]
		resp.Consumed = true
		detail := fmt.Sprintf("%s %s", resp.Type, resp.EventID)
		r.took(name, journey.KindWaitFor, "responded", detail)
		r.record(audit.Record{Step: name, Kind: audit.KindResponded, Outcome: resp.Type, EventID: resp.EventID, Reason: "response " + detail})
		return mv.Next, nil, nil
	}
	if r.converted != nil {
		return "", nil, nil // the loop ends the journey as converted
	}
	r.took(name, journey.KindWaitFor, "timed_out", what)
	r.record(audit.Record{Step: name, Kind: audit.KindTimedOut, Outcome: "timeout", Reason: "no response: " + what})
	return mv.Next, nil, nil
}

func (r *reachRun) branch(name string, s *journey.Step) (string, *ReachResult, error) {
	in := activities.BranchInput{Match: r.m.journeyMatch().Vars(), Profile: r.p.Vars()}
	for _, c := range s.Branch.Cases {
		in.Conditions = append(in.Conditions, c.When)
	}
	if len(r.st.Responses) > 0 { // none is a null, as before
		in.Responses = journey.ResponseVars(r.st.Responses)
	}
	var idx int
	if err := workflow.ExecuteLocalActivity(withSummary(r.lctx, "branch "+s.ID), a.Branch, in).Get(r.ctx, &idx); err != nil {
		return "", nil, fmt.Errorf("branch: %w", err)
	}
	mv := r.j.Advance(s, r.m.UserID, r.st.Sent, journey.Outcome{Case: idx})
	why := "no condition held"
	if idx >= 0 {
		why = s.Branch.Cases[idx].When
	}
	r.took(name, journey.KindBranch, mv.Outcome, why+" -> "+mv.Next)
	r.record(audit.Record{Step: name, Kind: audit.KindBranched, Outcome: mv.Outcome, Reason: why + " -> " + mv.Next})
	return mv.Next, nil, nil
}

// onResponse takes a response signal: recorded once per event, a goal event converts the run.
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

func (r *reachRun) registration() activities.RegisterInput {
	now := workflow.Now(r.ctx)
	return activities.RegisterInput{UserID: r.m.UserID, ReachID: r.reachID, RuleID: r.m.RuleID,
		Events: r.j.ResponseEvents(), MaxOpen: r.m.MaxOpen, Now: now, Until: now.Add(indexTTL)}
}

// refreshIndex keeps the run's open-reach entry fresh across a wait of d, so responses still find
// a run that waits longer than the entry would live.
func (r *reachRun) refreshIndex(d time.Duration) error {
	now := workflow.Now(r.ctx)
	if !r.registered || now.Add(d).Add(24*time.Hour).Before(r.indexUntil) {
		return nil
	}
	in := r.registration()
	in.MaxOpen = 0 // the run is open already
	in.Until = now.Add(d).Add(indexTTL)
	var ok bool
	if err := workflow.ExecuteLocalActivity(withSummary(r.lctx, "refresh open reach"), a.Register, in).Get(r.ctx, &ok); err != nil {
		return fmt.Errorf("refresh open reach: %w", err)
	}
	r.indexUntil = in.Until
	return nil
}

// took appends to the step history the state query shows.
func (r *reachRun) took(step, kind, outcome, detail string) {
	r.st.Steps = append(r.st.Steps, StepRecord{Step: step, Kind: kind, Outcome: outcome, Detail: detail, At: workflow.Now(r.ctx)})
	if n := len(r.st.Steps); n > maxStepHistory {
		r.st.Steps = slices.Clone(r.st.Steps[n-maxStepHistory:])
	}
}

func (r *reachRun) setStatus(status, now string) {
	if status != r.st.Status {
		r.st.Status = status
		r.upsert(SearchReachStatus.ValueSet(status))
	}
	if now != "" {
		r.details(now)
	}
}

// details is the run's current details in the Temporal UI: who, which rule and journey, what it is
// doing now and what it did so far.
func (r *reachRun) details(now string) {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** · rule %s → journey %s", r.m.UserID, r.m.RuleID, r.m.JourneyID)
	if r.j.Version > 0 {
		fmt.Fprintf(&b, " v%d", r.j.Version)
	}
	fmt.Fprintf(&b, "\n\n**Now:** %s\n", now)
	if len(r.st.Steps) > 0 {
		b.WriteString("\n**So far:**\n")
		for _, s := range r.st.Steps[max(0, len(r.st.Steps)-10):] {
			fmt.Fprintf(&b, "- `%s` %s: %s", s.Step, s.Kind, s.Outcome)
			if s.Detail != "" {
				fmt.Fprintf(&b, " (%s)", s.Detail)
			}
			b.WriteString("\n")
		}
	}
	workflow.SetCurrentDetails(r.ctx, b.String())
}

// release gives back the filter chain's reservation, once, even when the run is cancelled.
func (r *reachRun) release() {
	if r.reserved == nil {
		return
	}
	rctx, _ := workflow.NewDisconnectedContext(r.lctx)
	if err := workflow.ExecuteLocalActivity(rctx, a.Release, *r.reserved).Get(rctx, nil); err != nil {
		r.log().Warn("release filter reservation", "err", err)
	}
	r.reserved = nil
}

// nonRetryableDispatch are the dispatch errors no retry fixes.
var nonRetryableDispatch = []string{activities.ErrTypePermanentDispatch, activities.ErrTypeUnknownChannel, activities.ErrTypeTemplate}

// log is the run's logger: its lines carry the reach's trace ID.
func (r *reachRun) log() log.Logger {
	return log.With(workflow.GetLogger(r.ctx), "trace_id", r.m.TraceID)
}

func (r *reachRun) record(rec audit.Record) {
	rec.ReachID, rec.UserID, rec.RuleID, rec.RuleVersion, rec.TraceID = r.reachID, r.m.UserID, r.m.RuleID, r.m.RuleVersion, r.m.TraceID
	if rec.JourneyID == "" {
		rec.JourneyID = r.m.JourneyID
	}
	if rec.JourneyVersion == 0 {
		rec.JourneyVersion = r.j.Version
	}
	if rec.At.IsZero() {
		rec.At = workflow.Now(r.ctx)
	}
	r.pending = append(r.pending, rec)
}

func (r *reachRun) flush() error {
	if len(r.pending) == 0 {
		return nil
	}
	recs := r.pending
	r.pending = nil
	// A cancelled run still writes its trail.
	dctx, _ := workflow.NewDisconnectedContext(r.lctx)
	if err := workflow.ExecuteLocalActivity(withSummary(dctx, fmt.Sprintf("audit %d records", len(recs))), a.AppendAudit, recs).Get(dctx, nil); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// upsert sets search attributes: at once before lean-reach, else at the next publish.
func (r *reachRun) upsert(updates ...temporal.SearchAttributeUpdate) {
	if r.lean {
		r.sa = append(r.sa, updates...)
		return
	}
	r.setAttributes(updates)
}

func (r *reachRun) setAttributes(updates []temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(r.ctx, updates...); err != nil {
		r.log().Warn("upsert search attributes", "err", err)
	}
}

// publish writes what the run did since it last blocked: its search-attribute updates in one
// command (later updates of an attribute win) and its audit records in one statement. It runs
// before the run blocks (a timer, a signal wait, a regular activity) and when it ends.
func (r *reachRun) publish() error {
	if len(r.sa) > 0 {
		r.setAttributes(r.sa)
		r.sa = nil
	}
	return r.flush()
}

// finish ends the run: out of the open-reach index, the final record and status written.
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
	r.record(audit.Record{Step: step, Kind: audit.KindFailed, Outcome: "error", Reason: err.Error()})
	res, ferr := r.finish(ReachResult{Status: StatusFailed, Reason: err.Error()})
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
func (m Match) journeyMatch() journey.Match {
	return journey.Match{UserID: m.UserID, ItemID: m.ItemID, RuleID: m.RuleID, EventType: m.EventType,
		JourneyID: m.JourneyID, Attrs: m.Attrs}
}

// LastEvent is the event that completed the match.
func (m Match) LastEvent() string {
	if len(m.EventIDs) == 0 {
		return ""
	}
	return m.EventIDs[len(m.EventIDs)-1]
}

func receiveReason(m Match) string {
	if m.RuleID == APIRuleID {
		return "trigger call received"
	}
	return fmt.Sprintf("%s event %s received", m.EventType, m.LastEvent())
}

func matchReason(m Match) string {
	if m.RuleID == APIRuleID {
		return "triggered through the API"
	}
	return fmt.Sprintf("rule %s matched %s event(s) %v", m.RuleID, m.EventType, m.EventIDs)
}
