// Package compiled gives the benchmark's comparison designs (bench/cep/baseline and
// bench/cep/obvious) the rule language of the CEP stage: a cep.Rule's defaults, its correlation
// key and its steps' CEL conditions, evaluated as the stage evaluates them. It is a copy of the
// unexported half of cep/rule.go (the stage does not export its compiled rules), trimmed to what
// a batch handler needs; rules are validated with cep.Validate before they get here.
package compiled

import (
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
)

// Step is one compiled step: its type and its condition (nil: none).
type Step struct {
	cep.Step
	prog cel.Program
}

// Rule is a compiled rule.
type Rule struct {
	cep.Rule
	KeyFields []string
	Steps     []Step
	Absent    *Step
	Unless    *Step
	// Types is every event type the rule reacts to.
	Types map[string]bool
}

// Compile compiles validated rules, with the stage's defaults.
func Compile(rs []cep.Rule) ([]Rule, error) {
	out := make([]Rule, 0, len(rs))
	for _, r := range rs {
		if err := cep.Validate(r, cep.Catalog{}); err != nil {
			return nil, err
		}
		c, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("compile rule %s: %w", r.ID, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func compile(r cep.Rule) (Rule, error) {
	if r.Kind == "" {
		r.Kind = cep.KindSingle
	}
	if r.Key == "" {
		r.Key = "user"
	}
	if r.Reentry == "" {
		r.Reentry = cep.ReentryEvery
	}
	if r.Kind == cep.KindJoin {
		if r.LinkTTL == 0 {
			r.LinkTTL = cep.Duration(30 * 24 * time.Hour)
		}
		if r.MaxFanout == 0 {
			r.MaxFanout = 100000
		}
	}
	c := Rule{Rule: r, Types: map[string]bool{}}
	for _, f := range strings.Split(r.Key, "+") {
		c.KeyFields = append(c.KeyFields, strings.TrimSpace(f))
	}
	step := func(s cep.Step) (Step, error) {
		c.Types[s.Type] = true
		cs := Step{Step: s}
		if s.Where == "" {
			return cs, nil
		}
		ast, iss := celEnv.Compile(s.Where)
		if iss.Err() != nil {
			return Step{}, iss.Err()
		}
		prog, err := celEnv.Program(ast)
		if err != nil {
			return Step{}, err
		}
		cs.prog = prog
		return cs, nil
	}
	for _, s := range r.Steps {
		cs, err := step(s)
		if err != nil {
			return Rule{}, err
		}
		c.Steps = append(c.Steps, cs)
	}
	if r.Kind == cep.KindJoin && r.Steps[0].Type == "favorite" {
		c.Types["unfavorite"] = true // an unfavourite removes the link
	}
	for _, opt := range []struct {
		step *cep.Step
		dst  **Step
	}{{r.Absent, &c.Absent}, {r.Unless, &c.Unless}} {
		if opt.step == nil {
			continue
		}
		cs, err := step(*opt.step)
		if err != nil {
			return Rule{}, err
		}
		*opt.dst = &cs
	}
	return c, nil
}

var celEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("profile", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(err)
	}
	return env
}()

// Test reports whether e satisfies the step; a condition that fails at run time is no match.
func (s *Step) Test(e *event.Event, vars map[string]any) bool {
	if e.Type != s.Type {
		return false
	}
	if s.prog == nil {
		return true
	}
	out, _, err := s.prog.Eval(vars)
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// Key returns the correlation key of e, or false when e lacks one of its fields.
func (c *Rule) Key(e *event.Event) (string, bool) {
	parts := make([]string, 0, len(c.KeyFields))
	for _, f := range c.KeyFields {
		var v string
		switch f {
		case "user":
			v = e.UserID
		case "item":
			v = e.ItemID
		default:
			a, ok := e.Attrs[strings.TrimPrefix(f, "attrs.")]
			if !ok {
				return "", false
			}
			v = fmt.Sprint(a)
		}
		if v == "" {
			return "", false
		}
		parts = append(parts, v)
	}
	return strings.Join(parts, "|"), true
}

// noProfile is what a condition reads when no profile was loaded (the benchmark loads none).
var noProfile = map[string]any{"time_zone": "", "locale": "", "attrs": map[string]any{}}

// Vars are the CEL variables of e, as the stage builds them.
func Vars(e *event.Event) map[string]any {
	attrs := e.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	return map[string]any{"event": map[string]any{
		"event_id": e.EventID, "user_id": e.UserID, "type": e.Type, "item_id": e.ItemID,
		"ts": e.TS.UTC().Format(time.RFC3339Nano), "attrs": attrs,
	}, "profile": noProfile}
}

// Ms is t in Unix milliseconds; Msd is d in milliseconds.
func Ms(t time.Time) int64      { return t.UnixMilli() }
func Msd(d time.Duration) int64 { return d.Milliseconds() }
