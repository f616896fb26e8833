package journey

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
)

// The journey machine: what a step means, in one place. It decides and never performs: given the
// journey, the step a run is at and what happened there (a send went out or was refused, a
// response came or the wait timed out, a branch case held), it says where the run goes and how it
// ends. Its drivers perform: the reach workflow with Temporal's clock, signals and activities, the
// dry run (WalkPath) with a simulated clock and scripted responses. Nothing here reads a clock or
// does I/O, so the workflow may call it freely; TestParity in workflows holds the two drivers to it.

// Statuses of a reach: the ReachStatus search attribute, a run's final status, a walk's.
const (
	StatusRunning    = "running"
	StatusWaiting    = "waiting"
	StatusSent       = "sent"
	StatusSuppressed = "suppressed"
	StatusConverted  = "converted"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
	StatusCompleted  = "completed"
)

// Enter counts a visit of step id in visits and returns the step with the name the visit goes by:
// its ID, then id#n on its n-th visit (the audit trail's and the step history's names). ok is
// false when the journey has no such step (nothing is counted).
func (j *Journey) Enter(visits map[string]int, id string) (s *Step, name string, ok bool) {
	s, ok = j.Step(id)
	if !ok {
		return nil, "", false
	}
	visits[s.ID]++
	name = s.ID
	if n := visits[s.ID]; n > 1 {
		name = fmt.Sprintf("%s#%d", s.ID, n)
	}
	return s, name, true
}

// Outcome is what happened at a step, as its driver saw it.
type Outcome struct {
	// Channel is the channel a send went out on; empty when no channel took it.
	Channel string
	// Dropped is set when the filter chain dropped a send.
	Dropped bool
	// Responded is set when a wait_for took a response; unset, it timed out.
	Responded bool
	// Case is the index of the branch case that held; -1 when none did (the else).
	Case int
}

// Move is where a run goes after a step.
type Move struct {
	// Next is the step to run next, or End. Empty when the run ends at the step (Done).
	Next string
	// Outcome names what the step decided where that is a choice: "case 0", "else", a split's
	// path or Holdout.
	Outcome string
	// Done ends the run at the step, with Status, for Reason.
	Done   bool
	Status string
	Reason string
}

// Advance says where a run goes after step s, given what happened there (o), for user (splits
// read it); sent counts the messages the run sent so far, s's included. Goal events are not
// steps the run takes: a driver that sees one ends the run as converted wherever it is
// (Converts). Reaching End ends the run with EndStatus.
func (j *Journey) Advance(s *Step, user string, sent int, o Outcome) Move {
	next := func(target string) Move { return Move{Next: j.Resolve(s.ID, target)} }
	switch {
	case s.Send != nil:
		switch {
		case o.Dropped && sent > 0:
			// The user was reached before: a dropped retarget does not unsay it.
			return Move{Done: true, Status: StatusSent, Reason: fmt.Sprintf("%d sent before the filter chain dropped the send at step %s", sent, s.ID)}
		case o.Dropped:
			return Move{Done: true, Status: StatusSuppressed, Reason: "the filter chain dropped the send"}
		case o.Channel == "":
			return Move{Done: true, Status: StatusFailed, Reason: "no channel took the send"}
		}
		return next(s.Next)
	case s.Wait != nil:
		return next(s.Next)
	case s.WaitFor != nil:
		if o.Responded {
			return next(s.WaitFor.Then)
		}
		return next(s.WaitFor.OnTimeout)
	case s.Branch != nil:
		if o.Case >= 0 && o.Case < len(s.Branch.Cases) {
			mv := next(s.Branch.Cases[o.Case].Next)
			mv.Outcome = fmt.Sprintf("case %d", o.Case)
			return mv
		}
		mv := next(s.Branch.Else)
		mv.Outcome = "else"
		return mv
	case s.Split != nil:
		path, to := j.Pick(s.Split, s.ID, user)
		if path == Holdout {
			// The holdout ends the run as completed, whatever was sent before.
			return Move{Outcome: Holdout, Done: true, Status: StatusCompleted,
				Reason: "holdout group of split " + s.ID + ": nothing is sent"}
		}
		return Move{Next: to, Outcome: path}
	case s.Exit != nil:
		reason := s.Exit.Reason
		if reason == "" {
			reason = "exit at step " + s.ID
		}
		return Move{Done: true, Status: EndStatus(sent), Reason: reason}
	}
	return Move{Done: true, Status: StatusFailed, Reason: fmt.Sprintf("step %s has no kind", s.ID)}
}

// EndStatus is the status of a run that reached its end or an exit: sent when it sent something.
func EndStatus(sent int) string {
	if sent > 0 {
		return StatusSent
	}
	return StatusCompleted
}

// ProgressStatus is the status of a run between steps: sent once it sent something.
func ProgressStatus(sent int) string {
	if sent > 0 {
		return StatusSent
	}
	return StatusRunning
}

