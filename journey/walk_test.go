package journey_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/journey"
)

func demo(t *testing.T, id string) journey.Journey {
	t.Helper()
	for _, j := range journey.Demo() {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("no demo journey %q", id)
	return journey.Journey{}
}

func parse(t *testing.T, doc string) journey.Journey {
	t.Helper()
	j, err := journey.Parse([]byte(doc))
	require.NoError(t, err)
	return j
}

func after(d time.Duration) journey.Duration { return journey.Duration(d) }

type walkCase struct {
	name   string
	j      journey.Journey
	in     journey.WalkInput
	steps  []journey.WalkStep
	status string
}

func runWalks(t *testing.T, cases []walkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, err := journey.WalkPath(tc.j, tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.steps, w.Steps)
			require.Equal(t, tc.status, w.Status)
		})
	}
}

func TestWalkCartRetarget(t *testing.T) {
	j := demo(t, "cart-retarget")
	match := map[string]any{"rule_id": "cart", "item_id": "sku-1"}
	push := journey.WalkStep{Step: "push", Kind: "send", Outcome: "sent", Channel: "push",
		Title: "Your cart is waiting", Body: "sku-1 is still in your cart.", Next: "wait_open"}
	timeout := journey.WalkStep{Step: "wait_open", Kind: "wait_for", Outcome: "timeout", Next: "sms"}
	sms := journey.WalkStep{Step: "sms", Kind: "send", Outcome: "sent", Channel: "sms",
		Body: "Omega: sku-1 is still in your cart. Reply STOP to opt out.", Next: "end"}
	opened := journey.WalkStep{Step: "wait_open", Kind: "wait_for", Outcome: "response push_open", Next: "end"}
	paid := []journey.WalkStep{
		{Step: "wait_open", Kind: "wait_for", Outcome: "response order_paid"},
		{Step: "paid", Kind: "goal", Outcome: "converted"},
	}
	resp := func(typ string, d time.Duration) journey.WalkResponse {
		return journey.WalkResponse{Type: typ, After: after(d)}
	}
	runWalks(t, []walkCase{
		{name: "no response: push, timeout, sms", j: j,
			in:    journey.WalkInput{UserID: "u1", Match: match},
			steps: []journey.WalkStep{push, timeout, sms}, status: "sent"},
		{name: "push opened: then ends", j: j,
			in:    journey.WalkInput{UserID: "u1", Match: match, Responses: []journey.WalkResponse{resp("push_open", 0)}},
			steps: []journey.WalkStep{push, opened}, status: "sent"},
		{name: "push opened at the timeout exactly", j: j,
			in:    journey.WalkInput{UserID: "u1", Match: match, Responses: []journey.WalkResponse{resp("push_open", 24*time.Hour)}},
			steps: []journey.WalkStep{push, opened}, status: "sent"},
		{name: "push opened after the timeout: sms", j: j,
			in:    journey.WalkInput{UserID: "u1", Match: match, Responses: []journey.WalkResponse{resp("push_open", 25*time.Hour)}},
			steps: []journey.WalkStep{push, timeout, sms}, status: "sent"},
		{name: "order paid while waiting: converted", j: j,
			in:    journey.WalkInput{UserID: "u1", Match: match, Responses: []journey.WalkResponse{resp("order_paid", time.Hour)}},
			steps: append([]journey.WalkStep{push}, paid...), status: "converted"},
		{name: "a response nobody listens for does not reach the run", j: j,
			in: journey.WalkInput{UserID: "u1", Match: match, Responses: []journey.WalkResponse{
				resp("chat_started", 0), resp("order_paid", 0)}},
			steps: append([]journey.WalkStep{push}, paid...), status: "converted"},
		{name: "paid after the run ended: never seen", j: j,
			in: journey.WalkInput{UserID: "u1", Match: match, Responses: []journey.WalkResponse{
				resp("push_open", time.Hour), resp("order_paid", time.Hour)}},
			steps: []journey.WalkStep{push, opened}, status: "sent"},
		{name: "push refused: sms fallback", j: j,
			in: journey.WalkInput{UserID: "u1", Match: match, Failed: []string{"push"}},
			steps: []journey.WalkStep{
				{Step: "push", Kind: "send", Outcome: "fallback to sms", Channel: "sms",
					Title: "Your cart is waiting", Body: "sku-1 is still in your cart.", Next: "wait_open"},
				timeout, sms,
			}, status: "sent"},
		{name: "push and sms refused: failed", j: j,
			in: journey.WalkInput{UserID: "u1", Match: match, Failed: []string{"push", "sms"}},
			steps: []journey.WalkStep{
				{Step: "push", Kind: "send", Outcome: "failed: push, sms refused", Channel: "sms",
					Title: "Your cart is waiting", Body: "sku-1 is still in your cart."},
			}, status: "failed"},
		{name: "german wording, defaults fill the missing item", j: j,
			in: journey.WalkInput{UserID: "u1", Locale: "de-AT", Responses: []journey.WalkResponse{resp("push_open", 0)}},
			steps: []journey.WalkStep{
				{Step: "push", Kind: "send", Outcome: "sent", Channel: "push",
					Title: "Dein Warenkorb wartet", Body: "An item liegt noch in deinem Warenkorb.", Next: "wait_open"},
				opened,
			}, status: "sent"},
		{name: "the profile's locale when the input has none", j: j,
			in: journey.WalkInput{UserID: "u1", Match: map[string]any{"attrs": map[string]any{"item_id": "sku-9"}},
				Profile: map[string]any{"locale": "de"}, Responses: []journey.WalkResponse{resp("push_open", 0)}},
			steps: []journey.WalkStep{
				{Step: "push", Kind: "send", Outcome: "sent", Channel: "push",
					Title: "Dein Warenkorb wartet", Body: "sku-9 liegt noch in deinem Warenkorb.", Next: "wait_open"},
				opened,
			}, status: "sent"},
	})
}

