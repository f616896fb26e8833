package cep

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
)

// varsOf are e's variables as a condition reads them, no profile loaded.
func varsOf(e *event.Event, withTS bool) *condVars { return &condVars{ev: e, withTS: withTS} }

// celHolds is the step's condition as CEL alone decides it on e (an error is no match).
func celHolds(t *testing.T, s compiledStep, e *event.Event) bool {
	t.Helper()
	out, _, err := s.prog.Eval(varsOf(e, true).get())
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// TestNativeConditionAgreesWithCEL: every condition of the native shape decides every event as
// its CEL program does, or leaves it to CEL; conditions of any other shape have no native form.
func TestNativeConditionAgreesWithCEL(t *testing.T) {
	native := []string{
		`event.attrs.price > 990.0`,
		`event.attrs.price > 990`,
		`event.attrs.price >= 990u`,
		`990.0 < event.attrs.price`,
		`event.attrs.price <= 10.5 && event.attrs.channel == "app"`,
		`event.attrs.price == 12`,
		`event.attrs.price != 12.0`,
		`event.attrs.channel != "app"`,
		`event.attrs.channel < "b"`,
		`event.attrs.vip == true`,
		`false != event.attrs.vip`,
		`event.user_id == "u1"`,
		`event.item_id != ""`,
		`event.type == "cart_add" && event.attrs.price > 1.0 && event.attrs.missing == "x"`,
		`event.attrs.price > 9007199254740992`,
	}
	celOnly := []string{
		`event.attrs.vip`,
		`event.attrs.price > 1.0 || event.attrs.vip == true`,
		`!(event.attrs.price > 1.0)`,
		`event.attrs["price"] > 1.0`,
		`event.ts > "2026"`,
		`profile.locale == "en"`,
		`event.attrs.price > 9007199254740993`,
		`event.attrs.vip < true`,
		`event.attrs.price > event.attrs.floor`,
		`has(event.attrs.price) && event.attrs.price > 1.0`,
		`event.attrs.tags == ["a"]`,
		`event.attrs.price + 1.0 > 2.0`,
	}
	values := []any{nil, 12.0, 12, 990.0, 990.5, 10.5, -1.0, math.Inf(1), math.NaN(), 9007199254740993.0, "app", "a", "b", "", true, false,
		[]any{"a"}, map[string]any{"x": 1.0}}
	var events []*event.Event
	for _, v := range values {
		for _, w := range []any{"app", 1.0, nil} {
			e := &event.Event{EventID: "e1", UserID: "u1", Type: "cart_add", ItemID: "i1", Attrs: map[string]any{}}
			for _, k := range []string{"price", "channel", "vip", "missing", "floor", "tags"} {
				e.Attrs[k] = v
			}
			e.Attrs["channel"] = w
			events = append(events, e)
		}
		events = append(events, &event.Event{EventID: "e2", UserID: "u2", Type: "cart_add", Attrs: map[string]any{"price": v}})
	}
	events = append(events, &event.Event{EventID: "e3", UserID: "u3", Type: "cart_add"}) // no attrs
	decided := 0
	for _, where := range append(native, celOnly...) {
		c, err := compile(singleRule(where))
		require.NoError(t, err, where)
		s := c.steps[0]
		if !slices.Contains(native, where) {
			require.Nil(t, s.native, "%q has no native form", where)
			continue
		}
		require.NotNil(t, s.native, "%q has a native form", where)
		for _, e := range events {
			want := celHolds(t, s, e)
			switch s.native.decide(e) {
			case holds:
				require.True(t, want, "%q on %v: native holds, CEL does not", where, e.Attrs)
				decided++
			case fails:
				require.False(t, want, "%q on %v: native fails, CEL holds", where, e.Attrs)
				decided++
			}
			require.Equal(t, want, s.test(e, varsOf(e, true)), "%q on %v", where, e.Attrs)
		}
	}
	require.Greater(t, decided, 500, "most events are decided natively")
}
