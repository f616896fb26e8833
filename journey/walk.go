package journey

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultWalkSteps bounds a walk whose input sets no MaxSteps.
const DefaultWalkSteps = 100

// WalkInput is what a dry run assumes about one user.
type WalkInput struct {
	UserID string `json:"user_id"`
	// Match is what the match carries (rule_id, item_id, event_type, attrs ...), as the
	// workflow's CEL `match` variable sees it: the event's attributes go under "attrs". Missing
	// keys read as the workflow's would (user_id is UserID, journey_id the journey's ID, the
	// others "" and attrs empty).
	Match map[string]any `json:"match,omitempty"`
	// Profile is the user's profile as the CEL `profile` variable sees it (time_zone, locale,
	// attrs); nil is a user without a profile.
	Profile map[string]any `json:"profile,omitempty"`
	// Locale picks the templates' wording (the profile's locale when empty).
	Locale string `json:"locale,omitempty"`
	// Responses are the responses the user gives, in order. Each is taken by the first wait_for
	// that listens for its type, or converts the run if it is a goal event.
	Responses []WalkResponse `json:"responses,omitempty"`
	// Failed are the channels whose provider refuses the send permanently: the send's fallback
	// is taken.
	Failed []string `json:"failed,omitempty"`
	// MaxSteps bounds the steps taken (DefaultWalkSteps when 0): beyond it the walk is an error.
	MaxSteps int `json:"max_steps,omitempty"`
}

// WalkResponse is one response the user gives.
type WalkResponse struct {
	Type string `json:"type"`
	// After is the delay from the last send or the start of the last wait (whichever is later)
	// to the response; zero means as soon as the run waits. A wait_for takes it only if it comes
	// within the timeout.
	After Duration `json:"after,omitempty"`
}

// WalkStep is one step visited.
type WalkStep struct {
	// Step is the step's ID, "#n" added on its n-th visit as in the reach's audit trail; a goal
	// step's ID for the conversion.
	Step string `json:"step"`
	// Kind is send, wait, wait_for, branch, split, goal or exit.
	Kind string `json:"kind"`
	// Outcome is what the step did: "sent", "fallback to sms", "failed: push, sms refused",
	// "wait 24h", "wait until 09:00 UTC", "response push_open", "timeout", "case 0", "else",
	// "path b", "holdout", "converted", "exit: reason".
	Outcome string `json:"outcome"`
	Channel string `json:"channel,omitempty"`
	// Title and Body are the rendered message of a send.
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
	// Next is where the run goes ("end" ends it); empty when the run ends at this step.
	Next string `json:"next,omitempty"`
}

// Walk is the path of a dry run and how the run would end.
type Walk struct {
	Steps []WalkStep `json:"steps"`
	// Status is the reach's final status: sent, converted, completed or failed.
	Status string `json:"status"`
}