func TestWalkDemoOneShots(t *testing.T) {
	runWalks(t, []walkCase{
		{name: "cart-reminder default", j: demo(t, "cart-reminder"),
			in: journey.WalkInput{UserID: "u1"},
			steps: []journey.WalkStep{{Step: "send", Kind: "send", Outcome: "sent", Channel: "webhook",
				Title: "Still thinking about it?", Body: "The item you picked is waiting in your cart.", Next: "end"}},
			status: "sent"},
		{name: "cart-reminder refused without fallback", j: demo(t, "cart-reminder"),
			in: journey.WalkInput{UserID: "u1", Failed: []string{"webhook"}},
			steps: []journey.WalkStep{{Step: "send", Kind: "send", Outcome: "failed: webhook refused", Channel: "webhook",
				Title: "Still thinking about it?", Body: "The item you picked is waiting in your cart."}},
			status: "failed"},
		{name: "price-drop with the new price; a goal after the last step never comes", j: demo(t, "price-drop"),
			in: journey.WalkInput{UserID: "u1", Match: map[string]any{"item_id": "i7", "attrs": map[string]any{"new_price": "9.99"}},
				Responses: []journey.WalkResponse{{Type: "order_paid"}}},
			steps: []journey.WalkStep{{Step: "send", Kind: "send", Outcome: "sent", Channel: "webhook",
				Title: "A price dropped", Body: "The item i7 you favourited is cheaper now: 9.99.", Next: "end"}},
			status: "sent"},
	})
}

const branchJourney = `
id: tiers
templates:
  gold: {body: "Hi {{.profile.attrs.name}}, a gift for you"}
  pricey: {body: "{{.item_id}} for {{.price}}"}
steps:
  - id: tier
    branch:
      cases:
        - {when: 'profile.attrs.tier == "gold"', next: gold}
        - {when: 'match.attrs.price > 100 && match.rule_id == "browse"', next: pricey}
      else: bye
  - id: gold
    send: {channel: push, template: gold}
    next: end
  - id: pricey
    send: {channel: sms, template: pricey}
    next: end
  - id: bye
    exit: {reason: not a target}
`

