package journey

import (
	"errors"
	"fmt"
	"testing"
	"time"
	_ "time/tzdata" // LoadLocation("Europe/Berlin") without the host's zoneinfo

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
)

var testCatalog = Catalog{Channels: []string{"webhook", "push", "sms"}}

func TestDemoValidates(t *testing.T) {
	js := Demo()
	require.NotEmpty(t, js)
	byID := map[string]Journey{}
	for _, j := range js {
		require.NoError(t, Validate(j, testCatalog), j.ID)
		require.Equal(t, 1, j.Version, j.ID)
		byID[j.ID] = j
	}

	j, ok := byID["cart-retarget"]
	require.True(t, ok, "cart-retarget is a demo journey")
	require.Equal(t, "push", j.First())

	push, ok := j.Step("push")
	require.True(t, ok)
	require.Equal(t, KindSend, push.Kind())
	require.Equal(t, "sms", push.Send.Fallback)
	require.Equal(t, []string{"wait_open"}, j.Targets(push))

	wait, ok := j.Step("wait_open")
	require.True(t, ok)
	require.Equal(t, KindWaitFor, wait.Kind())
	require.Equal(t, 24*time.Hour, wait.WaitFor.Timeout.D())
	// then ends the journey; on_timeout falls through to the SMS.
	require.Equal(t, []string{End, "sms"}, j.Targets(wait))

	sms, ok := j.Step("sms")
	require.True(t, ok)
	require.Equal(t, KindSend, sms.Kind())
	// The goal after the SMS is not part of the flow: the SMS is the last step.
	require.Equal(t, []string{End}, j.Targets(sms))

	require.Equal(t, []string{"order_paid"}, j.GoalEvents())
}

// validBase is a small valid journey: push (fallback sms) -> wait for the open -> sms; paying
// converts. Each call returns a fresh copy so cases can change it freely.
func validBase() Journey {
	return Journey{
		ID: "base",
		Templates: map[string]Template{
			"t": {Title: "Hi", Body: "{{.item_id}} is waiting"},
		},
		Steps: []Step{
			{ID: "s1", Send: &Send{Channel: "push", Template: "t", Fallback: "sms"}},
			{ID: "w", WaitFor: &WaitFor{Events: []string{"push_open"}, Timeout: Duration(time.Hour), Then: End}},
			{ID: "s2", Send: &Send{Channel: "sms", Template: "t"}},
			{ID: "g", Goal: &Goal{Events: []string{"order_paid"}}},
		},
	}
}

// stepOf returns the step id of j, failing the test when it is missing.
func stepOf(t *testing.T, j *Journey, id string) *Step {
	t.Helper()
	s, ok := j.Step(id)
	require.True(t, ok, "step %q", id)
	return s
}

