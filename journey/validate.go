package journey

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/omegareach/omega/event"
)

// Validate checks j against cat and names the step and field at fault: unknown channels and
// templates, targets that do not exist, steps no path reaches, wait_for without a timeout, and
// cycles a run could go round without waiting.
func Validate(j Journey, cat Catalog) error {
	v := validator{j: &j, cat: cat, events: cat.events()}
	return v.run()
}

type validator struct {
	j      *Journey
	cat    Catalog
	events *event.Catalog
}

func (v *validator) fail(step, field, format string, args ...any) error {
	return &Error{JourneyID: v.j.ID, Step: step, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (v *validator) run() error {
	j := v.j
	if j.ID == "" {
		return v.fail("", "id", "is required")
	}
	if strings.ContainsAny(j.ID, "/ \t\n") {
		return v.fail("", "id", "must not contain '/' or spaces")
	}
	if len(j.Steps) == 0 {
		return v.fail("", "steps", "a journey needs at least one step")
	}
	for id, t := range j.Templates {
		texts := map[string]Text{"": {Title: t.Title, Body: t.Body}}
		for loc, x := range t.Locales {
			texts["locales."+loc+"."] = x
		}
		for prefix, x := range texts {
			if x.Body == "" {
				return v.fail("", "templates."+id+"."+prefix+"body", "is required")
			}
			for field, text := range map[string]string{"title": x.Title, "body": x.Body} {
				if _, err := ParseTemplate(field, text); err != nil {
					return v.fail("", "templates."+id+"."+prefix+field, "does not parse: %v", err)
				}
			}
		}
	}
	seen := map[string]bool{}
	for i := range j.Steps {
		s := &j.Steps[i]
		if s.ID == "" {
			return v.fail("", fmt.Sprintf("steps[%d].id", i), "is required")
		}
		if s.ID == End || strings.ContainsAny(s.ID, "/# ") || strings.ContainsFunc(s.ID, unicode.IsControl) {
			return v.fail(s.ID, "id", "must not be %q nor contain '/', '#', spaces or control characters", End)
		}
		if seen[s.ID] {
			return v.fail(s.ID, "id", "is used by two steps")
		}
		seen[s.ID] = true
	}
	if j.First() == End {
		return v.fail("", "steps", "a journey needs a step that is not a goal")
	}
	for i := range j.Steps {
		if err := v.step(&j.Steps[i]); err != nil {
			return err
		}
	}
	if err := v.reachable(); err != nil {
		return err
	}
	if err := v.cycles(); err != nil {
		return err
	}
	if v.cat.Routed != nil && !v.cat.anyEvent {
		if reason := v.cat.Routed(*j); reason != "" {
			return v.fail("", "templates", "%s", reason)
		}
	}
	return nil
}

func (v *validator) step(s *Step) error {
	if s.Kind() == "" {
		return v.fail(s.ID, "(kind)", "set exactly one of send, wait, wait_for, branch, split, goal, exit")
	}
	if s.Next != "" && s.Send == nil && s.Wait == nil {
		return v.fail(s.ID, "next", "only send and wait steps take next; %s steps name their own targets", s.Kind())
	}
	switch {
	case s.Send != nil:
		if err := v.channel(s.ID, "send.channel", s.Send.Channel); err != nil {
			return err
		}
		if s.Send.Fallback != "" {
			if err := v.channel(s.ID, "send.fallback", s.Send.Fallback); err != nil {
				return err
			}
			if s.Send.Fallback == s.Send.Channel {
				return v.fail(s.ID, "send.fallback", "is the step's own channel")
			}
		}
		if s.Send.Chain != "" && v.cat.Chains != nil && !slices.Contains(v.cat.Chains, s.Send.Chain) {
			return v.fail(s.ID, "send.chain", "unknown filter chain %q (known: %s)", s.Send.Chain, strings.Join(v.cat.Chains, ", "))
		}
		if s.Send.Category != "" && s.Send.Category != "marketing" && s.Send.Category != "transactional" {
			return v.fail(s.ID, "send.category", "%q: want marketing or transactional", s.Send.Category)
		}
		if s.Send.Template == "" {
			return v.fail(s.ID, "send.template", "is required")
		}
		if _, ok := v.j.Templates[s.Send.Template]; !ok {
			return v.fail(s.ID, "send.template", "unknown template %q (the journey's templates: %s)", s.Send.Template, strings.Join(v.templateIDs(), ", "))
		}
		return v.target(s.ID, "next", s.Next)
	case s.Wait != nil:
		switch {
		case s.Wait.For > 0 && s.Wait.Until != "":
			return v.fail(s.ID, "wait", "set for or until, not both")
		case s.Wait.Until == BestHour:
			if s.Wait.Fallback == "" {
				return v.fail(s.ID, "wait.fallback", "a wait until best_hour needs the time of day (HH:MM) for users with too little history")
			}
			if _, err := time.Parse("15:04", s.Wait.Fallback); err != nil {
				return v.fail(s.ID, "wait.fallback", "%q is not a time of day HH:MM", s.Wait.Fallback)
			}
			if len(s.Wait.Opens) > 0 {
				if err := v.responses(s.ID, "wait.opens", s.Wait.Opens, event.UseResponse); err != nil {
					return err
				}
			}
		case s.Wait.Until != "":
			if _, err := time.Parse("15:04", s.Wait.Until); err != nil {
				return v.fail(s.ID, "wait.until", "%q is not a time of day HH:MM (or best_hour)", s.Wait.Until)
			}
		case s.Wait.For <= 0:
			return v.fail(s.ID, "wait.for", "a wait needs a positive duration (or until)")
		}
		if s.Wait.Until != BestHour && (s.Wait.Fallback != "" || len(s.Wait.Opens) > 0) {
			return v.fail(s.ID, "wait.fallback", "fallback and opens belong to a wait until best_hour")
		}
		return v.target(s.ID, "next", s.Next)
	case s.WaitFor != nil:
		if err := v.responses(s.ID, "wait_for.events", s.WaitFor.Events, event.UseResponse); err != nil {
			return err
		}
		if s.WaitFor.Timeout <= 0 {
			return v.fail(s.ID, "wait_for.timeout", "is required: how long to wait before on_timeout")
		}
		if err := v.target(s.ID, "wait_for.then", s.WaitFor.Then); err != nil {
			return err
		}
		return v.target(s.ID, "wait_for.on_timeout", s.WaitFor.OnTimeout)
	case s.Branch != nil:
		if len(s.Branch.Cases) == 0 {
			return v.fail(s.ID, "branch.cases", "a branch needs at least one case")
		}
		for i, c := range s.Branch.Cases {
			f := fmt.Sprintf("branch.cases[%d]", i)
			if c.When == "" {
				return v.fail(s.ID, f+".when", "is required")
			}
			if err := checkCondition(c.When); err != nil {
				return v.fail(s.ID, f+".when", "%v", err)
			}
			if err := v.conditionTypes(s.ID, f+".when", c.When); err != nil {
				return err
			}
			if err := v.target(s.ID, f+".next", c.Next); err != nil {
				return err
			}
		}
		return v.target(s.ID, "branch.else", s.Branch.Else)
	case s.Split != nil:
		if len(s.Split.Paths) == 0 {
			return v.fail(s.ID, "split.paths", "a split needs at least one path")
		}
		if s.Split.Holdout < 0 {
			return v.fail(s.ID, "split.holdout", "must not be negative")
		}
		names := map[string]bool{}
		for i, p := range s.Split.Paths {
			f := fmt.Sprintf("split.paths[%d]", i)
			if p.Name == "" || p.Name == Holdout || names[p.Name] {
				return v.fail(s.ID, f+".name", "needs a unique name other than %q", Holdout)
			}
			names[p.Name] = true
			if p.Weight <= 0 {
				return v.fail(s.ID, f+".weight", "must be positive")
			}
			if err := v.target(s.ID, f+".next", p.Next); err != nil {
				return err
			}
		}
	case s.Goal != nil:
		if w := s.Goal.Window; w != "" {
			d, err := time.ParseDuration(w)
			if !windowRe.MatchString(w) || err != nil || d < time.Minute || d > maxAttributionWindow {
				return v.fail(s.ID, "goal.window", "%q: give whole hours and/or minutes between 1m and 2160h (90 days), like 72h or 90m", w)
			}
		}
		return v.responses(s.ID, "goal.events", s.Goal.Events, event.UseGoal)
	}
	return nil
}

func (v *validator) channel(step, field, ch string) error {
	if ch == "" {
		return v.fail(step, field, "is required")
	}
	if v.cat.Channels != nil && !slices.Contains(v.cat.Channels, ch) {
		return v.fail(step, field, "unknown channel %q (known: %s)", ch, strings.Join(v.cat.Channels, ", "))
	}
	return nil
}

// windowRe is the attribution windows PostgreSQL reads as an interval the way Go reads them.
var windowRe = regexp.MustCompile(`^([0-9]+h)?([0-9]+m)?$`)

// maxAttributionWindow matches audit.MaxAttributionWindow.
const maxAttributionWindow = 90 * 24 * time.Hour

func (v *validator) responses(step, field string, types []string, use string) error {
	if len(types) == 0 {
		return v.fail(step, field, "name at least one %s event", use)
	}
	if v.cat.anyEvent {
		return nil
	}
	for _, t := range types {
		if !v.events.Can(t, use) {
			return v.fail(step, field, "%q is not a %s event: the event catalogue declares %s (%s: %s)", t, use, v.declared(t), use+"s",
				strings.Join(v.events.Names(use), ", "))
		}
	}
	return nil
}

// declared says what the catalogue holds of t, for an error.
func (v *validator) declared(t string) string {
	et, ok := v.events.Lookup(t)
	if !ok && v.events == nil {
		// Offline (omega journeys validate): the stored catalogue is not read.
		return "no such type (this is the default catalogue: pass your team's types with --types DIR)"
	}
	if !ok {
		return "no such type"
	}
	return "it a " + strings.Join(et.Uses, ", ")
}

// respTypeRe finds the event types a branch condition compares a response's type with
// (r.type == "x", "x" == r.type, responses[0].type == "x"; not profile.attrs.type).
var respTypeRe = regexp.MustCompile(`(?:(?:^|[^.\w])[A-Za-z_]\w*|\])\.type\s*==\s*["']([^"']*)["']|["']([^"']*)["']\s*==\s*(?:[A-Za-z_]\w*|[A-Za-z_]\w*\[[^\]]*\])\.type\b`)

// conditionTypes refuses a branch condition that compares a response's type with a type no
// response or goal can have: the case could never hold.
func (v *validator) conditionTypes(step, field, expr string) error {
	if v.cat.anyEvent {
		return nil
	}
	for _, m := range respTypeRe.FindAllStringSubmatch(expr, -1) {
		t := m[1] + m[2]
		if !v.events.Routed(t) {
			return v.fail(step, field, "compares a response's type with %q, which the event catalogue does not declare a response or goal", t)
		}
	}
	return nil
}

func (v *validator) target(step, field, t string) error {
	if t == "" || t == End {
		return nil
	}
	s, ok := v.j.Step(t)
	if !ok {
		return v.fail(step, field, "no step %q", t)
	}
	if s.Goal != nil {
		return v.fail(step, field, "%q is a goal: goals end the journey when their event comes, no step leads to them", t)
	}
	return nil
}

func (v *validator) templateIDs() []string {
	var ids []string
	for id := range v.j.Templates {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (v *validator) reachable() error {
	j := v.j
	reached := map[string]bool{}
	queue := []string{j.First()}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if id == End || reached[id] {
			continue
		}
		reached[id] = true
		s, _ := j.Step(id)
		queue = append(queue, j.Targets(s)...)
	}
	for _, s := range j.Steps {
		if s.Goal == nil && !reached[s.ID] {
			return v.fail(s.ID, "id", "unreachable: no path from the first step %q leads here", j.First())
		}
	}
	return nil
}

// cycles refuses a loop without a wait or wait_for on it: a run would spin without end.
func (v *validator) cycles() error {
	j := v.j
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var visit func(id string, path []string) error
	visit = func(id string, path []string) error {
		if id == End {
			return nil
		}
		switch color[id] {
		case grey:
			i := slices.Index(path, id)
			return v.fail(id, "(flow)", "cycle without a wait: %s", strings.Join(append(path[i:], id), " -> "))
		case black:
			return nil
		}
		s, _ := j.Step(id)
		if s.Wait != nil || s.WaitFor != nil {
			return nil // a wait breaks every cycle through it
		}
		color[id] = grey
		for _, t := range j.Targets(s) {
			if err := visit(t, append(path, id)); err != nil {
				return err
			}
		}
		color[id] = black
		return nil
	}
	for _, s := range j.Steps {
		if s.Goal == nil && s.Wait == nil && s.WaitFor == nil {
			if err := visit(s.ID, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
