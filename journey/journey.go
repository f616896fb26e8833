// Package journey is what a reach does, written by growth teams as data: a small graph of steps
// (send, wait, wait_for, branch, split, goal, exit) with the message templates it sends. What each
// step means lives here once, in the journey machine (machine.go): the reach workflow drives it
// with Temporal's clock and signals, the dry run (WalkPath) with a simulated clock. A run keeps the
// version it started with.
package journey

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"text/template"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/spec"
)

// End is the target that ends the journey.
const End = "end"

// Duration reads "10m", "24h" or "3d".
type Duration = spec.Duration

// Journey is a graph of steps. The run starts at the first step that is not a goal.
type Journey struct {
	ID          string `json:"id"`
	Version     int    `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
	// Templates are the messages send steps use, by ID.
	Templates map[string]Template `json:"templates,omitempty"`
	Steps     []Step              `json:"steps"`
	// Priority decides who gets the last slot of a fatigue cap: journeys of the worker's
	// last-slot priority or more.
	Priority int  `json:"priority,omitempty"`
	Disabled bool `json:"disabled,omitempty"`
}

// Template is a message's wording: Go text/template over the match's fields (user_id, item_id,
// rule_id, event_type and the event's attrs) and the user's profile (.profile).
type Template struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body"`
	// Locales holds the wording per locale ("de", "pt-BR"); the user's profile locale picks one
	// (exact, then its language), else Title and Body.
	Locales map[string]Text `json:"locales,omitempty"`
	// Defaults fill variables the match does not carry (or carries empty). A variable with
	// neither fails the send: a message never goes out with a hole in it.
	Defaults map[string]string `json:"defaults,omitempty"`
}

// Text is one locale's wording.
type Text struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body"`
}

// For returns the wording for locale: exact match, then the language ("pt" for "pt-BR"), then
// the template's own.
func (t Template) For(locale string) Text {
	if x, ok := t.Locales[locale]; ok {
		return x
	}
	if lang, _, ok := strings.Cut(locale, "-"); ok {
		if x, ok := t.Locales[lang]; ok {
			return x
		}
	}
	return Text{Title: t.Title, Body: t.Body}
}

// Render renders the template for locale over fields, the defaults filling what fields lack.
func (t Template) Render(locale string, fields map[string]any) (title, body string, err error) {
	data := make(map[string]any, len(fields)+len(t.Defaults))
	for k, v := range t.Defaults {
		data[k] = v
	}
	for k, v := range fields {
		if s, ok := v.(string); ok && s == "" {
			continue // empty is missing: the default, or an error
		}
		data[k] = v
	}
	text := t.For(locale)
	if title, err = render("title", text.Title, data); err != nil {
		return "", "", err
	}
	if body, err = render("body", text.Body, data); err != nil {
		return "", "", err
	}
	return title, body, nil
}

func render(name, text string, data map[string]any) (string, error) {
	if text == "" {
		return "", nil
	}
	tp, err := ParseTemplate(name, text)
	if err != nil {
		return "", err
	}
	b := &boundedWriter{max: MaxRendered}
	if err := tp.Execute(b, data); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return b.String(), nil
}

// MaxRendered bounds a rendered title or body: a template ranging over event data cannot make a
// message (or a worker's memory) grow without end.
const MaxRendered = 16 << 10

var errTooLong = fmt.Errorf("rendered text exceeds %d bytes", MaxRendered)

type boundedWriter struct {
	strings.Builder
	max int
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > w.max {
		return 0, errTooLong
	}
	return w.Builder.Write(p)
}

// Step is one node; exactly one of its kinds is set. A target field (next, then, on_timeout,
// else, a case's or path's next) names a step; empty means the step after this one in the list,
// and "end" ends the journey.
type Step struct {
	ID      string   `json:"id"`
	Send    *Send    `json:"send,omitempty"`
	Wait    *Wait    `json:"wait,omitempty"`
	WaitFor *WaitFor `json:"wait_for,omitempty"`
	Branch  *Branch  `json:"branch,omitempty"`
	Split   *Split   `json:"split,omitempty"`
	Goal    *Goal    `json:"goal,omitempty"`
	Exit    *Exit    `json:"exit,omitempty"`
	// Next follows send and wait steps.
	Next string `json:"next,omitempty"`
}

// Send sends a template on a channel; on a permanent failure it tries Fallback once. A send the
// filter chain drops ends the journey as suppressed.
type Send struct {
	Channel  string `json:"channel"`
	Template string `json:"template"`
	Fallback string `json:"fallback,omitempty"`
	// Chain names the filter chain the send runs ("default" when empty).
	Chain string `json:"chain,omitempty"`
	// Category is marketing (default) or transactional: consent and quiet hours read it.
	Category string `json:"category,omitempty"`
}