func TestWalkBranch(t *testing.T) {
	j := parse(t, branchJourney)
	pricey := map[string]any{"rule_id": "browse", "item_id": "i1", "attrs": map[string]any{"price": 150}}
	runWalks(t, []walkCase{
		{name: "gold profile: case 0", j: j,
			in: journey.WalkInput{UserID: "u1", Match: pricey,
				Profile: map[string]any{"attrs": map[string]any{"tier": "gold", "name": "Ada"}}},
			steps: []journey.WalkStep{
				{Step: "tier", Kind: "branch", Outcome: "case 0", Next: "gold"},
				{Step: "gold", Kind: "send", Outcome: "sent", Channel: "push", Body: "Hi Ada, a gift for you", Next: "end"},
			}, status: "sent"},
		{name: "no profile: the failing condition does not hold, case 1", j: j,
			in: journey.WalkInput{UserID: "u1", Match: pricey},
			steps: []journey.WalkStep{
				{Step: "tier", Kind: "branch", Outcome: "case 1", Next: "pricey"},
				{Step: "pricey", Kind: "send", Outcome: "sent", Channel: "sms", Body: "i1 for 150", Next: "end"},
			}, status: "sent"},
		{name: "silver, cheap: else exits", j: j,
			in: journey.WalkInput{UserID: "u1", Match: map[string]any{"rule_id": "browse", "attrs": map[string]any{"price": 10}},
				Profile: map[string]any{"attrs": map[string]any{"tier": "silver"}}},
			steps: []journey.WalkStep{
				{Step: "tier", Kind: "branch", Outcome: "else", Next: "bye"},
				{Step: "bye", Kind: "exit", Outcome: "exit: not a target"},
			}, status: "completed"},
		{name: "an exit without a reason names its step", j: parse(t, `{"id": "out", "steps": [{"id": "leave", "exit": {}}]}`),
			in:     journey.WalkInput{UserID: "u1"},
			steps:  []journey.WalkStep{{Step: "leave", Kind: "exit", Outcome: "exit: exit at step leave"}},
			status: "completed"},
	})
}

// opened checks the responses so far after a wait, then waits for the open of the SMS.
const respondedJourney = `
id: opened
templates:
  t: {body: "hi"}
steps:
  - id: push
    send: {channel: push, template: t}
  - id: pause
    wait: {for: 1h}
  - id: check
    branch:
      cases:
        - {when: 'responses.exists(r, r.type == "push_open" && r.event_id == "walk-1")', next: done}
      else: sms
  - id: sms
    send: {channel: sms, template: t}
  - id: wait_open
    wait_for: {events: [push_open], timeout: 24h, then: end, on_timeout: done}
  - id: done
    exit: {reason: finished}
  - id: paid
    goal: {events: [order_paid]}
`

func TestWalkResponsesOverTime(t *testing.T) {
	j := parse(t, respondedJourney)
	push := journey.WalkStep{Step: "push", Kind: "send", Outcome: "sent", Channel: "push", Body: "hi", Next: "pause"}
	pause := journey.WalkStep{Step: "pause", Kind: "wait", Outcome: "wait 1h", Next: "check"}
	sms := journey.WalkStep{Step: "sms", Kind: "send", Outcome: "sent", Channel: "sms", Body: "hi", Next: "wait_open"}
	done := journey.WalkStep{Step: "done", Kind: "exit", Outcome: "exit: finished"}
	resp := func(typ string, d time.Duration) []journey.WalkResponse {
		return []journey.WalkResponse{{Type: typ, After: after(d)}}
	}
	runWalks(t, []walkCase{
		{name: "opened during the wait: the branch sees it", j: j,
			in: journey.WalkInput{UserID: "u1", Responses: resp("push_open", 30*time.Minute)},
			steps: []journey.WalkStep{push, pause,
				{Step: "check", Kind: "branch", Outcome: "case 0", Next: "done"}, done},
			status: "sent"},
		{name: "a response type the journey does not listen for never reaches the run", j: j,
			in: journey.WalkInput{UserID: "u1", Responses: []journey.WalkResponse{
				{Type: "chat_started"}, {Type: "push_open", After: after(30 * time.Minute)}}},
			steps: []journey.WalkStep{push, pause,
				{Step: "check", Kind: "branch", Outcome: "case 0", Next: "done"}, done},
			status: "sent"},
		{name: "opened after the wait: counted from the sms send, taken by wait_for", j: j,
			in: journey.WalkInput{UserID: "u1", Responses: resp("push_open", 2*time.Hour)},
			steps: []journey.WalkStep{push, pause,
				{Step: "check", Kind: "branch", Outcome: "else", Next: "sms"}, sms,
				{Step: "wait_open", Kind: "wait_for", Outcome: "response push_open", Next: "end"}},
			status: "sent"},
		{name: "opened too late for the wait_for", j: j,
			in: journey.WalkInput{UserID: "u1", Responses: resp("push_open", 25*time.Hour)},
			steps: []journey.WalkStep{push, pause,
				{Step: "check", Kind: "branch", Outcome: "else", Next: "sms"}, sms,
				{Step: "wait_open", Kind: "wait_for", Outcome: "timeout", Next: "done"}, done},
			status: "sent"},
		{name: "paid during the plain wait: converted there", j: j,
			in: journey.WalkInput{UserID: "u1", Responses: resp("order_paid", 0)},
			steps: []journey.WalkStep{push,
				{Step: "pause", Kind: "wait", Outcome: "response order_paid"},
				{Step: "paid", Kind: "goal", Outcome: "converted"}},
			status: "converted"},
	})
}

