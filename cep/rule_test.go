package cep

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
)

// singleRule is a valid single-event rule on cart_add with condition where.
func singleRule(where string) Rule {
	return Rule{ID: "r1", Steps: []Step{{Type: "cart_add", Where: where}}, JourneyID: "cart-reminder"}
}

func TestCompileRejects(t *testing.T) {
	with := func(f func(r *Rule)) Rule {
		r := singleRule("")
		f(&r)
		return r
	}
	window := Duration(10 * time.Minute)
	tests := []struct {
		name      string
		rule      Rule
		wantField string // empty: the rule compiles
	}{
		{name: "valid without condition", rule: singleRule("")},
		{name: "valid with condition", rule: singleRule(`event.item_id != ""`)},
		{name: "dyn condition", rule: singleRule(`event.attrs.vip`)},
		{name: "valid sequence", rule: with(func(r *Rule) {
			r.Kind, r.Within = KindSequence, window
			r.Steps = []Step{{Type: "view"}, {Type: "cart_add"}}
		})},
		{name: "missing id", rule: with(func(r *Rule) { r.ID = "" }), wantField: "id"},
		{name: "id with slash", rule: with(func(r *Rule) { r.ID = "a/b" }), wantField: "id"},
		{name: "missing journey", rule: with(func(r *Rule) { r.JourneyID = "" }), wantField: "journey_id"},
		{name: "no steps", rule: with(func(r *Rule) { r.Steps = nil }), wantField: "steps"},
		{name: "missing event type", rule: with(func(r *Rule) { r.Steps[0].Type = "" }), wantField: "steps[0].type"},
		{name: "unknown event type", rule: with(func(r *Rule) { r.Steps[0].Type = "teleport" }), wantField: "steps[0].type"},
		{name: "condition syntax error", rule: singleRule(`event.item_id ==`), wantField: "steps[0].where"},
		{name: "condition unknown variable", rule: singleRule(`user.id == "u1"`), wantField: "steps[0].where"},
		{name: "condition not boolean", rule: singleRule(`1 + 2`), wantField: "steps[0].where"},
		{name: "condition a string", rule: singleRule(`"yes"`), wantField: "steps[0].where"},
		{name: "condition a string field", rule: singleRule(`event.user_id`), wantField: "steps[0].where"},
		{name: "condition the attributes", rule: singleRule(`event.attrs`), wantField: "steps[0].where"},
		{name: "condition an unknown field", rule: singleRule(`event.price > 10.0`), wantField: "steps[0].where"},
		{name: "condition an unknown profile field", rule: singleRule(`has(profile.tier)`), wantField: "steps[0].where"},
		{name: "unless condition a string field", rule: with(func(r *Rule) {
			r.Kind, r.Within, r.Count = KindCount, window, 2
			r.Unless = &Step{Type: "chat_started", Where: "event.item_id"}
		}), wantField: "unless.where"},
		{name: "unknown kind", rule: with(func(r *Rule) { r.Kind = "sometimes" }), wantField: "kind"},
		{name: "sequence without window", rule: with(func(r *Rule) {
			r.Kind = KindSequence
			r.Steps = []Step{{Type: "view"}, {Type: "cart_add"}}
		}), wantField: "within"},
		{name: "window too long", rule: with(func(r *Rule) {
			r.Kind, r.Count, r.Within = KindCount, 3, Duration(40*24*time.Hour)
		}), wantField: "within"},
		{name: "count rule without count", rule: with(func(r *Rule) { r.Kind, r.Within = KindCount, window }), wantField: "count"},
		{name: "count on a single rule", rule: with(func(r *Rule) { r.Count = 3 }), wantField: "count"},
		{name: "absence without absent", rule: with(func(r *Rule) { r.Kind, r.Within = KindAbsence, window }), wantField: "absent"},
		{name: "absent step of wrong type", rule: with(func(r *Rule) {
			r.Kind, r.Within, r.Absent = KindAbsence, window, &Step{Type: "nope"}
		}), wantField: "absent.type"},
		{name: "unless on a single rule", rule: with(func(r *Rule) { r.Unless = &Step{Type: "chat_started"} }), wantField: "unless"},
		{name: "unknown reentry", rule: with(func(r *Rule) { r.Reentry = "sometimes" }), wantField: "reentry"},
		{name: "cooldown without duration", rule: with(func(r *Rule) { r.Reentry = ReentryCooldown }), wantField: "cooldown"},
		{name: "bad key", rule: with(func(r *Rule) { r.Key = "user+color" }), wantField: "key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileWith(tt.rule, Catalog{}) // the default event catalogue
			if tt.wantField == "" {
				require.NoError(t, err)
				require.Equal(t, tt.rule.ID, c.ID)
				require.Len(t, c.steps, len(tt.rule.Steps))
				require.Equal(t, tt.rule.Steps[0].Where != "", c.steps[0].prog != nil)
				return
			}
			var re *RuleError
			require.True(t, errors.As(err, &re), "want a *RuleError, got %v", err)
			require.Equal(t, tt.wantField, re.Field)
			require.Equal(t, tt.rule.ID, re.RuleID)
			require.Contains(t, err.Error(), tt.wantField)
		})
	}
}

