package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
)

// The reach workflow's step handlers: send (filter chain, local dispatch with its fallback), wait,
// wait_for and branch; the journey machine (journey/machine.go) decides where each leads.

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
			r.took(label, journey.KindSend, journey.StatusSuppressed, verdict.String())
			r.record(audit.Record{Step: label, Kind: audit.KindSuppressed, Channel: ch, Outcome: verdict.Outcome, Reason: verdict.String()})
			if mv.Status == StatusSent && r.in.Rev >= RevWaitsAndDrops {
				// Reached before: the run ends as sent, on the channel that reached the user.
				return "", &ReachResult{Status: StatusSent, Channel: r.st.Channel, Verdict: verdict, Reason: mv.Reason + ": " + verdict.String()}, nil
			}
			return "", &ReachResult{Status: StatusSuppressed, Channel: ch, Verdict: verdict, Reason: verdict.String()}, nil
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
		r.record(audit.Record{Step: label, Kind: audit.KindFailed, Channel: ch, Outcome: "error", Reason: errReason(err), IdempotencyKey: key,
			Retryable: !permanent})
		r.took(label, journey.KindSend, StatusFailed, ch+": "+errReason(err))
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

// waiting marks the run waiting at step name (what: for what, until when): its status, and a
// record in the audit trail (written with the step's others before the run blocks).
func (r *reachRun) waiting(name, what string) {
	r.setStatus(StatusWaiting, what)
	if r.in.Rev >= RevWaitsAndDrops {
		r.record(audit.Record{Step: name, Kind: audit.KindWaiting, Outcome: "waiting", Reason: what})
	}
}

func (r *reachRun) wait(name string, s *journey.Step) (string, *ReachResult, error) {
	w, note := r.bestHour(name, s.Wait)
	now := workflow.Now(r.ctx)
	d, what, err := w.Span(now, r.p.Location())
	if err != nil {
		return "", nil, err
	}
	what += note
	r.waiting(name, fmt.Sprintf("%s (step %s), until %s", what, name, now.Add(d).Format(time.RFC3339)))
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

// bestHourRead bounds how long a best-hour wait reads the user's open history before it takes its
// fallback (the store is down): a send at a good hour is better than one held for the store.
const bestHourRead = time.Minute

// bestHour resolves a wait until the user's best hour (journey.BestHour) to a time of day, read
// from their open history, and says in words how it was chosen; other waits are themselves.
func (r *reachRun) bestHour(name string, w *journey.Wait) (*journey.Wait, string) {
	if w.Until != journey.BestHour {
		return w, ""
	}
	ctx := workflow.WithLocalActivityOptions(r.ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second, ScheduleToCloseTimeout: bestHourRead,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 5 * time.Second},
	})
	var bh activities.BestHourResult
	in := activities.BestHourInput{UserID: r.m.UserID, TimeZone: r.p.Location().String(), Types: w.OpenTypes()}
	if err := workflow.ExecuteLocalActivity(withSummary(ctx, "best hour of "+r.m.UserID+" (step "+name+")"), a.BestHour, in).Get(r.ctx, &bh); err != nil {
		workflow.GetLogger(r.ctx).Warn("open history unreadable: the best-hour wait takes its fallback", "step", name, "err", err)
		return w.AtHour(-1), " (best hour: the fallback, the open history was unreadable)"
	}
	if bh.Hour < 0 {
		return w.AtHour(-1), fmt.Sprintf(" (best hour: the fallback, %d opens in %d days, fewer than %d)",
			bh.Read, int(journey.BestHourLookback.Hours()/24), journey.MinOpensForBestHour)
	}
	return w.AtHour(bh.Hour), fmt.Sprintf(" (best hour: %d of the user's last %d opens were at %02d:xx)", bh.Opens, bh.Read, bh.Hour)
}

func (r *reachRun) waitFor(name string, s *journey.Step) (string, *ReachResult, error) {
	wf := s.WaitFor
	what := wf.Describe()
	r.waiting(name, fmt.Sprintf("%s (step %s), until %s", what, name, workflow.Now(r.ctx).Add(wf.Timeout.D()).Format(time.RFC3339)))
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

var nonRetryableDispatch = []string{activities.ErrTypePermanentDispatch, activities.ErrTypeUnknownChannel, activities.ErrTypeTemplate}