// Wait pauses for a duration, or until the next time of day (HH:MM) in the user's time zone, or
// until the user's best hour (Until: BestHour): the hour of day at which they opened messages most
// often (Opens, push_open by default, from their audit trail, in their time zone), Fallback
// (HH:MM) when they have too little history.
type Wait struct {
	For      Duration `json:"for,omitempty"`
	Until    string   `json:"until,omitempty"`
	Fallback string   `json:"fallback,omitempty"`
	Opens    []string `json:"opens,omitempty"`
}

// BestHour is Wait.Until for a send at the user's best hour.
const BestHour = "best_hour"

// OpenTypes are the response types whose history decides a best hour (push_open by default).
func (w *Wait) OpenTypes() []string {
	if len(w.Opens) == 0 {
		return []string{event.TypeOpened}
	}
	return w.Opens
}

// AtHour is the wait resolved for a user whose best hour is hour (0-23; -1: too little history,
// the fallback). A wait not for the best hour is itself.
func (w *Wait) AtHour(hour int) *Wait {
	if w.Until != BestHour {
		return w
	}
	r := *w
	r.Until = w.Fallback
	if hour >= 0 {
		r.Until = fmt.Sprintf("%02d:00", hour)
	}
	return &r
}

// WaitFor waits for one of the response events, continuing on Then when one comes and on
// OnTimeout when none came within Timeout.
type WaitFor struct {
	Events    []string `json:"events"`
	Timeout   Duration `json:"timeout"`
	Then      string   `json:"then,omitempty"`
	OnTimeout string   `json:"on_timeout,omitempty"`
}

// Branch takes the first case whose CEL condition holds, else Else. Conditions read `match`
// (the match's fields), `profile` (time_zone, locale, attrs) and `responses` (the responses so
// far: type, event_id, at, attrs).
type Branch struct {
	Cases []Case `json:"cases"`
	Else  string `json:"else,omitempty"`
}

// Case is one condition of a branch.
type Case struct {
	When string `json:"when"`
	Next string `json:"next,omitempty"`
}

// Split sends each user down one weighted path, stable per user and journey; Holdout is the
// weight of the group that gets nothing (and ends there).
type Split struct {
	Paths   []Path `json:"paths"`
	Holdout int    `json:"holdout,omitempty"`
}

// Path is one arm of a split.
type Path struct {
	Name   string `json:"name"`
	Weight int    `json:"weight"`
	Next   string `json:"next,omitempty"`
}

// Goal is the conversion: when one of its events comes, the journey ends as converted, wherever
// it is. A goal is not part of the flow (no step leads to it).
type Goal struct {
	Events []string `json:"events"`
	// Window is the attribution window: a goal event up to this long after a send converts the
	// reach even when the run has ended ("72h", "90m"; 24h when empty, at most 2160h).
	Window string `json:"window,omitempty"`
}

// Exit ends the journey, with a reason the audit trail shows.
type Exit struct {
	Reason string `json:"reason,omitempty"`
}

// Kinds of steps.
const (
	KindSend    = "send"
	KindWait    = "wait"
	KindWaitFor = "wait_for"
	KindBranch  = "branch"
	KindSplit   = "split"
	KindGoal    = "goal"
	KindExit    = "exit"
)