// A condition that is one attribute the event type declares of another kind than bool is never
// true: refused, naming why; a bool or undeclared one, or a comparison, is a condition.
func TestConditionOnDeclaredAttribute(t *testing.T) {
	events, err := event.NewCatalog(event.Type{Name: "quote_requested", Uses: []string{event.UseTrigger},
		Attrs: []event.Attr{{Name: "amount", Type: "number"}, {Name: "vip", Type: "bool"}, {Name: "note"}}})
	require.NoError(t, err)
	cat := Catalog{Events: func() *event.Catalog { return events }}
	rule := func(where string) Rule {
		return Rule{ID: "q", Steps: []Step{{Type: "quote_requested", Where: where}}, JourneyID: "j"}
	}
	for _, ok := range []string{`event.attrs.vip`, `event.attrs.note`, `event.attrs.amount > 100.0`, `event.attrs.other`,
		`profile.attrs.gold`, `has(event.attrs.amount) && event.attrs.amount > 1.0`} {
		require.NoError(t, Validate(rule(ok), cat), ok)
	}
	err = Validate(rule(`event.attrs.amount`), cat)
	require.ErrorContains(t, err, "steps[0].where: event.attrs.amount is a number, never true: compare it")
	// A comparison with a literal of another kind never holds: refused (found from outside:
	// amount > "x" was applied and matched nothing).
	for where, want := range map[string]string{
		`event.attrs.amount > "x"`: `event.attrs.amount is a number, compared (>) with a string ("x")`,
		`event.attrs.vip == "yes"`: `event.attrs.vip is a bool, compared (==) with a string`,
		`event.user_id == 5`:       `event.user_id is a string, compared (==) with a number`,
		`1 < 2 && 100.0 <= event.attrs.amount && event.attrs.amount != true`: `event.attrs.amount is a number, compared (!=) with a bool`,
	} {
		require.ErrorContains(t, Validate(rule(where), cat), want, where)
	}
	for _, ok := range []string{`event.attrs.amount > 100`, `event.attrs.amount == 2.5`, `event.attrs.note == 3`, `event.attrs.other == "x"`,
		`event.user_id == "u"`, `event.attrs.vip == true`} {
		require.NoError(t, Validate(rule(ok), cat), ok)
	}
	err = Validate(rule(`event.usr_id == "u"`), cat)
	require.ErrorContains(t, err, "event has no field usr_id (it has attrs, event_id, item_id, ts, type, user_id): an attribute is event.attrs.usr_id")
}

// Offline, against the default catalogue, an unknown type's error says how to bring the team's.
func TestUnknownTypeOffline(t *testing.T) {
	err := Validate(Rule{ID: "q", Steps: []Step{{Type: "quote_requested"}}, JourneyID: "j"}, Catalog{})
	require.ErrorContains(t, err, `unknown event type "quote_requested": not in the default event catalogue (pass your team's types with --types DIR)`)
}