// Two wait_fors in a row: a response the first does not listen for waits for the second.
const twoWaitsJourney = `
id: two-waits
templates: {t: {body: hi}}
steps:
  - id: push
    send: {channel: push, template: t}
  - id: chat
    wait_for: {events: [chat_started], timeout: 1h, then: end}
  - id: open
    wait_for: {events: [push_open], timeout: 1h, then: end, on_timeout: bye}
  - id: bye
    exit: {reason: no open}
`

func TestWalkResponseKeptForALaterWaitFor(t *testing.T) {
	j := parse(t, twoWaitsJourney)
	push := journey.WalkStep{Step: "push", Kind: "send", Outcome: "sent", Channel: "push", Body: "hi", Next: "chat"}
	chatTimeout := journey.WalkStep{Step: "chat", Kind: "wait_for", Outcome: "timeout", Next: "open"}
	resp := func(rs ...journey.WalkResponse) journey.WalkInput {
		return journey.WalkInput{UserID: "u1", Responses: rs}
	}
	runWalks(t, []walkCase{
		{name: "open during the chat wait is taken by the open wait", j: j,
			in:     resp(journey.WalkResponse{Type: "push_open", After: after(10 * time.Minute)}),
			steps:  []journey.WalkStep{push, chatTimeout, {Step: "open", Kind: "wait_for", Outcome: "response push_open", Next: "end"}},
			status: "sent"},
		{name: "an open the chat wait ignores does not hide the chat after it", j: j,
			in: resp(journey.WalkResponse{Type: "push_open", After: after(10 * time.Minute)},
				journey.WalkResponse{Type: "chat_started", After: after(5 * time.Minute)}),
			steps:  []journey.WalkStep{push, {Step: "chat", Kind: "wait_for", Outcome: "response chat_started", Next: "end"}},
			status: "sent"},
		{name: "After counts from the start of the wait it comes in", j: j,
			in: resp(journey.WalkResponse{Type: "push_open", After: after(90 * time.Minute)}),
			steps: []journey.WalkStep{push, chatTimeout, {Step: "open", Kind: "wait_for", Outcome: "timeout", Next: "bye"},
				{Step: "bye", Kind: "exit", Outcome: "exit: no open"}},
			status: "sent"},
	})
}

const splitJourney = `
id: ab
templates:
  hello: {body: "hello {{.user_id}}"}
  a: {body: "A"}
  b: {body: "B"}
steps:
  - id: hello
    send: {channel: push, template: hello}
  - id: pick
    split:
      holdout: 1
      paths:
        - {name: a, weight: 1, next: send_a}
        - {name: b, weight: 1, next: send_b}
  - id: send_a
    send: {channel: push, template: a}
    next: end
  - id: send_b
    send: {channel: sms, template: b}
`