// Kind names the step's kind ("" when none or several are set).
func (s *Step) Kind() string {
	var kinds []string
	for k, set := range map[string]bool{KindSend: s.Send != nil, KindWait: s.Wait != nil, KindWaitFor: s.WaitFor != nil,
		KindBranch: s.Branch != nil, KindSplit: s.Split != nil, KindGoal: s.Goal != nil, KindExit: s.Exit != nil} {
		if set {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

// Parse reads one journey from YAML or JSON; unknown fields are refused.
func Parse(b []byte) (Journey, error) {
	var j Journey
	if err := spec.Unmarshal(b, &j); err != nil {
		field, reason := spec.Refusal(err)
		return Journey{}, &Error{JourneyID: spec.Name(b, "id"), Field: field, Reason: reason}
	}
	return j, nil
}

// Error names the journey, the step and the field at fault, and why.
type Error struct {
	JourneyID string
	Step      string
	Field     string
	Reason    string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "journey %q: ", e.JourneyID)
	if e.Step != "" {
		fmt.Fprintf(&b, "step %q: ", e.Step)
	}
	fmt.Fprintf(&b, "%s: %s", e.Field, e.Reason)
	return b.String()
}

// Catalog is what a journey is validated against: the channels the workers have, and the event
// catalogue.
type Catalog struct {
	Channels []string
	// Chains are the filter chains sends may name (any when nil).
	Chains []string
	// Events gives the event catalogue: wait_for and branch conditions over responses must name
	// types declared a response, goals types declared a goal (event.Default when nil, or when it
	// returns nil).
	Events func() *event.Catalog
	// Routed (nil: not checked) says why the journey cannot serve what routes to it ("" when it
	// can): the active rules whose matches it would render, whose events may not carry the fields
	// its templates need.
	Routed func(Journey) string
	// anyEvent skips the event types: a walk runs what was validated on write.
	anyEvent bool
}

func (c Catalog) events() *event.Catalog {
	if c.Events == nil {
		return nil // the default catalogue
	}
	return c.Events()
}

// Index of a journey: steps by ID, targets resolved.
func (j *Journey) step(id string) (int, bool) {
	for i := range j.Steps {
		if j.Steps[i].ID == id {
			return i, true
		}
	}
	return 0, false
}

// Step returns the step with id.
func (j *Journey) Step(id string) (*Step, bool) {
	i, ok := j.step(id)
	if !ok {
		return nil, false
	}
	return &j.Steps[i], true
}

// First is the step a run starts at ("end" for a journey without flow steps).
func (j *Journey) First() string {
	for _, s := range j.Steps {
		if s.Goal == nil {
			return s.ID
		}
	}
	return End
}

// Resolve turns a target written on step from into a step ID or End.
func (j *Journey) Resolve(from, target string) string {
	if target != "" {
		return target
	}
	i, ok := j.step(from)
	if !ok {
		return End
	}
	for _, s := range j.Steps[i+1:] {
		if s.Goal == nil {
			return s.ID
		}
	}
	return End
}

// GoalEvents are the events that convert the journey.
func (j *Journey) GoalEvents() []string {
	var out []string
	for _, s := range j.Steps {
		if s.Goal != nil {
			out = append(out, s.Goal.Events...)
		}
	}
	return out
}

// ResponseEvents are every event type the journey listens for (wait_for and goal).
func (j *Journey) ResponseEvents() []string {
	out := j.GoalEvents()
	for _, s := range j.Steps {
		if s.WaitFor != nil {
			out = append(out, s.WaitFor.Events...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Targets are the steps a step can lead to, resolved (End included).
func (j *Journey) Targets(s *Step) []string {
	r := func(t string) string { return j.Resolve(s.ID, t) }
	switch {
	case s.Send != nil, s.Wait != nil:
		return []string{r(s.Next)}
	case s.WaitFor != nil:
		return []string{r(s.WaitFor.Then), r(s.WaitFor.OnTimeout)}
	case s.Branch != nil:
		out := []string{r(s.Branch.Else)}
		for _, c := range s.Branch.Cases {
			out = append(out, r(c.Next))
		}
		return out
	case s.Split != nil:
		var out []string
		for _, p := range s.Split.Paths {
			out = append(out, r(p.Next))
		}
		return out
	}
	return nil
}

// Holdout is the split outcome of the holdout group.
const Holdout = "holdout"

// Pick returns the split path (its name, or Holdout) of user: the same user always gets the same
// path of the same journey, whatever the version.
func (j *Journey) Pick(sp *Split, stepID, userID string) (name, next string) {
	total := sp.Holdout
	for _, p := range sp.Paths {
		total += p.Weight
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(j.ID + "\x00" + stepID + "\x00" + userID))
	b := int(h.Sum64() % uint64(total))
	for _, p := range sp.Paths {
		if b < p.Weight {
			return p.Name, j.Resolve(stepID, p.Next)
		}
		b -= p.Weight
	}
	return Holdout, End
}

// NextLocal returns the first instant after now that reads hh:mm in loc.
func NextLocal(now time.Time, hhmm string, loc *time.Location) (time.Time, error) {
	t, err := time.Parse("15:04", hhmm)
	if err != nil {
		return time.Time{}, fmt.Errorf("time of day %q is not HH:MM", hhmm)
	}
	l := now.In(loc)
	at := time.Date(l.Year(), l.Month(), l.Day(), t.Hour(), t.Minute(), 0, 0, loc)
	if !at.After(now) {
		at = time.Date(l.Year(), l.Month(), l.Day()+1, t.Hour(), t.Minute(), 0, 0, loc)
	}
	return at, nil
}

// BranchEnv is the CEL environment of branch conditions.
var BranchEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("match", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("profile", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("responses", cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
	)
	if err != nil {
		panic(err)
	}
	return env
}()

// branchFields are what a branch condition reads (Match.Vars, profile.Profile.Vars).
var branchFields = spec.Fields{
	"match":   {"user_id": "string", "item_id": "string", "rule_id": "string", "event_type": "string", "journey_id": "string", "attrs": "map"},
	"profile": {"time_zone": "string", "locale": "string", "attrs": "map"},
}

// CompileCondition compiles a branch condition; it must be boolean.
func CompileCondition(expr string) (cel.Program, error) {
	ast, err := compileCondition(expr)
	if err != nil {
		return nil, err
	}
	return BranchEnv.Program(ast)
}

func compileCondition(expr string) (*cel.Ast, error) {
	ast, iss := BranchEnv.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("must be boolean, is %s", ast.OutputType())
	}
	return ast, nil
}

// checkCondition is what a journey's validation asks of a branch condition, besides compiling: to
// read fields its variables have, and to be more than one field that is not a bool (runs compile
// what was validated on write, so a journey stored before this check still runs as it did).
func checkCondition(expr string) error {
	ast, err := compileCondition(expr)
	if err != nil {
		return err
	}
	return spec.CheckCondition(ast, branchFields, nil)
}

// ParseTemplate compiles one of a template's texts.
func ParseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Parse(text)
}