// A growth team's own event types: rules validate against the catalogue they are given, naming
// the field; the stage compiles what was stored even when the catalogue no longer declares it.
func TestValidateAgainstCatalog(t *testing.T) {
	events, err := event.NewCatalog(
		event.Type{Name: "cart_add", Uses: []string{event.UseTrigger}},
		event.Type{Name: "coupon_claimed", Uses: []string{event.UseTrigger}},
		event.Type{Name: "coupon_redeemed", Uses: []string{event.UseResponse, event.UseGoal}},
		event.Type{Name: "favorite", Uses: []string{event.UseTrigger}},
		event.Type{Name: "restocked", Scope: event.ScopeItem, Uses: []string{event.UseTrigger}},
	)
	require.NoError(t, err)
	cat := Catalog{Events: func() *event.Catalog { return events }, Journey: func(id string) bool { return id == "cart-reminder" }}
	const window = Duration(time.Hour)
	tests := []struct {
		name      string
		rule      Rule
		wantField string
		wantErr   string
	}{
		{name: "known", rule: singleRule("")},
		{name: "a type of the team's own", rule: Rule{ID: "r1", Steps: []Step{{Type: "coupon_claimed"}}, JourneyID: "cart-reminder"}},
		{name: "unknown journey", rule: Rule{ID: "r1", Steps: []Step{{Type: "cart_add"}}, JourneyID: "nope"}, wantField: "journey_id"},
		{name: "type outside the catalog", rule: Rule{ID: "r1", Steps: []Step{{Type: "view"}}, JourneyID: "cart-reminder"},
			wantField: "steps[0].type", wantErr: "not in the event catalogue"},
		{name: "a response is no trigger", rule: Rule{ID: "r1", Steps: []Step{{Type: "coupon_redeemed"}}, JourneyID: "cart-reminder"},
			wantField: "steps[0].type", wantErr: "not declared a trigger"},
		{name: "a response may be absent", rule: Rule{ID: "r1", Kind: KindAbsence, Within: window, Steps: []Step{{Type: "coupon_claimed"}},
			Absent: &Step{Type: "coupon_redeemed"}, JourneyID: "cart-reminder"}},
		{name: "absent of an undeclared type", rule: Rule{ID: "r1", Kind: KindAbsence, Within: window, Steps: []Step{{Type: "coupon_claimed"}},
			Absent: &Step{Type: "view"}, JourneyID: "cart-reminder"}, wantField: "absent.type"},
		{name: "join on an item's event", rule: Rule{ID: "r1", Kind: KindJoin, Steps: []Step{{Type: "favorite"}, {Type: "restocked"}}, JourneyID: "cart-reminder"}},
		{name: "join on a user's event", rule: Rule{ID: "r1", Kind: KindJoin, Steps: []Step{{Type: "favorite"}, {Type: "coupon_claimed"}}, JourneyID: "cart-reminder"},
			wantField: "steps[1].type", wantErr: "user-scoped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.rule, cat)
			if tt.wantField == "" {
				require.NoError(t, err)
				_, err = compile(tt.rule)
				require.NoError(t, err)
				return
			}
			var re *RuleError
			require.True(t, errors.As(err, &re), "want a *RuleError, got %v", err)
			require.Equal(t, tt.wantField, re.Field)
			require.Contains(t, err.Error(), tt.wantErr)
		})
	}
	// The stage runs a stored rule whatever the catalogue says now.
	_, err = compile(Rule{ID: "r1", Steps: []Step{{Type: "dropped_since"}}, JourneyID: "j"})
	require.NoError(t, err)
}

// A journey's templates render over the attrs of the event that completes the match: when its
// type has a schema, a field the templates need that it does not declare is refused, naming the
// journey, the template and the field.
func TestValidateTemplatesAgainstCatalog(t *testing.T) {
	events, err := event.NewCatalog(
		event.Type{Name: "coupon_claimed", Uses: []string{event.UseTrigger}, Attrs: []event.Attr{{Name: "coupon_id", Type: event.AttrString}}},
		event.Type{Name: "view", Uses: []string{event.UseTrigger}},
	)
	require.NoError(t, err)
	needs := map[string]map[string][]string{"uses-id": {"t": {"coupon_id"}}, "uses-code": {"t": {"coupon_code"}}}
	cat := Catalog{Events: func() *event.Catalog { return events }, JourneyFields: func(id string) map[string][]string { return needs[id] }}
	rule := func(typ, journey string) Rule { return Rule{ID: "r1", Steps: []Step{{Type: typ}}, JourneyID: journey} }
	require.NoError(t, Validate(rule("coupon_claimed", "uses-id"), cat))
	require.NoError(t, Validate(rule("view", "uses-code"), cat), "a type without a schema may carry anything")
	err = Validate(rule("coupon_claimed", "uses-code"), cat)
	var re *RuleError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "journey_id", re.Field)
	require.Contains(t, err.Error(), `template t reads .coupon_code, which coupon_claimed does not declare (its attrs: coupon_id)`)
	seq := Rule{ID: "r1", Kind: KindSequence, Within: Duration(time.Hour), Steps: []Step{{Type: "coupon_claimed"}, {Type: "view"}}, JourneyID: "uses-code"}
	require.NoError(t, Validate(seq, cat), "a sequence's match carries its last event's attrs")
}