func TestWalkSplit(t *testing.T) {
	j := parse(t, splitJourney)
	hello := func(u string) journey.WalkStep {
		return journey.WalkStep{Step: "hello", Kind: "send", Outcome: "sent", Channel: "push", Body: "hello " + u, Next: "pick"}
	}
	// u2, u3 and u1 land on a, b and the holdout (FNV of journey, step and user).
	runWalks(t, []walkCase{
		{name: "path a", j: j, in: journey.WalkInput{UserID: "u2"},
			steps: []journey.WalkStep{hello("u2"),
				{Step: "pick", Kind: "split", Outcome: "path a", Next: "send_a"},
				{Step: "send_a", Kind: "send", Outcome: "sent", Channel: "push", Body: "A", Next: "end"}},
			status: "sent"},
		{name: "path b", j: j, in: journey.WalkInput{UserID: "u3"},
			steps: []journey.WalkStep{hello("u3"),
				{Step: "pick", Kind: "split", Outcome: "path b", Next: "send_b"},
				{Step: "send_b", Kind: "send", Outcome: "sent", Channel: "sms", Body: "B", Next: "end"}},
			status: "sent"},
		{name: "holdout ends as completed, even after a send", j: j, in: journey.WalkInput{UserID: "u1"},
			steps:  []journey.WalkStep{hello("u1"), {Step: "pick", Kind: "split", Outcome: "holdout"}},
			status: "completed"},
		{name: "the match's user_id when the input has none", j: j, in: journey.WalkInput{Match: map[string]any{"user_id": "u3"}},
			steps: []journey.WalkStep{hello("u3"),
				{Step: "pick", Kind: "split", Outcome: "path b", Next: "send_b"},
				{Step: "send_b", Kind: "send", Outcome: "sent", Channel: "sms", Body: "B", Next: "end"}},
			status: "sent"},
	})

	// The walk picks as the workflow does, and the same user always gets the same path.
	step, ok := j.Step("pick")
	require.True(t, ok)
	for _, u := range []string{"u1", "u2", "u3", "someone", "else"} {
		first, err := journey.WalkPath(j, journey.WalkInput{UserID: u})
		require.NoError(t, err)
		again, err := journey.WalkPath(j, journey.WalkInput{UserID: u})
		require.NoError(t, err)
		require.Equal(t, first, again, u)
		path, _ := j.Pick(step.Split, "pick", u)
		want := "path " + path
		if path == journey.Holdout {
			want = journey.Holdout
		}
		require.Equal(t, want, first.Steps[1].Outcome, u)
	}
}

