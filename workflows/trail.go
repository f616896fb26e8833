package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/audit"
)

// What a reach run leaves behind: its audit trail, its search attributes and status, the
// open-reach index; gathered during a workflow task and published once at its end.

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

// errReason is what the trail and the run's details say of a step's error: the step's own
// message, without the Temporal error chain around it (activity IDs and types, the cause quoted
// again at each level).
func errReason(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Message() != "" {
		return ae.Message()
	}
	return err.Error()
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
	// Another attempt of this workflow task (its process died after the records were written)
	// writes the same batch: only the records past those in are written again.
	r.flushes++
	batch := workflow.GetInfo(r.ctx).WorkflowExecution.RunID + "/" + strconv.Itoa(r.flushes)
	for i := range recs {
		recs[i].Batch, recs[i].Index = batch, i
	}
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