func TestValidate(t *testing.T) {
	bad := []struct {
		name   string
		modify func(t *testing.T, j *Journey)
		step   string
		field  string
		reason string
	}{
		{"missing id", func(t *testing.T, j *Journey) { j.ID = "" }, "", "id", "is required"},
		{"no steps", func(t *testing.T, j *Journey) { j.Steps = nil }, "", "steps", "at least one step"},
		{"duplicate step id", func(t *testing.T, j *Journey) { j.Steps[2].ID = "s1" }, "s1", "id", "used by two steps"},
		{"control character in a step id", func(t *testing.T, j *Journey) { j.Steps[2].ID = "s\x1f3" }, "s\x1f3", "id", "control characters"},
		{"two kinds", func(t *testing.T, j *Journey) {
			stepOf(t, j, "s1").Wait = &Wait{For: Duration(time.Hour)}
		}, "s1", "(kind)", "exactly one"},
		{"next on a wait_for", func(t *testing.T, j *Journey) { stepOf(t, j, "w").Next = "s2" }, "w", "next", "only send and wait"},
		{"unknown channel", func(t *testing.T, j *Journey) {
			stepOf(t, j, "s1").Send.Channel = "email"
		}, "s1", "send.channel", `unknown channel "email"`},
		{"unknown fallback channel", func(t *testing.T, j *Journey) {
			stepOf(t, j, "s1").Send.Fallback = "pigeon"
		}, "s1", "send.fallback", `unknown channel "pigeon"`},
		{"fallback is the channel", func(t *testing.T, j *Journey) {
			stepOf(t, j, "s1").Send.Fallback = "push"
		}, "s1", "send.fallback", "own channel"},
		{"unknown template", func(t *testing.T, j *Journey) {
			stepOf(t, j, "s2").Send.Template = "nope"
		}, "s2", "send.template", `unknown template "nope"`},
		{"template does not parse", func(t *testing.T, j *Journey) {
			j.Templates["t"] = Template{Body: "{{.item_id"}
		}, "", "templates.t.body", "does not parse"},
		{"wait with neither for nor until", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Wait: &Wait{}}
		}, "w", "wait.for", "positive duration"},
		{"wait with for and until", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Wait: &Wait{For: Duration(time.Hour), Until: "08:00"}}
		}, "w", "wait", "not both"},
		{"bad until", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Wait: &Wait{Until: "25:99"}}
		}, "w", "wait.until", `"25:99" is not a time of day`},
		{"best hour without fallback", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Wait: &Wait{Until: BestHour}}
		}, "w", "wait.fallback", "needs the time of day"},
		{"best hour with a bad fallback", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Wait: &Wait{Until: BestHour, Fallback: "7pm"}}
		}, "w", "wait.fallback", `"7pm" is not a time of day`},
		{"best hour from a non-response event", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Wait: &Wait{Until: BestHour, Fallback: "19:00", Opens: []string{"view"}}}
		}, "w", "wait.opens", `"view" is not a response event`},
		{"fallback without best hour", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Wait: &Wait{Until: "08:00", Fallback: "19:00"}, Next: "s2"}
		}, "w", "wait.fallback", "belong to a wait until best_hour"},
		{"wait_for without timeout", func(t *testing.T, j *Journey) {
			stepOf(t, j, "w").WaitFor.Timeout = 0
		}, "w", "wait_for.timeout", "is required"},
		{"wait_for a non-response event", func(t *testing.T, j *Journey) {
			stepOf(t, j, "w").WaitFor.Events = []string{"push_open", "view"}
		}, "w", "wait_for.events", `"view" is not a response event`},
		{"target to an unknown step", func(t *testing.T, j *Journey) {
			stepOf(t, j, "s1").Next = "nope"
		}, "s1", "next", `no step "nope"`},
		{"target to a goal", func(t *testing.T, j *Journey) {
			stepOf(t, j, "w").WaitFor.OnTimeout = "g"
		}, "w", "wait_for.on_timeout", `"g" is a goal`},
		{"unreachable step", func(t *testing.T, j *Journey) {
			stepOf(t, j, "s2").Next = End
			j.Steps = append(j.Steps, Step{ID: "orphan", Exit: &Exit{Reason: "never"}})
		}, "orphan", "id", "unreachable"},
		{"cycle without a wait", func(t *testing.T, j *Journey) {
			// s1 -> w -> check -(else)-> again -> check: no wait between check and again.
			stepOf(t, j, "w").WaitFor.Then = "check"
			stepOf(t, j, "s2").Next = End
			j.Steps = append(j.Steps,
				Step{ID: "check", Branch: &Branch{Cases: []Case{{When: "size(responses) > 2", Next: End}}, Else: "again"}},
				Step{ID: "again", Send: &Send{Channel: "webhook", Template: "t"}, Next: "check"},
			)
		}, "check", "(flow)", "cycle without a wait: check -> again -> check"},
		{"branch condition does not compile", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Branch: &Branch{Cases: []Case{{When: "match.item_id ==", Next: End}}}}
		}, "w", "branch.cases[0].when", "Syntax error"},
		{"branch condition is not boolean", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Branch: &Branch{Cases: []Case{
				{When: `profile.locale == "fr"`, Next: End},
				{When: "1 + 2", Next: End},
			}}}
		}, "w", "branch.cases[1].when", "must be boolean"},
		{"split path with zero weight", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Split: &Split{Paths: []Path{{Name: "a", Weight: 50}, {Name: "b"}}}}
		}, "w", "split.paths[1].weight", "must be positive"},
		{"split path named holdout", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Split: &Split{Paths: []Path{{Name: Holdout, Weight: 50}}}}
		}, "w", "split.paths[0].name", `other than "holdout"`},
		{"goal on a non-response event", func(t *testing.T, j *Journey) {
			stepOf(t, j, "g").Goal.Events = []string{"view"}
		}, "g", "goal.events", `"view" is not a goal event`},
		{"attribution window in days", func(t *testing.T, j *Journey) {
			stepOf(t, j, "g").Goal.Window = "3d"
		}, "g", "goal.window", "whole hours and/or minutes"},
		{"attribution window too long", func(t *testing.T, j *Journey) {
			stepOf(t, j, "g").Goal.Window = "2161h"
		}, "g", "goal.window", "2160h"},
		{"attribution window in seconds", func(t *testing.T, j *Journey) {
			stepOf(t, j, "g").Goal.Window = "30s"
		}, "g", "goal.window", "between 1m"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			j := validBase()
			tc.modify(t, &j)
			err := Validate(j, testCatalog)
			require.Error(t, err)
			var e *Error
			require.True(t, errors.As(err, &e), "want *Error, got %T: %v", err, err)
			require.Equal(t, j.ID, e.JourneyID)
			require.Equal(t, tc.step, e.Step, "step: %v", err)
			require.Equal(t, tc.field, e.Field, "field: %v", err)
			require.Contains(t, e.Reason, tc.reason)
		})
	}

	valid := []struct {
		name   string
		modify func(t *testing.T, j *Journey)
	}{
		{"base", func(*testing.T, *Journey) {}},
		{"attribution window", func(t *testing.T, j *Journey) { stepOf(t, j, "g").Goal.Window = "72h" }},
		{"attribution window of hours and minutes", func(t *testing.T, j *Journey) { stepOf(t, j, "g").Goal.Window = "1h30m" }},
		{"loop with a wait", func(t *testing.T, j *Journey) {
			// s1 -> w -> check -(else)-> pause -> again -> check: the pause breaks the loop.
			stepOf(t, j, "w").WaitFor.Then = "check"
			stepOf(t, j, "s2").Next = End
			j.Steps = append(j.Steps,
				Step{ID: "check", Branch: &Branch{Cases: []Case{{When: "size(responses) > 2", Next: End}}, Else: "pause"}},
				Step{ID: "pause", Wait: &Wait{Until: "08:00"}},
				Step{ID: "again", Send: &Send{Channel: "webhook", Template: "t"}, Next: "check"},
			)
		}},
		{"split with holdout", func(t *testing.T, j *Journey) {
			*stepOf(t, j, "w") = Step{ID: "w", Split: &Split{
				Paths:   []Path{{Name: "sms", Weight: 45}, {Name: "none", Weight: 45, Next: End}},
				Holdout: 10,
			}}
		}},
	}
	for _, tc := range valid {
		t.Run("valid/"+tc.name, func(t *testing.T) {
			j := validBase()
			tc.modify(t, &j)
			require.NoError(t, Validate(j, testCatalog))
		})
	}
}