// Channels are the channels a send tries, in order: its own, then its fallback, which is tried
// only when the provider refused the first for good.
func (s *Send) Channels() []string {
	if s.Fallback == "" {
		return []string{s.Channel}
	}
	return []string{s.Channel, s.Fallback}
}

// Span is how long a wait started at now lasts and how the step history describes it: For, or
// until the next HH:MM in loc (a best hour not resolved by AtHour: its fallback).
func (w *Wait) Span(now time.Time, loc *time.Location) (time.Duration, string, error) {
	w = w.AtHour(-1)
	if w.Until == "" {
		return w.For.D(), "wait " + Human(w.For.D()), nil
	}
	at, err := NextLocal(now, w.Until, loc)
	if err != nil {
		return 0, "", err
	}
	return at.Sub(now), fmt.Sprintf("wait until %s %s", w.Until, loc), nil
}

// Describe is how the step history describes a wait_for.
func (wf *WaitFor) Describe() string {
	return fmt.Sprintf("wait up to %s for %s", Human(wf.Timeout.D()), strings.Join(wf.Events, " or "))
}

// Response is a response event routed to a run (push_open, chat_started, order_paid...).
type Response struct {
	EventID string         `json:"event_id"`
	Type    string         `json:"type"`
	At      time.Time      `json:"at"`
	Attrs   map[string]any `json:"attrs,omitempty"`
	// Consumed is set when a wait_for took it.
	Consumed bool `json:"consumed,omitempty"`
}

// Take is the index of the first response of one of types that no wait_for took yet, -1 when
// there is none: a wait_for takes it at once, whether it came before the wait or during it.
func Take(rs []Response, types []string) int {
	for i, r := range rs {
		if !r.Consumed && slices.Contains(types, r.Type) {
			return i
		}
	}
	return -1
}

// Converts reports whether a response of type typ is a goal event: it ends the run as converted
// wherever the run is.
func (j *Journey) Converts(typ string) bool { return slices.Contains(j.GoalEvents(), typ) }

// GoalStep is the ID of the goal step that event type typ reaches ("" when none).
func (j *Journey) GoalStep(typ string) string {
	for _, s := range j.Steps {
		if s.Goal != nil && slices.Contains(s.Goal.Events, typ) {
			return s.ID
		}
	}
	return ""
}

// Match is a match as a journey reads it: branch conditions as the `match` variable, templates
// as fields.
type Match struct {
	UserID, ItemID, RuleID, EventType, JourneyID string
	// Attrs are the attributes of the event that completed the match.
	Attrs map[string]any
}

// Vars is the CEL `match` variable.
func (m Match) Vars() map[string]any {
	return map[string]any{"user_id": m.UserID, "item_id": m.ItemID, "rule_id": m.RuleID, "event_type": m.EventType,
		"journey_id": m.JourneyID, "attrs": orEmpty(m.Attrs)}
}

// Fields are what templates render over: the event's attrs, the match's fields (which win over
// an attribute of the same name unless empty) and the profile (.profile, as Profile.Vars).
func (m Match) Fields(profile map[string]any) map[string]any {
	f := make(map[string]any, len(m.Attrs)+5)
	for k, v := range m.Attrs {
		f[k] = v
	}
	for _, kv := range [...][2]string{{"user_id", m.UserID}, {"item_id", m.ItemID}, {"rule_id", m.RuleID}, {"event_type", m.EventType}} {
		if _, set := f[kv[0]]; !set || kv[1] != "" {
			f[kv[0]] = kv[1]
		}
	}
	f["profile"] = profile
	return f
}

// ResponseVars is the CEL `responses` variable: every response so far, taken or not.
func ResponseVars(rs []Response) []map[string]any {
	out := make([]map[string]any, 0, len(rs))
	for _, r := range rs {
		out = append(out, map[string]any{"type": r.Type, "event_id": r.EventID,
			"at": r.At.Format(time.RFC3339), "attrs": orEmpty(r.Attrs)})
	}
	return out
}

// ConditionError is a branch condition that does not compile.
type ConditionError struct {
	Index int
	When  string
	Err   error
}

func (e *ConditionError) Error() string { return fmt.Sprintf("condition %q: %v", e.When, e.Err) }
func (e *ConditionError) Unwrap() error { return e.Err }

// Decide is the index of the first condition that holds over vars (match, profile, responses),
// -1 when none does. A condition that fails at run time (a missing attribute) does not hold; one
// that does not compile is a *ConditionError. compile is CompileCondition, or a cache of it.
func Decide(conditions []string, vars map[string]any, compile func(string) (cel.Program, error)) (int, error) {
	for i, c := range conditions {
		prog, err := compile(c)
		if err != nil {
			return 0, &ConditionError{Index: i, When: c, Err: err}
		}
		out, _, err := prog.Eval(vars)
		if err != nil {
			continue
		}
		if b, ok := out.Value().(bool); ok && b {
			return i, nil
		}
	}
	return -1, nil
}

// Human prints 24h rather than 24h0m0s.
func Human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
	}
	return s
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