// A rule keyed on an attribute correlates only the events that carry it: an attribute a type
// with a schema does not declare (a step's, absent's or unless') is refused at key, naming it; a
// declared one, optional too, or any on a type without a schema, is a key.
func TestKeyAttributesAgainstCatalog(t *testing.T) {
	events, err := event.NewCatalog(
		event.Type{Name: "quote_requested", Uses: []string{event.UseTrigger},
			Attrs: []event.Attr{{Name: "quote_id", Type: event.AttrString, Required: true}, {Name: "amount", Type: "number"}}},
		event.Type{Name: "quote_signed", Uses: []string{event.UseTrigger, event.UseResponse},
			Attrs: []event.Attr{{Name: "quote_ref", Type: event.AttrString, Required: true}}},
		event.Type{Name: "view", Uses: []string{event.UseTrigger}},
	)
	require.NoError(t, err)
	cat := Catalog{Events: func() *event.Catalog { return events }}
	keyed := func(key string, steps ...string) Rule {
		r := Rule{ID: "q", Key: key, Steps: []Step{{Type: steps[0]}}, JourneyID: "j"}
		if len(steps) > 1 {
			r.Kind, r.Within, r.Absent = KindAbsence, Duration(time.Hour), &Step{Type: steps[1]}
		}
		return r
	}
	for _, r := range []Rule{keyed("user+attrs.quote_id", "quote_requested"), keyed("user+attrs.amount", "quote_requested"),
		keyed("user+attrs.anything", "view")} {
		require.NoError(t, Validate(r, cat), r.Key)
	}
	for _, tt := range []struct {
		rule Rule
		want string
	}{
		{keyed("user+attrs.nonexistent", "quote_requested"), `attrs.nonexistent: quote_requested declares no attribute "nonexistent" (its attrs: quote_id, amount), so its events have no key`},
		{keyed("user+attrs.quote_id", "quote_requested", "quote_signed"), `attrs.quote_id: quote_signed declares no attribute "quote_id" (its attrs: quote_ref)`},
	} {
		err := Validate(tt.rule, cat)
		var re *RuleError
		require.ErrorAs(t, err, &re, tt.rule.Key)
		require.Equal(t, "key", re.Field)
		require.Contains(t, re.Reason, tt.want)
	}
	_, err = compile(keyed("user+attrs.nonexistent", "quote_requested"))
	require.NoError(t, err, "the stage runs a stored rule whatever the catalogue says now")
}