func TestParseStrict(t *testing.T) {
	_, err := Parse([]byte(`
id: typo
templates:
  t: {body: hi}
steps:
  - id: s
    sned: {channel: push, template: t}
`))
	require.Error(t, err)
	var e *Error
	require.True(t, errors.As(err, &e), "want *Error, got %T: %v", err, err)
	require.Equal(t, "steps[0].sned", e.Field, "the unknown field, with its path")
	require.Equal(t, "unknown field", e.Reason)

	for _, tc := range []struct {
		timeout string
		want    time.Duration
	}{
		{"24h", 24 * time.Hour},
		{"3d", 72 * time.Hour},
		{"90m", 90 * time.Minute},
	} {
		t.Run(tc.timeout, func(t *testing.T) {
			j, err := Parse(fmt.Appendf(nil, `
id: d
steps:
  - id: w
    wait_for: {events: [push_open], timeout: %s}
`, tc.timeout))
			require.NoError(t, err)
			require.Len(t, j.Steps, 1)
			require.NotNil(t, j.Steps[0].WaitFor)
			require.Equal(t, tc.want, j.Steps[0].WaitFor.Timeout.D())
		})
	}

	_, err = Parse([]byte("id: d\nsteps:\n  - id: w\n    wait_for: {events: [push_open], timeout: 3x}\n"))
	require.Error(t, err)
}

