package cep

import (
	"fmt"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/omegareach/omega/event"
)

// Rule is a single-event pattern: an event of EventType for which Condition (CEL over `event`)
// holds starts JourneyID for the event's user.
type Rule struct {
	ID        string `json:"id"`
	EventType string `json:"event_type"`
	// Condition is a CEL expression over `event` (fields event_id, user_id, type, item_id, ts,
	// attrs); empty means always.
	Condition string `json:"condition,omitempty"`
	JourneyID string `json:"journey_id"`
}

// RuleError names the offending field of a rule.
type RuleError struct {
	RuleID string
	Field  string
	Reason string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("rule %q: %s: %s", e.RuleID, e.Field, e.Reason)
}

type compiledRule struct {
	Rule
	prog cel.Program // nil: no condition
}

var celEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(err)
	}
	return env
}()

// compile validates r and compiles its condition.
func compile(r Rule) (compiledRule, error) {
	switch {
	case r.ID == "":
		return compiledRule{}, &RuleError{r.ID, "id", "required"}
	case r.EventType == "":
		return compiledRule{}, &RuleError{r.ID, "event_type", "required"}
	case r.JourneyID == "":
		return compiledRule{}, &RuleError{r.ID, "journey_id", "required"}
	}
	c := compiledRule{Rule: r}
	if r.Condition == "" {
		return c, nil
	}
	ast, iss := celEnv.Compile(r.Condition)
	if iss.Err() != nil {
		return compiledRule{}, &RuleError{r.ID, "condition", iss.Err().Error()}
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return compiledRule{}, &RuleError{r.ID, "condition", "must be boolean, is " + ast.OutputType().String()}
	}
	prog, err := celEnv.Program(ast)
	if err != nil {
		return compiledRule{}, &RuleError{r.ID, "condition", err.Error()}
	}
	c.prog = prog
	return c, nil
}

// matches reports whether e satisfies the rule. A condition that fails at run time (a missing attr,
// a type mismatch) is no match, not an error: one odd event must not stall the partition.
func (c *compiledRule) matches(e *event.Event, vars map[string]any) bool {
	if e.Type != c.EventType || e.UserID == "" {
		return false
	}
	if c.prog == nil {
		return true
	}
	out, _, err := c.prog.Eval(vars)
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

func celVars(e *event.Event) map[string]any {
	attrs := e.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	return map[string]any{"event": map[string]any{
		"event_id": e.EventID, "user_id": e.UserID, "type": e.Type, "item_id": e.ItemID,
		"ts": e.TS.UTC().Format(time.RFC3339Nano), "attrs": attrs,
	}}
}

// DemoRules is the built-in rule of the local stack: a user adds an item to the cart.
func DemoRules() []Rule {
	return []Rule{{
		ID:        "cart-add",
		EventType: "cart_add",
		Condition: `event.item_id != ""`,
		JourneyID: "cart-reminder",
	}}
}