func TestParseRule(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		want      Rule
		wantField string
	}{
		{
			name: "yaml with days",
			doc: `
id: viewed
kind: count
key: user+item
steps: [{type: view}]
count: 3
within: 7d
journey_id: chat-nudge
`,
			want: Rule{ID: "viewed", Kind: KindCount, Key: "user+item", Steps: []Step{{Type: "view"}}, Count: 3,
				Within: Duration(7 * 24 * time.Hour), JourneyID: "chat-nudge"},
		},
		{
			name: "json",
			doc:  `{"id":"cart","steps":[{"type":"cart_add","where":"event.item_id != \"\""}],"journey_id":"cart-reminder"}`,
			want: Rule{ID: "cart", Steps: []Step{{Type: "cart_add", Where: `event.item_id != ""`}}, JourneyID: "cart-reminder"},
		},
		{name: "unknown field refused", doc: "id: r1\nsteps: [{type: view}]\njourney: x\n", wantField: "journey"},
		{name: "bad duration", doc: "id: r1\nsteps: [{type: view}]\nwithin: soon\njourney_id: x\n", wantField: "within"},
		{name: "negative days", doc: "id: r1\nsteps: [{type: view}]\nwithin: -1d\njourney_id: x\n", wantField: "within"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRule([]byte(tt.doc))
			if tt.wantField != "" {
				var re *RuleError
				require.True(t, errors.As(err, &re), "want a *RuleError, got %v", err)
				require.Equal(t, tt.wantField, re.Field)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRuleMatches(t *testing.T) {
	ts := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	mk := func(f func(e *event.Event)) *event.Event {
		e := &event.Event{EventID: "e1", UserID: "u1", Type: "cart_add", ItemID: "i1", TS: ts}
		if f != nil {
			f(e)
		}
		return e
	}
	price := `event.attrs.price > 10.0`
	tests := []struct {
		name  string
		where string
		event *event.Event
		want  bool
	}{
		{name: "item present", where: `event.item_id != ""`, event: mk(nil), want: true},
		{name: "item missing", where: `event.item_id != ""`, event: mk(func(e *event.Event) { e.ItemID = "" })},
		{name: "no condition", event: mk(nil), want: true},
		{name: "other event type", event: mk(func(e *event.Event) { e.Type = "view" })},
		{name: "empty user never matches", event: mk(func(e *event.Event) { e.UserID = "" })},
		{name: "empty user with condition", where: `event.item_id != ""`, event: mk(func(e *event.Event) { e.UserID = "" })},
		{name: "attr above", where: price, event: mk(func(e *event.Event) { e.Attrs = map[string]any{"price": 12.5} }), want: true},
		{name: "attr below", where: price, event: mk(func(e *event.Event) { e.Attrs = map[string]any{"price": 3} })},
		{name: "attr below as decoded json", where: price, event: mk(func(e *event.Event) { e.Attrs = map[string]any{"price": 3.0} })},
		{name: "attr missing", where: price, event: mk(nil)},
		{name: "attr of wrong type", where: price, event: mk(func(e *event.Event) { e.Attrs = map[string]any{"price": "cheap"} })},
		{name: "guarded by has", where: `has(event.attrs.price) && event.attrs.price > 10.0`, event: mk(nil)},
		{name: "user field", where: `event.user_id == "u1"`, event: mk(nil), want: true},
		{name: "timestamp field", where: `event.ts.startsWith("2026-11-24")`, event: mk(nil), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compile(singleRule(tt.where))
			require.NoError(t, err)
			require.Equal(t, tt.want, c.matches(tt.event, varsOf(tt.event, c.readsTS)))
		})
	}
}

func TestDemoRulesCompile(t *testing.T) {
	for _, r := range DemoRules() {
		_, err := compile(r)
		require.NoError(t, err, "rule %s", r.ID)
	}
}

// FuzzRuleCondition: whatever the condition, compiling and evaluating it never panics, and a
// condition that does not compile is a *RuleError naming the condition.
func FuzzRuleCondition(f *testing.F) {
	for _, s := range []string{
		`event.item_id != ""`,
		`event.attrs.price > 10.0`,
		`has(event.attrs.vip) && event.attrs.vip`,
		`1 + 2`,
		`event.attrs.tags.exists(t, t == "sale")`,
		`size(event.user_id) > 3 || event.type in ["cart_add", "view"]`,
		`event.attrs.n / 0 == 1`,
		`)(`,
		``,
	} {
		f.Add(s)
	}
	e := &event.Event{EventID: "e1", UserID: "u1", Type: "cart_add", ItemID: "i1",
		TS:    time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
		Attrs: map[string]any{"price": 12.5, "n": 3.0, "vip": true, "tags": []any{"sale", "new"}, "name": "x"}}
	vars := varsOf(e, true)
	f.Fuzz(func(t *testing.T, where string) {
		c, err := compile(singleRule(where))
		if err != nil {
			var re *RuleError
			require.True(t, errors.As(err, &re), "compile error is not a *RuleError: %v", err)
			require.Equal(t, "steps[0].where", re.Field)
			return
		}
		c.matches(e, vars)
		// Where the condition decides natively, it decides as CEL does.
		if s := c.steps[0]; s.native != nil {
			if v := s.native.decide(e); v != undecided {
				require.Equal(t, v == holds, celHolds(t, s, e), "native and CEL disagree on %q", where)
			}
		}
	})
}