func TestResolve(t *testing.T) {
	j := Journey{ID: "r", Steps: []Step{
		{ID: "g1", Goal: &Goal{Events: []string{"order_paid"}}},
		{ID: "a", Send: &Send{Channel: "push", Template: "t"}},
		{ID: "g2", Goal: &Goal{Events: []string{"chat_started"}}},
		{ID: "b", Wait: &Wait{For: Duration(time.Hour)}},
		{ID: "c", Exit: &Exit{}},
		{ID: "g3", Goal: &Goal{Events: []string{"push_open"}}},
	}}
	require.Equal(t, "a", j.First(), "a leading goal is not where a run starts")
	require.Equal(t, "b", j.Resolve("a", ""), "empty target skips the goal after a")
	require.Equal(t, "c", j.Resolve("b", ""))
	require.Equal(t, End, j.Resolve("c", ""), "only a goal follows the last flow step")
	require.Equal(t, End, j.Resolve("a", "end"))
	require.Equal(t, "c", j.Resolve("a", "c"), "a named target is kept")
	require.Equal(t, End, j.Resolve("nope", ""), "unknown origin")

	last := Journey{ID: "l", Steps: []Step{{ID: "x", Send: &Send{}}, {ID: "y", Send: &Send{}}}}
	require.Equal(t, "x", last.First())
	require.Equal(t, "y", last.Resolve("x", ""))
	require.Equal(t, End, last.Resolve("y", ""))

	onlyGoals := Journey{ID: "o", Steps: []Step{{ID: "g", Goal: &Goal{}}}}
	require.Equal(t, End, onlyGoals.First())
}

func TestPickStableAndProportions(t *testing.T) {
	j := Journey{ID: "ab", Version: 1, Steps: []Step{
		{ID: "split", Split: &Split{Paths: []Path{
			{Name: "a", Weight: 50, Next: "sa"},
			{Name: "b", Weight: 40},
		}, Holdout: 10}},
		{ID: "sb", Send: &Send{Channel: "push", Template: "t"}, Next: End},
		{ID: "sa", Send: &Send{Channel: "push", Template: "t"}},
	}}
	sp := j.Steps[0].Split
	j2 := j
	j2.Version = 2

	const n = 10000
	counts := map[string]int{}
	wantNext := map[string]string{"a": "sa", "b": "sb", Holdout: End}
	for i := range n {
		user := fmt.Sprintf("u%d", i)
		name, next := j.Pick(sp, "split", user)
		want, ok := wantNext[name]
		require.True(t, ok, "unexpected path %q", name)
		require.Equal(t, want, next, "path %q", name)
		counts[name]++

		again, againNext := j.Pick(sp, "split", user)
		require.Equal(t, name, again, "user %s", user)
		require.Equal(t, next, againNext)
		newVersion, _ := j2.Pick(sp, "split", user)
		require.Equal(t, name, newVersion, "user %s on version 2", user)
	}
	for name, pct := range map[string]float64{"a": 50, "b": 40, Holdout: 10} {
		got := 100 * float64(counts[name]) / n
		require.InDelta(t, pct, got, 2, "share of %q", name)
	}
}

func TestNextLocal(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		now  time.Time
		want time.Time
	}{
		{"later today", time.Date(2026, 1, 10, 6, 0, 0, 0, time.UTC), time.Date(2026, 1, 10, 7, 0, 0, 0, time.UTC)},
		{"passed today", time.Date(2026, 1, 10, 7, 30, 0, 0, time.UTC), time.Date(2026, 1, 11, 7, 0, 0, 0, time.UTC)},
		{"exactly now is tomorrow", time.Date(2026, 1, 10, 7, 0, 0, 0, time.UTC), time.Date(2026, 1, 11, 7, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NextLocal(tc.now, "08:00", berlin)
			require.NoError(t, err)
			require.True(t, tc.want.Equal(got), "want %s, got %s", tc.want, got.UTC())
		})
	}

	_, err = NextLocal(time.Date(2026, 1, 10, 6, 0, 0, 0, time.UTC), "8am", berlin)
	require.Error(t, err)
}

func TestResponseEvents(t *testing.T) {
	for _, j := range Demo() {
		if j.ID == "cart-retarget" {
			require.Equal(t, []string{"order_paid", "push_open"}, j.ResponseEvents())
			return
		}
	}
	t.Fatal("no cart-retarget demo journey")
}