// WalkPath walks j for one hypothetical user, the way the reach workflow interprets it, without
// Temporal and without sending anything: which steps the user would take, what each would send,
// and how the run would end.
//
// It drives the same journey machine as the workflow (Enter, Advance, Take, Decide, Converts;
// workflows.TestParity holds the two to the same steps, messages and statuses), with a simulated
// clock instead of Temporal's: the run starts at First and follows Resolve; a branch takes the first
// case whose CEL condition holds over match, profile and responses (a condition that fails to
// evaluate does not hold); a split picks the user's path with Pick, the holdout ending the run as
// completed; an exit, or reaching "end", ends it as sent when something was sent, else completed;
// a goal event that comes while the run waits ends it as converted wherever it is. Steps the run
// visits again are named id#n.
//
// What it assumes: every send passes its filter chain — consent, fatigue caps, quiet hours,
// rollout and the other filters read live state and are not simulated — and the provider accepts
// it, unless its channel is in in.Failed: then the fallback channel is tried once, and a send
// that no channel takes ends the run as failed. Templates are rendered as the dispatch does,
// over the match's fields (attrs, user_id, item_id, rule_id, event_type) and .profile.
//
// Time passes only in wait and wait_for steps. A response comes its After past the last send or
// wait start (and not before the response before it); only response types the journey listens
// for (ResponseEvents) reach the run, as in production, and only while it waits: a run that ends
// first never sees the rest. A response that comes during a wait, or during a wait_for that does
// not listen for it, is kept: branches see it in `responses`, and a later wait_for for its type
// takes it at once. The length of a wait until HH:MM depends on the clock, so only responses
// without After come during it. In the `responses` variable, event_id is "walk-n" and at counts
// the walk's time from the Unix epoch.
//
// An error names the step: a template that does not render (a variable neither the match nor the
// defaults fill), a condition that does not compile, a journey that does not validate, more
// steps than MaxSteps. The Walk returned with an error holds the steps taken before it.
func WalkPath(j Journey, in WalkInput) (Walk, error) {
	w := walk{j: &j, in: in, failed: map[string]bool{}, visits: map[string]int{}}
	w.out.Steps = []WalkStep{}
	if err := Validate(j, Catalog{anyEvent: true}); err != nil {
		return w.out, err
	}
	if err := w.setup(); err != nil {
		return w.out, err
	}
	limit := in.MaxSteps
	if limit <= 0 {
		limit = DefaultWalkSteps
	}
	cur, taken := j.First(), 0
	for {
		if cur == End {
			w.out.Status = EndStatus(w.sent)
			return w.out, nil
		}
		s, name, ok := j.Enter(w.visits, cur)
		if !ok {
			return w.out, w.fail(cur, "(flow)", "no step %q", cur)
		}
		if taken >= limit {
			return w.out, w.fail(name, "(walk)", "more than %d steps (MaxSteps): the walk stops", limit)
		}
		taken++
		next, done, err := w.step(name, s)
		if err != nil {
			return w.out, err
		}
		if done {
			return w.out, nil
		}
		cur = next
	}
}

// walk is one dry run: the journey machine (Journey.Enter, Advance, Take, Decide ...) driven by a
// simulated clock and the scripted responses, as the reach workflow drives it with Temporal's.
type walk struct {
	j  *Journey
	in WalkInput
	// match, profile and fields are what conditions and templates read.
	match, profile, fields map[string]any
	user, locale           string
	loc                    *time.Location
	failed                 map[string]bool
	visits                 map[string]int
	sent                   int

	// pending are the responses still to come, in order; arrived those that came, as the run
	// holds them (At counts the walk's time from the Unix epoch).
	pending []WalkResponse
	arrived []Response
	// now is the walk's time (it passes in waits only), last the last response's arrival.
	now, last time.Duration

	out Walk
}

// epoch is the walk's time zero.
var epoch = time.Unix(0, 0).UTC()

