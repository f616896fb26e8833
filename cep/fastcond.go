package cep

import (
	"cmp"
	"math"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/spec"
)

// Most conditions growth teams write compare an event field with a literal
// (event.attrs.price > 990.0, event.attrs.channel == "app"), alone or joined by &&. Evaluating
// them through CEL meant building the condition's variables (two maps) for every event of the
// type and running the program: about a twentieth of the stage's CPU on the benchmark's mix. A
// condition of that shape is also compiled to a nativeCond, which decides an event only where its
// result is certain to be CEL's: the field holds a value of the literal's kind (a number for a
// number, a string for a string, a bool for a bool), or an attribute is missing (CEL's "no such
// key" is an error, which, like false, fails the step whatever the other terms are). Anything
// else (an attribute of another kind, which CEL may compare across types or refuse) is left to
// the CEL program, so the two can never disagree (TestNativeConditionAgreesWithCEL).

// nativeCond is a conjunction of comparisons, each of an event field with a literal.
type nativeCond []nativeCmp

type nativeCmp struct {
	field string // attrs.<attr> when attr is set; else event_id, user_id, type or item_id
	attr  string
	op    string // operators.Equals, NotEquals, Less, LessEquals, Greater, GreaterEquals
	kind  byte   // 'n' number, 's' string, 'b' bool
	num   float64
	str   string
	bool  bool
}

// verdict is a native decision: decided false, decided true, or left to CEL.
type verdict int8

const (
	undecided verdict = iota
	holds
	fails
)

// eventStrings are the event's fields a condition reads as strings (celVars), always present.
var eventStrings = map[string]bool{"event_id": true, "user_id": true, "type": true, "item_id": true}

// flipped is the comparison with its operands swapped (990.0 < event.attrs.price).
var flipped = map[string]string{
	operators.Equals: operators.Equals, operators.NotEquals: operators.NotEquals,
	operators.Less: operators.Greater, operators.LessEquals: operators.GreaterEquals,
	operators.Greater: operators.Less, operators.GreaterEquals: operators.LessEquals,
}

// compileNative is a's native form, nil when a is not a conjunction of field-literal comparisons.
func compileNative(a *cel.Ast) nativeCond {
	var out nativeCond
	var walk func(e celast.Expr) bool
	walk = func(e celast.Expr) bool {
		if e.Kind() != celast.CallKind {
			return false
		}
		c := e.AsCall()
		args := c.Args()
		if c.FunctionName() == operators.LogicalAnd && len(args) == 2 {
			return walk(args[0]) && walk(args[1])
		}
		op, ok := flipped[c.FunctionName()]
		if !ok || len(args) != 2 || c.IsMemberFunction() {
			return false
		}
		path, lit := args[0], args[1]
		if path.Kind() == celast.LiteralKind {
			path, lit = lit, path
		} else {
			op = c.FunctionName()
		}
		if lit.Kind() != celast.LiteralKind {
			return false
		}
		cmp := nativeCmp{op: op}
		switch p := spec.SelectPath(path); {
		case len(p) == 3 && p[0] == "event" && p[1] == "attrs":
			cmp.attr = p[2]
		case len(p) == 2 && p[0] == "event" && eventStrings[p[1]]:
			cmp.field = p[1]
		default:
			return false
		}
		switch v := lit.AsLiteral().(type) {
		case types.Double:
			cmp.kind, cmp.num = 'n', float64(v)
		case types.Int:
			if v > 1<<53 || v < -(1<<53) { // beyond a float64's exact integers
				return false
			}
			cmp.kind, cmp.num = 'n', float64(v)
		case types.Uint:
			if v > 1<<53 {
				return false
			}
			cmp.kind, cmp.num = 'n', float64(v)
		case types.String:
			cmp.kind, cmp.str = 's', string(v)
		case types.Bool:
			if op != operators.Equals && op != operators.NotEquals {
				return false
			}
			cmp.kind, cmp.bool = 'b', bool(v)
		default:
			return false
		}
		out = append(out, cmp)
		return true
	}
	if !walk(a.NativeRep().Expr()) {
		return nil
	}
	return out
}

// decide evaluates the conjunction on e: fails as soon as a term fails or reads a missing
// attribute, undecided when a term cannot be decided natively and none fails.
func (n nativeCond) decide(e *event.Event) verdict {
	out := holds
	for i := range n {
		switch n[i].decide(e) {
		case fails:
			return fails
		case undecided:
			out = undecided
		}
	}
	return out
}

func (c *nativeCmp) decide(e *event.Event) verdict {
	var v any
	if c.attr != "" {
		a, ok := e.Attrs[c.attr]
		if !ok {
			return fails // CEL: no such key, an error
		}
		v = a
	} else {
		switch c.field {
		case "event_id":
			v = e.EventID
		case "user_id":
			v = e.UserID
		case "type":
			v = e.Type
		default:
			v = e.ItemID
		}
	}
	var r int // the field's value against the literal: -1, 0, 1
	switch x := v.(type) {
	case float64:
		if c.kind != 'n' || math.IsNaN(x) { // NaN, which JSON cannot carry: left to CEL
			return undecided
		}
		r = cmp.Compare(x, c.num)
	case string:
		if c.kind != 's' {
			return undecided
		}
		r = strings.Compare(x, c.str)
	case bool:
		if c.kind != 'b' {
			return undecided
		}
		if x != c.bool {
			r = 1
		}
	default:
		return undecided
	}
	var ok bool
	switch c.op {
	case operators.Equals:
		ok = r == 0
	case operators.NotEquals:
		ok = r != 0
	case operators.Less:
		ok = r < 0
	case operators.LessEquals:
		ok = r <= 0
	case operators.Greater:
		ok = r > 0
	default:
		ok = r >= 0
	}
	if ok {
		return holds
	}
	return fails
}

// condVars are the variables of the conditions on one event, built only when a condition needs
// CEL: a rule whose conditions all decide natively never builds them.
type condVars struct {
	ev      *event.Event
	withTS  bool
	profile map[string]any
	loaded  bool // profile was loaded (else the conditions read noProfile)
	m       map[string]any
}

// get returns the variables, built on first use.
func (v *condVars) get() map[string]any {
	if v.m == nil {
		v.m = celVars(v.ev, v.withTS)
		if v.loaded {
			v.m["profile"] = v.profile
		}
	}
	return v.m
}