func TestWalkErrors(t *testing.T) {
	offer := parse(t, `
id: offer
templates:
  hi: {body: "hi"}
  coupon: {title: "For you", body: "Use {{.coupon}}"}
steps:
  - id: greet
    send: {channel: push, template: hi}
  - id: offer
    send: {channel: push, template: coupon}
`)
	loop := parse(t, `
id: loop
templates:
  t: {body: ping}
steps:
  - id: ping
    send: {channel: push, template: t}
  - id: pause
    wait: {for: 1h}
    next: ping
`)
	ping := func(name string) journey.WalkStep {
		return journey.WalkStep{Step: name, Kind: "send", Outcome: "sent", Channel: "push", Body: "ping", Next: "pause"}
	}
	pause := func(name string) journey.WalkStep {
		return journey.WalkStep{Step: name, Kind: "wait", Outcome: "wait 1h", Next: "ping"}
	}
	greet := journey.WalkStep{Step: "greet", Kind: "send", Outcome: "sent", Channel: "push", Body: "hi", Next: "offer"}
	for _, tc := range []struct {
		name     string
		j        journey.Journey
		in       journey.WalkInput
		step     string
		contains string
		steps    []journey.WalkStep
	}{
		{name: "missing template variable", j: offer, in: journey.WalkInput{UserID: "u1"},
			step: "offer", contains: "coupon", steps: []journey.WalkStep{greet}},
		{name: "empty is missing", j: offer,
			in:   journey.WalkInput{UserID: "u1", Match: map[string]any{"attrs": map[string]any{"coupon": ""}}},
			step: "offer", contains: "coupon", steps: []journey.WalkStep{greet}},
		{name: "max steps", j: loop, in: journey.WalkInput{UserID: "u1", MaxSteps: 5},
			step: "pause#3", contains: "more than 5 steps",
			steps: []journey.WalkStep{ping("ping"), pause("pause"), ping("ping#2"), pause("pause#2"), ping("ping#3")}},
		{name: "invalid journey", j: parse(t, `{"id": "bad", "steps": [{"id": "w", "wait_for": {"events": ["push_open"]}}]}`),
			in: journey.WalkInput{UserID: "u1"}, step: "w", contains: "timeout", steps: []journey.WalkStep{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := journey.WalkPath(tc.j, tc.in)
			var je *journey.Error
			require.ErrorAs(t, err, &je)
			require.Equal(t, tc.step, je.Step)
			require.Contains(t, err.Error(), tc.contains)
			require.Contains(t, err.Error(), `step "`+tc.step+`"`)
			require.Equal(t, tc.steps, w.Steps)
			require.Empty(t, w.Status)
		})
	}

	// The default bound is 100 steps: the 101st is refused.
	_, err := journey.WalkPath(loop, journey.WalkInput{UserID: "u1"})
	var je *journey.Error
	require.ErrorAs(t, err, &je)
	require.Equal(t, "ping#51", je.Step)

	// With the variable the same journey renders.
	w, err := journey.WalkPath(offer, journey.WalkInput{UserID: "u1", Match: map[string]any{"attrs": map[string]any{"coupon": "SAVE10"}}})
	require.NoError(t, err)
	require.Equal(t, []journey.WalkStep{greet,
		{Step: "offer", Kind: "send", Outcome: "sent", Channel: "push", Title: "For you", Body: "Use SAVE10", Next: "end"}}, w.Steps)
}

func TestWalkWaitUntilAndJSON(t *testing.T) {
	j := parse(t, `
id: morning
templates:
  t: {body: "good morning"}
steps:
  - id: night
    wait: {until: "09:00"}
  - id: send
    send: {channel: push, template: t}
  - id: opened
    wait_for: {events: [push_open], timeout: 2h, then: end}
`)
	runWalks(t, []walkCase{
		{name: "until in the profile's zone; a timed response is not assumed during it", j: j,
			in: journey.WalkInput{UserID: "u1", Profile: map[string]any{"time_zone": "Europe/Berlin"},
				Responses: []journey.WalkResponse{{Type: "push_open", After: after(time.Minute)}}},
			steps: []journey.WalkStep{
				{Step: "night", Kind: "wait", Outcome: "wait until 09:00 Europe/Berlin", Next: "send"},
				{Step: "send", Kind: "send", Outcome: "sent", Channel: "push", Body: "good morning", Next: "opened"},
				{Step: "opened", Kind: "wait_for", Outcome: "response push_open", Next: "end"},
			}, status: "sent"},
		{name: "UTC without a profile", j: j, in: journey.WalkInput{UserID: "u1"},
			steps: []journey.WalkStep{
				{Step: "night", Kind: "wait", Outcome: "wait until 09:00 UTC", Next: "send"},
				{Step: "send", Kind: "send", Outcome: "sent", Channel: "push", Body: "good morning", Next: "opened"},
				{Step: "opened", Kind: "wait_for", Outcome: "timeout", Next: "end"},
			}, status: "sent"},
	})

	var in journey.WalkInput
	require.NoError(t, json.Unmarshal([]byte(`{"user_id": "u1", "responses": [{"type": "push_open", "after": "3d"}]}`), &in))
	require.Equal(t, 72*time.Hour, in.Responses[0].After.D())
	w, err := journey.WalkPath(j, in)
	require.NoError(t, err)
	b, err := json.Marshal(w)
	require.NoError(t, err)
	require.JSONEq(t, `{"status": "sent", "steps": [
		{"step": "night", "kind": "wait", "outcome": "wait until 09:00 UTC", "next": "send"},
		{"step": "send", "kind": "send", "outcome": "sent", "channel": "push", "body": "good morning", "next": "opened"},
		{"step": "opened", "kind": "wait_for", "outcome": "timeout", "next": "end"}]}`, string(b))
}
