package journey

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Final statuses of a walk: the reach workflow's words (workflows.StatusX; workflows imports
// journey, so they are repeated here).
const (
	walkSent      = "sent"
	walkConverted = "converted"
	walkCompleted = "completed"
	walkFailed    = "failed"
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
// It follows the workflow: the run starts at First and follows Resolve; a branch takes the first
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
			w.out.Status = w.endStatus()
			return w.out, nil
		}
		s, ok := j.Step(cur)
		if !ok {
			return w.out, w.fail(cur, "(flow)", "no step %q", cur)
		}
		w.visits[s.ID]++
		name := s.ID
		if n := w.visits[s.ID]; n > 1 {
			name = fmt.Sprintf("%s#%d", s.ID, n)
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

// walk is one dry run's state.
type walk struct {
	j  *Journey
	in WalkInput
	// match, profile and fields are what conditions and templates read.
	match, profile, fields map[string]any
	user, locale           string
	failed                 map[string]bool
	visits                 map[string]int
	sent                   int

	// pending are the responses still to come, in order; arrived those that came.
	pending []WalkResponse
	arrived []arrival
	// now is the walk's time (it passes in waits only), last the last response's arrival.
	now, last time.Duration

	out Walk
}

type arrival struct {
	typ      string
	id       string
	at       time.Duration
	consumed bool
}

func (w *walk) fail(step, field, format string, args ...any) error {
	return &Error{JourneyID: w.j.ID, Step: step, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (w *walk) took(s WalkStep) { w.out.Steps = append(w.out.Steps, s) }

// setup builds the variables the workflow would: the match and profile as CEL sees them, and the
// fields templates render over (the workflow's fields()).
func (w *walk) setup() error {
	in := w.in
	w.user = in.UserID
	if u, ok := in.Match["user_id"].(string); ok && w.user == "" {
		w.user = u
	}
	// Exactly the keys the workflow's `match` has: a condition on anything else fails there too.
	w.match = map[string]any{"user_id": w.user, "journey_id": w.j.ID, "attrs": in.Match["attrs"]}
	for _, k := range []string{"item_id", "rule_id", "event_type"} {
		v, ok := in.Match[k]
		if !ok {
			v = ""
		}
		if _, isString := v.(string); !isString {
			return &Error{JourneyID: w.j.ID, Field: "match." + k, Reason: fmt.Sprintf("want a string, have %T", v)}
		}
		w.match[k] = v
	}
	var attrs map[string]any
	switch a := w.match["attrs"].(type) {
	case nil:
		attrs = map[string]any{}
	case map[string]any:
		attrs = a
	case map[string]string:
		attrs = make(map[string]any, len(a))
		for k, v := range a {
			attrs[k] = v
		}
	default:
		return &Error{JourneyID: w.j.ID, Field: "match.attrs", Reason: fmt.Sprintf("want an object, have %T", a)}
	}
	w.match["attrs"] = attrs

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

	w.fields = make(map[string]any, len(attrs)+5)
	for k, v := range attrs {
		w.fields[k] = v
	}
	for _, k := range []string{"user_id", "item_id", "rule_id", "event_type"} {
		v := w.match[k]
		if _, set := w.fields[k]; !set || v != "" {
			w.fields[k] = v
		}
	}
	w.fields["profile"] = w.profile

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

func (w *walk) endStatus() string {
	if w.sent > 0 {
		return walkSent
	}
	return walkCompleted
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
		path, next := w.j.Pick(s.Split, s.ID, w.user)
		if path == Holdout {
			// As the workflow: the holdout ends the run as completed, whatever was sent before.
			w.took(WalkStep{Step: name, Kind: KindSplit, Outcome: Holdout})
			w.out.Status = walkCompleted
			return "", true, nil
		}
		w.took(WalkStep{Step: name, Kind: KindSplit, Outcome: "path " + path, Next: next})
		return next, false, nil
	case s.Exit != nil:
		reason := s.Exit.Reason
		if reason == "" {
			reason = "exit at step " + s.ID
		}
		w.took(WalkStep{Step: name, Kind: KindExit, Outcome: "exit: " + reason})
		w.out.Status = w.endStatus()
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
	channels := []string{s.Send.Channel}
	if s.Send.Fallback != "" {
		channels = append(channels, s.Send.Fallback)
	}
	var refused []string
	for i, ch := range channels {
		rec.Channel = ch
		if w.failed[ch] {
			refused = append(refused, ch)
			continue
		}
		rec.Outcome = "sent"
		if i > 0 {
			rec.Outcome = "fallback to " + ch
		}
		rec.Next = w.j.Resolve(s.ID, s.Next)
		w.took(rec)
		w.sent++
		return rec.Next, false, nil
	}
	rec.Outcome = "failed: " + strings.Join(refused, ", ") + " refused"
	w.took(rec)
	w.out.Status = walkFailed
	return "", true, nil
}

func (w *walk) wait(name string, s *Step) (string, bool, error) {
	window, what := s.Wait.For.D(), "wait "+human(s.Wait.For.D())
	if s.Wait.Until != "" {
		tz, _ := w.profile["time_zone"].(string)
		// Its length depends on the clock: only responses without After come during it.
		window, what = 0, fmt.Sprintf("wait until %s %s", s.Wait.Until, cmp.Or(tz, "UTC"))
	}
	if a, goal := w.await(window, nil); goal {
		w.convert(name, KindWait, a)
		return "", true, nil
	}
	next := w.j.Resolve(s.ID, s.Next)
	w.took(WalkStep{Step: name, Kind: KindWait, Outcome: what, Next: next})
	return next, false, nil
}

func (w *walk) waitFor(name string, s *Step) (string, bool, error) {
	wf := s.WaitFor
	a, goal := w.await(wf.Timeout.D(), wf.Events)
	switch {
	case goal:
		w.convert(name, KindWaitFor, a)
		return "", true, nil
	case a != nil:
		next := w.j.Resolve(s.ID, wf.Then)
		w.took(WalkStep{Step: name, Kind: KindWaitFor, Outcome: "response " + a.typ, Next: next})
		return next, false, nil
	}
	next := w.j.Resolve(s.ID, wf.OnTimeout)
	w.took(WalkStep{Step: name, Kind: KindWaitFor, Outcome: "timeout", Next: next})
	return next, false, nil
}

// await waits up to window for a response of one of listen (nil for a plain wait): the response
// taken, and whether a goal event came (which ends the run).
func (w *walk) await(window time.Duration, listen []string) (*arrival, bool) {
	// A response that came earlier and no wait_for took is taken at once.
	for i := range w.arrived {
		if a := &w.arrived[i]; !a.consumed && slices.Contains(listen, a.typ) {
			a.consumed = true
			return a, false
		}
	}
	start := w.now
	end := start + window
	goals := w.j.GoalEvents()
	for len(w.pending) > 0 {
		r := w.pending[0]
		// After counts from the wait's start: no time passed since the last send.
		at := max(start+r.After.D(), w.last)
		if at > end {
			break
		}
		w.pending = w.pending[1:]
		w.last, w.now = at, at
		w.arrived = append(w.arrived, arrival{typ: r.Type, id: fmt.Sprintf("walk-%d", len(w.arrived)+1), at: at})
		a := &w.arrived[len(w.arrived)-1]
		if slices.Contains(listen, a.typ) {
			a.consumed = true
		}
		if slices.Contains(goals, a.typ) {
			return a, true
		}
		if a.consumed {
			return a, false
		}
	}
	w.now = end
	return nil, false
}

// convert ends the run on goal event a, which came during step name.
func (w *walk) convert(name, kind string, a *arrival) {
	goal := ""
	for _, s := range w.j.Steps {
		if s.Goal != nil && slices.Contains(s.Goal.Events, a.typ) {
			goal = s.ID
			break
		}
	}
	w.took(WalkStep{Step: name, Kind: kind, Outcome: "response " + a.typ})
	w.took(WalkStep{Step: goal, Kind: KindGoal, Outcome: walkConverted})
	w.out.Status = walkConverted
}

func (w *walk) branch(name string, s *Step) (string, bool, error) {
	responses := make([]map[string]any, 0, len(w.arrived))
	for _, a := range w.arrived {
		responses = append(responses, map[string]any{"type": a.typ, "event_id": a.id,
			"at": time.Unix(0, 0).UTC().Add(a.at).Format(time.RFC3339), "attrs": map[string]any{}})
	}
	vars := map[string]any{"match": w.match, "profile": w.profile, "responses": responses}
	for i, c := range s.Branch.Cases {
		prog, err := CompileCondition(c.When)
		if err != nil {
			return "", false, w.fail(name, fmt.Sprintf("branch.cases[%d].when", i), "condition %q: %v", c.When, err)
		}
		out, _, err := prog.Eval(vars)
		if err != nil {
			continue // as the workflow: a condition that fails at run time does not hold
		}
		if b, ok := out.Value().(bool); ok && b {
			next := w.j.Resolve(s.ID, c.Next)
			w.took(WalkStep{Step: name, Kind: KindBranch, Outcome: fmt.Sprintf("case %d", i), Next: next})
			return next, false, nil
		}
	}
	next := w.j.Resolve(s.ID, s.Branch.Else)
	w.took(WalkStep{Step: name, Kind: KindBranch, Outcome: "else", Next: next})
	return next, false, nil
}

// human prints 24h rather than 24h0m0s (as the workflow's step history does).
func human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
	}
	return s
}
