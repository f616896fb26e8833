package journey_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/journey"
)

const machineJourney = `
id: machine
templates:
  t: {body: "hi"}
steps:
  - id: push
    send: {channel: push, template: t, fallback: sms}
  - id: pause
    wait: {for: 90m}
  - id: ask
    wait_for: {events: [push_open], timeout: 24h, on_timeout: which}
  - id: which
    branch:
      cases:
        - {when: 'size(responses) > 0', next: ab}
      else: bye
  - id: ab
    split:
      paths: [{name: a, weight: 1, next: push}]
      holdout: 1
  - id: bye
    exit: {}
  - id: paid
    goal: {events: [order_paid]}
`

func TestAdvance(t *testing.T) {
	j := parse(t, machineJourney)
	step := func(id string) *journey.Step {
		s, ok := j.Step(id)
		require.True(t, ok, id)
		return s
	}
	// A user in the split's path and one in its holdout.
	var inPath, heldOut string
	for _, u := range []string{"u1", "u2", "u3", "u4", "u5", "u6"} {
		if p, _ := j.Pick(step("ab").Split, "ab", u); p == journey.Holdout {
			heldOut = u
		} else {
			inPath = u
		}
	}
	require.NotEmpty(t, inPath)
	require.NotEmpty(t, heldOut)

	for _, tc := range []struct {
		name string
		step string
		user string
		sent int
		o    journey.Outcome
		want journey.Move
	}{
		{name: "sent: next in the list", step: "push", sent: 1, o: journey.Outcome{Channel: "sms"}, want: journey.Move{Next: "pause"}},
		{name: "no channel took it: failed", step: "push", o: journey.Outcome{}, want: journey.Move{Done: true,
			Status: journey.StatusFailed, Reason: "no channel took the send"}},
		{name: "dropped: suppressed", step: "push", o: journey.Outcome{Dropped: true}, want: journey.Move{Done: true,
			Status: journey.StatusSuppressed, Reason: "the filter chain dropped the send"}},
		{name: "dropped after a send: sent, the user was reached", step: "push", sent: 1, o: journey.Outcome{Dropped: true},
			want: journey.Move{Done: true, Status: journey.StatusSent, Reason: "1 sent before the filter chain dropped the send at step push"}},
		{name: "waited", step: "pause", want: journey.Move{Next: "ask"}},
		{name: "responded: then (empty: next in the list)", step: "ask", o: journey.Outcome{Responded: true}, want: journey.Move{Next: "which"}},
		{name: "timed out: on_timeout", step: "ask", want: journey.Move{Next: "which"}},
		{name: "case 0", step: "which", o: journey.Outcome{Case: 0}, want: journey.Move{Next: "ab", Outcome: "case 0"}},
		{name: "else", step: "which", o: journey.Outcome{Case: -1}, want: journey.Move{Next: "bye", Outcome: "else"}},
		{name: "split path", step: "ab", user: inPath, want: journey.Move{Next: "push", Outcome: "a"}},
		{name: "holdout ends completed, whatever was sent", step: "ab", user: heldOut, sent: 2, want: journey.Move{
			Outcome: journey.Holdout, Done: true, Status: journey.StatusCompleted, Reason: "holdout group of split ab: nothing is sent"}},
		{name: "exit after a send: sent", step: "bye", sent: 1, want: journey.Move{Done: true, Status: journey.StatusSent,
			Reason: "exit at step bye"}},
		{name: "exit without a send: completed", step: "bye", want: journey.Move{Done: true, Status: journey.StatusCompleted,
			Reason: "exit at step bye"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, j.Advance(step(tc.step), tc.user, tc.sent, tc.o))
		})
	}
}

func TestEnterNamesVisits(t *testing.T) {
	j := parse(t, machineJourney)
	visits := map[string]int{}
	var names []string
	for range 3 {
		_, name, ok := j.Enter(visits, "pause")
		require.True(t, ok)
		names = append(names, name)
	}
	require.Equal(t, []string{"pause", "pause#2", "pause#3"}, names)
	_, _, ok := j.Enter(visits, "nowhere")
	require.False(t, ok)
	require.Equal(t, map[string]int{"pause": 3}, visits)
}

func TestTakeAndConverts(t *testing.T) {
	j := parse(t, machineJourney)
	rs := []journey.Response{{Type: "push_open", Consumed: true}, {Type: "chat_started"}, {Type: "push_open"}}
	require.Equal(t, 2, journey.Take(rs, []string{"push_open"}), "the first not taken yet")
	require.Equal(t, -1, journey.Take(rs, nil), "a plain wait takes nothing")
	require.True(t, j.Converts("order_paid"))
	require.False(t, j.Converts("push_open"))
	require.Equal(t, "paid", j.GoalStep("order_paid"))
}

func TestDecide(t *testing.T) {
	vars := func() map[string]any {
		return map[string]any{"match": journey.Match{UserID: "u1"}.Vars(), "profile": map[string]any{"attrs": map[string]any{}},
			"responses": journey.ResponseVars([]journey.Response{{Type: "push_open", At: time.Unix(0, 0).UTC()}})}
	}
	i, err := journey.Decide([]string{`profile.attrs.tier == "gold"`, `responses[0].type == "push_open"`}, vars(), journey.CompileCondition)
	require.NoError(t, err)
	require.Equal(t, 1, i, "a condition that fails at run time does not hold")
	i, err = journey.Decide([]string{`match.user_id == "u2"`}, vars(), journey.CompileCondition)
	require.NoError(t, err)
	require.Equal(t, -1, i)
	_, err = journey.Decide([]string{`true`, `nonsense(`}, vars(), journey.CompileCondition)
	require.NoError(t, err, "the first that holds wins before a later one is compiled")
	_, err = journey.Decide([]string{`false`, `nonsense(`}, vars(), journey.CompileCondition)
	var ce *journey.ConditionError
	require.True(t, errors.As(err, &ce))
	require.Equal(t, 1, ce.Index)
}

func TestMatchFields(t *testing.T) {
	m := journey.Match{UserID: "u1", ItemID: "", RuleID: "r", Attrs: map[string]any{"item_id": "from-attrs", "rule_id": "shadowed", "price": 3}}
	p := map[string]any{"locale": "de"}
	require.Equal(t, map[string]any{"user_id": "u1", "item_id": "from-attrs", "rule_id": "r", "event_type": "", "price": 3, "profile": p},
		m.Fields(p), "a match field wins over an attribute unless it is empty")
	require.Equal(t, map[string]any{}, journey.Match{}.Vars()["attrs"])
}

func TestWaitSpan(t *testing.T) {
	now := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	d, what, err := (&journey.Wait{For: journey.Duration(24 * time.Hour)}).Span(now, time.UTC)
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, d)
	require.Equal(t, "wait 24h", what)
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	d, what, err = (&journey.Wait{Until: "09:00"}).Span(now, tokyo) // 23:00 in Tokyo
	require.NoError(t, err)
	require.Equal(t, 10*time.Hour, d)
	require.Equal(t, "wait until 09:00 Asia/Tokyo", what)
	require.Equal(t, "wait up to 1h30m for push_open or chat_started",
		(&journey.WaitFor{Events: []string{"push_open", "chat_started"}, Timeout: journey.Duration(90 * time.Minute)}).Describe())
}