func (w *walk) fail(step, field, format string, args ...any) error {
	return &Error{JourneyID: w.j.ID, Step: step, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (w *walk) took(s WalkStep) { w.out.Steps = append(w.out.Steps, s) }

// setup builds the variables the workflow would: the match and profile as CEL sees them, and the
// fields templates render over.
func (w *walk) setup() error {
	in := w.in
	w.user = in.UserID
	if u, ok := in.Match["user_id"].(string); ok && w.user == "" {
		w.user = u
	}
	m := Match{UserID: w.user, JourneyID: w.j.ID}
	for _, kf := range []struct {
		k string
		f *string
	}{{"item_id", &m.ItemID}, {"rule_id", &m.RuleID}, {"event_type", &m.EventType}} {
		k, f := kf.k, kf.f
		v, ok := in.Match[k]
		if !ok {
			continue
		}
		s, isString := v.(string)
		if !isString {
			return &Error{JourneyID: w.j.ID, Field: "match." + k, Reason: fmt.Sprintf("want a string, have %T", v)}
		}
		*f = s
	}
	switch a := in.Match["attrs"].(type) {
	case nil:
	case map[string]any:
		m.Attrs = a
	case map[string]string:
		m.Attrs = make(map[string]any, len(a))
		for k, v := range a {
			m.Attrs[k] = v
		}
	default:
		return &Error{JourneyID: w.j.ID, Field: "match.attrs", Reason: fmt.Sprintf("want an object, have %T", a)}
	}
	// Exactly the keys the workflow's `match` has: a condition on anything else fails there too.
	w.match = m.Vars()

	w.profile = make(map[string]any, len(in.Profile)+3)
	for k, v := range in.Profile {
		w.profile[k] = v
	}
	for k, def := range map[string]any{"time_zone": "", "locale": in.Locale} {
		if _, ok := w.profile[k]; !ok {
			w.profile[k] = def
		}
	}
	if w.profile["attrs"] == nil {
		w.profile["attrs"] = map[string]any{}
	}
	w.locale = in.Locale
	if l, ok := w.profile["locale"].(string); ok && w.locale == "" {
		w.locale = l
	}
	// As profile.Location: an unknown or missing zone is UTC.
	w.loc = time.UTC
	if tz, _ := w.profile["time_zone"].(string); tz != "" {
		if loc, err := time.LoadLocation(tz); err == nil {
			w.loc = loc
		}
	}
	w.fields = m.Fields(w.profile)

	for _, ch := range in.Failed {
		w.failed[ch] = true
	}
	listened := w.j.ResponseEvents()
	for _, r := range in.Responses {
		if slices.Contains(listened, r.Type) {
			w.pending = append(w.pending, r) // the others are never routed to the run
		}
	}
	return nil
}

// step runs one step: where the run goes next, or done when it ended there.
func (w *walk) step(name string, s *Step) (next string, done bool, err error) {
	switch {
	case s.Send != nil:
		return w.send(name, s)
	case s.Wait != nil:
		return w.wait(name, s)
	case s.WaitFor != nil:
		return w.waitFor(name, s)
	case s.Branch != nil:
		return w.branch(name, s)
	case s.Split != nil:
		mv := w.j.Advance(s, w.user, w.sent, Outcome{})
		if mv.Done {
			w.took(WalkStep{Step: name, Kind: KindSplit, Outcome: mv.Outcome})
			w.out.Status = mv.Status
			return "", true, nil
		}
		w.took(WalkStep{Step: name, Kind: KindSplit, Outcome: "path " + mv.Outcome, Next: mv.Next})
		return mv.Next, false, nil
	case s.Exit != nil:
		mv := w.j.Advance(s, w.user, w.sent, Outcome{})
		w.took(WalkStep{Step: name, Kind: KindExit, Outcome: "exit: " + mv.Reason})
		w.out.Status = mv.Status
		return "", true, nil
	}
	return "", false, w.fail(name, "(kind)", "a run cannot take a %s step", cmp.Or(s.Kind(), "kindless"))
}

func (w *walk) send(name string, s *Step) (string, bool, error) {
	tmpl, ok := w.j.Templates[s.Send.Template]
	if !ok {
		return "", false, w.fail(name, "send.template", "unknown template %q", s.Send.Template)
	}
	title, body, err := tmpl.Render(w.locale, w.fields)
	if err != nil {
		return "", false, w.fail(name, "send.template", "render template %q: %v", s.Send.Template, err)
	}
	rec := WalkStep{Step: name, Kind: KindSend, Title: title, Body: body}
	var refused []string
	for i, ch := range s.Send.Channels() {
		rec.Channel = ch
		if w.failed[ch] {
			refused = append(refused, ch) // a permanent refusal: the fallback is tried
			continue
		}
		w.sent++
		rec.Outcome = "sent"
		if i > 0 {
			rec.Outcome = "fallback to " + ch
		}
		rec.Next = w.j.Advance(s, w.user, w.sent, Outcome{Channel: ch}).Next
		w.took(rec)
		return rec.Next, false, nil
	}
	rec.Outcome = "failed: " + strings.Join(refused, ", ") + " refused"
	w.took(rec)
	w.out.Status = w.j.Advance(s, w.user, w.sent, Outcome{}).Status
	return "", true, nil
}

func (w *walk) wait(name string, s *Step) (string, bool, error) {
	window, what, err := s.Wait.Span(epoch.Add(w.now), w.loc)
	if err != nil {
		return "", false, w.fail(name, "wait.until", "%v", err)
	}
	if s.Wait.Until != "" {
		window = 0 // its length depends on the clock: only responses without After come during it
	}
	if s.Wait.Until == BestHour {
		what += " (the fallback of best_hour: a dry run reads no open history)"
	}
	if a, goal := w.await(window, nil); goal {
		w.convert(name, KindWait, a)
		return "", true, nil
	}
	next := w.j.Advance(s, w.user, w.sent, Outcome{}).Next
	w.took(WalkStep{Step: name, Kind: KindWait, Outcome: what, Next: next})
	return next, false, nil
}

func (w *walk) waitFor(name string, s *Step) (string, bool, error) {
	wf := s.WaitFor
	a, goal := w.await(wf.Timeout.D(), wf.Events)
	if goal {
		w.convert(name, KindWaitFor, a)
		return "", true, nil
	}
	next := w.j.Advance(s, w.user, w.sent, Outcome{Responded: a != nil}).Next
	outcome := "timeout"
	if a != nil {
		outcome = "response " + a.Type
	}
	w.took(WalkStep{Step: name, Kind: KindWaitFor, Outcome: outcome, Next: next})
	return next, false, nil
}

// await waits up to window for a response of one of listen (nil for a plain wait): the response
// taken, and whether a goal event came (which ends the run).
func (w *walk) await(window time.Duration, listen []string) (*Response, bool) {
	// A response that came earlier and no wait_for took is taken at once.
	if i := Take(w.arrived, listen); i >= 0 {
		w.arrived[i].Consumed = true
		return &w.arrived[i], false
	}
	start := w.now
	end := start + window
	for len(w.pending) > 0 {
		r := w.pending[0]
		// After counts from the wait's start: no time passed since the last send.
		at := max(start+r.After.D(), w.last)
		if at > end {
			break
		}
		w.pending = w.pending[1:]
		w.last, w.now = at, at
		w.arrived = append(w.arrived, Response{Type: r.Type, EventID: fmt.Sprintf("walk-%d", len(w.arrived)+1), At: epoch.Add(at)})
		i := len(w.arrived) - 1
		taken := Take(w.arrived[i:], listen) == 0
		w.arrived[i].Consumed = taken
		if w.j.Converts(r.Type) {
			return &w.arrived[i], true
		}
		if taken {
			return &w.arrived[i], false
		}
	}
	w.now = end
	return nil, false
}

// convert ends the run on goal event a, which came during step name.
func (w *walk) convert(name, kind string, a *Response) {
	w.took(WalkStep{Step: name, Kind: kind, Outcome: "response " + a.Type})
	w.took(WalkStep{Step: w.j.GoalStep(a.Type), Kind: KindGoal, Outcome: StatusConverted})
	w.out.Status = StatusConverted
}

func (w *walk) branch(name string, s *Step) (string, bool, error) {
	conds := make([]string, len(s.Branch.Cases))
	for i, c := range s.Branch.Cases {
		conds[i] = c.When
	}
	vars := map[string]any{"match": w.match, "profile": w.profile, "responses": ResponseVars(w.arrived)}
	idx, err := Decide(conds, vars, CompileCondition)
	var ce *ConditionError
	if errors.As(err, &ce) {
		return "", false, w.fail(name, fmt.Sprintf("branch.cases[%d].when", ce.Index), "%v", ce)
	}
	mv := w.j.Advance(s, w.user, w.sent, Outcome{Case: idx})
	w.took(WalkStep{Step: name, Kind: KindBranch, Outcome: mv.Outcome, Next: mv.Next})
	return mv.Next, false, nil
}