func TestResponseEventsSortedUnique(t *testing.T) {
	j := Journey{ID: "r", Steps: []Step{
		{ID: "g1", Goal: &Goal{Events: []string{"push_open"}}},
		{ID: "w", WaitFor: &WaitFor{Events: []string{"order_paid", "chat_started"}}},
		{ID: "g2", Goal: &Goal{Events: []string{"order_paid"}}},
	}}
	require.Equal(t, []string{"chat_started", "order_paid", "push_open"}, j.ResponseEvents())
}

func TestTemplateRender(t *testing.T) {
	tmpl := Template{Title: "Hi {{.name}}", Body: "{{.item_id}} is cheaper", Defaults: map[string]string{"name": "there"},
		Locales: map[string]Text{"de": {Title: "Hallo {{.name}}", Body: "{{.item_id}} ist günstiger"}, "pt": {Body: "{{.item_id}} baixou"}}}
	for _, tt := range []struct {
		locale    string
		fields    map[string]any
		wantTitle string
		wantBody  string
		wantErr   string
	}{
		{locale: "", fields: map[string]any{"item_id": "sku", "name": "Ann"}, wantTitle: "Hi Ann", wantBody: "sku is cheaper"},
		{locale: "de", fields: map[string]any{"item_id": "sku"}, wantTitle: "Hallo there", wantBody: "sku ist günstiger"},
		{locale: "de-AT", fields: map[string]any{"item_id": "sku"}, wantTitle: "Hallo there", wantBody: "sku ist günstiger"},
		{locale: "pt-BR", fields: map[string]any{"item_id": "sku"}, wantBody: "sku baixou"},
		{locale: "fr", fields: map[string]any{"item_id": "sku", "name": ""}, wantTitle: "Hi there", wantBody: "sku is cheaper"},
		{locale: "", fields: map[string]any{"name": "Ann"}, wantErr: `map has no entry for key "item_id"`},
		{locale: "", fields: map[string]any{"item_id": "", "name": "Ann"}, wantErr: "item_id"},
	} {
		title, body, err := tmpl.Render(tt.locale, tt.fields)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, "a missing variable fails, never renders empty")
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.wantTitle, title, tt.locale)
		require.Equal(t, tt.wantBody, body, tt.locale)
	}
	bad := validBaseForTemplates()
	bad.Templates["t"] = Template{Body: "ok", Locales: map[string]Text{"de": {Title: "x"}}}
	var je *Error
	require.ErrorAs(t, Validate(bad, Catalog{}), &je)
	require.Equal(t, "templates.t.locales.de.body", je.Field)
}

func validBaseForTemplates() Journey {
	return Journey{ID: "j", Templates: map[string]Template{"t": {Body: "hi"}},
		Steps: []Step{{ID: "s", Send: &Send{Channel: "push", Template: "t"}}}}
}

// A journey waits for, ends on and branches over the types the event catalogue declares a
// response or a goal: a growth team's own (coupon_redeemed) once declared, and the field named
// when not.
func TestValidateAgainstEventCatalog(t *testing.T) {
	events, err := event.NewCatalog(
		event.Type{Name: "coupon_claimed", Uses: []string{event.UseTrigger}},
		event.Type{Name: "coupon_redeemed", Uses: []string{event.UseResponse}},
		event.Type{Name: "order_paid", Uses: []string{event.UseTrigger, event.UseGoal}},
	)
	require.NoError(t, err)
	cat := testCatalog
	cat.Events = func() *event.Catalog { return events }
	coupon := func(f func(j *Journey)) Journey {
		j := Journey{ID: "coupon", Templates: map[string]Template{"t": {Body: "Your coupon {{.item_id}}"}},
			Steps: []Step{
				{ID: "push", Send: &Send{Channel: "push", Template: "t"}},
				{ID: "wait", WaitFor: &WaitFor{Events: []string{"coupon_redeemed"}, Timeout: Duration(time.Hour), OnTimeout: "check"}},
				{ID: "check", Branch: &Branch{Cases: []Case{{When: `responses.exists(r, r.type == "coupon_redeemed")`, Next: End}}, Else: "again"}},
				{ID: "again", Send: &Send{Channel: "push", Template: "t"}},
				{ID: "paid", Goal: &Goal{Events: []string{"order_paid"}}},
			}}
		if f != nil {
			f(&j)
		}
		return j
	}
	tests := []struct {
		name      string
		j         Journey
		cat       Catalog
		wantStep  string
		wantField string
		wantErr   string
	}{
		{name: "declared types", j: coupon(nil), cat: cat},
		{name: "the default catalogue lacks them", j: coupon(nil), cat: testCatalog, wantStep: "wait", wantField: "wait_for.events",
			wantErr: `"coupon_redeemed" is not a response event: the event catalogue declares no such type`},
		{name: "a trigger is no response", j: coupon(func(j *Journey) { j.Steps[1].WaitFor.Events = []string{"coupon_claimed"} }), cat: cat,
			wantStep: "wait", wantField: "wait_for.events", wantErr: "declares it a trigger"},
		{name: "a response is no goal here", j: coupon(func(j *Journey) { j.Steps[4].Goal.Events = []string{"coupon_redeemed"} }), cat: cat,
			wantStep: "paid", wantField: "goal.events", wantErr: `"coupon_redeemed" is not a goal event`},
		{name: "branch on an undeclared response", j: coupon(func(j *Journey) {
			j.Steps[2].Branch.Cases[0].When = `responses.exists(r, r.type == "coupon_used")`
		}), cat: cat, wantStep: "check", wantField: "branch.cases[0].when", wantErr: `"coupon_used"`},
		{name: "branch on a trigger, literal first", j: coupon(func(j *Journey) {
			j.Steps[2].Branch.Cases[0].When = `size(responses) > 0 && "coupon_claimed" == responses[0].type`
		}), cat: cat, wantStep: "check", wantField: "branch.cases[0].when", wantErr: `"coupon_claimed"`},
		{name: "a profile attribute named type is not a response", j: coupon(func(j *Journey) {
			j.Steps[2].Branch.Cases[0].When = `profile.attrs.type == "vip"`
		}), cat: cat},
		{name: "a match attribute outside attrs", j: coupon(func(j *Journey) {
			j.Steps[2].Branch.Cases[0].When = `match.amount > 3.0`
		}), cat: cat, wantStep: "check", wantField: "branch.cases[0].when", wantErr: "match has no field amount (it has attrs, event_type, item_id, journey_id, rule_id, user_id): an attribute is match.attrs.amount"},
		{name: "a string field for a condition", j: coupon(func(j *Journey) {
			j.Steps[2].Branch.Cases[0].When = `match.item_id`
		}), cat: cat, wantStep: "check", wantField: "branch.cases[0].when", wantErr: "match.item_id is a string, never true"},
		{name: "a match attribute", j: coupon(func(j *Journey) {
			j.Steps[2].Branch.Cases[0].When = `match.attrs.amount > 3.0 || match.attrs.vip`
		}), cat: cat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.j, tt.cat)
			if tt.wantField == "" {
				require.NoError(t, err)
				return
			}
			var je *Error
			require.True(t, errors.As(err, &je), "want a *journey.Error, got %v", err)
			require.Equal(t, tt.wantStep, je.Step)
			require.Equal(t, tt.wantField, je.Field)
			require.Contains(t, err.Error(), tt.wantErr)
		})
	}
	// A walk (a dry run) runs what was validated on write, whatever the default catalogue says.
	w, err := WalkPath(coupon(nil), WalkInput{UserID: "u1", Match: map[string]any{"item_id": "c-1"}, Responses: []WalkResponse{{Type: "coupon_redeemed"}}})
	require.NoError(t, err)
	require.NotEmpty(t, w.Steps)
}

// The fields a journey's templates need from the match: read at the top level, in any locale,
// without a default and not given by every reach.
func TestTemplateFields(t *testing.T) {
	j := Journey{Templates: map[string]Template{
		"a": {Title: "{{.coupon_id}} for {{.user_id}}", Body: `{{with .new_price}}now {{.amount}}{{end}}{{if .vip}} VIP{{end}} {{.profile.locale}}`,
			Defaults: map[string]string{"new_price": ""}, Locales: map[string]Text{"de": {Body: "{{.coupon_id}} {{.expires}}"}}},
		"b": {Body: "{{.item_id}} is waiting"},
	}}
	require.Equal(t, map[string][]string{"a": {"coupon_id", "expires", "vip"}}, j.TemplateFields())
}
