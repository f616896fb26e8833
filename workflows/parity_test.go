package workflows_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/workflows"
)

// A parity script is what happens around one reach: the responses the user gives, at times since
// the run started, and the channels whose provider refuses the send for good.
type parityScript struct {
	name      string
	responses []parityResponse
	failed    []string
}

type parityResponse struct {
	typ string
	at  time.Duration
}

// parityRun is what a run did, as both interpreters can say it: the flow steps it took (their
// names, id#n on a later visit, in order; a step where a goal converted the run included), the
// channels that took a message and what each said, and how the run ended.
type parityRun struct {
	Steps    []string
	Sent     []string
	Messages []string
	Status   string
}

// The journeys with branches, splits and plain waits that the demos lack (see parityWalk for how a
// script's times read to the dry run).
const parityBranch = `
id: engage
templates:
  push: {title: "Still there?", body: "{{.item_id}} is waiting"}
  sms: {body: "Omega: {{.item_id}} is waiting"}
steps:
  - id: push
    send: {channel: push, template: push}
  - id: wait_open
    wait_for: {events: [push_open], timeout: 2h, then: check, on_timeout: check}
  - id: check
    branch:
      cases:
        - {when: 'responses.exists(r, r.type == "push_open")', next: engaged}
      else: sms
  - id: engaged
    exit: {reason: the push was opened}
  - id: sms
    send: {channel: sms, template: sms}
  - id: paid
    goal: {events: [order_paid]}
`

// A plain wait first: a response that comes during it is kept for the wait_for after it.
const parityPause = `
id: pause
templates:
  t: {body: "hi {{.user_id}}"}
steps:
  - id: pause
    wait: {for: 2h}
  - id: ask
    wait_for: {events: [push_open], timeout: 4h, then: thanks, on_timeout: end}
  - id: thanks
    send: {channel: webhook, template: t}
  - id: loop
    branch:
      cases:
        - {when: 'size(responses) > 1', next: end}
      else: ask
  - id: paid
    goal: {events: [order_paid]}
`

// A split, then a send on the path; the holdout ends the run.
const paritySplit = `
id: ab
templates:
  a: {body: "A"}
  b: {body: "B"}
steps:
  - id: ab
    split:
      paths: [{name: a, weight: 40, next: send_a}, {name: b, weight: 40, next: send_b}]
      holdout: 20
  - id: send_a
    send: {channel: push, template: a}
    next: end
  - id: send_b
    send: {channel: sms, template: b}
`

// A wait_for that listens for the goal event itself.
const parityGoalWait = `
id: goal-wait
templates:
  t: {body: "thanks {{.user_id}}"}
steps:
  - id: wait_paid
    wait_for: {events: [order_paid], timeout: 2h, then: thanks, on_timeout: end}
  - id: thanks
    send: {channel: webhook, template: t}
  - id: paid
    goal: {events: [order_paid]}
`

// Branches on the profile and the match's attributes; a condition on what is missing fails and
// does not hold.
const parityTiers = `
id: tiers
templates:
  gold: {body: "Hi gold member ({{.profile.locale}}): {{.item_id}}"}
  pricey: {body: "{{.item_id}} now {{.new_price}}"}
steps:
  - id: tier
    branch:
      cases:
        - {when: 'profile.attrs.tier == "gold" && match.rule_id == "cart-add"', next: gold}
        - {when: 'match.attrs.new_price != ""', next: pricey}
      else: bye
  - id: gold
    send: {channel: push, template: gold}
    next: end
  - id: pricey
    send: {channel: sms, template: pricey}
    next: end
  - id: bye
    exit: {reason: not a target}
  - id: paid
    goal: {events: [order_paid]}
`

func parityJourneys(t *testing.T) []journey.Journey {
	t.Helper()
	js := journey.Demo()
	for _, doc := range []string{parityBranch, parityPause, paritySplit, parityGoalWait, parityTiers} {
		j, err := journey.Parse([]byte(doc))
		require.NoError(t, err)
		j.Version = 1
		js = append(js, j)
	}
	return js
}

// parityUser is who the user is and what the match carries: templates render over both.
type parityUser struct {
	name    string
	profile profile.Profile
	attrs   map[string]any
}

var parityWho = []parityUser{
	{name: "bare"},
	{name: "de with attrs", profile: profile.Profile{Locale: "de-AT", Attrs: map[string]any{"tier": "gold"}},
		attrs: map[string]any{"new_price": "9.99", "item_id": "shadowed"}},
	{name: "attrs only", attrs: map[string]any{"new_price": "4.50"}},
}

var parityScripts = []parityScript{
	{name: "no response"},
	{name: "opened early", responses: []parityResponse{{"push_open", time.Hour}}},
	{name: "opened after 3h", responses: []parityResponse{{"push_open", 3 * time.Hour}}},
	{name: "opened after the longest timeout", responses: []parityResponse{{"push_open", 25 * time.Hour}}},
	{name: "opened twice", responses: []parityResponse{{"push_open", time.Hour}, {"push_open", 90 * time.Minute}}},
	{name: "paid while waiting", responses: []parityResponse{{"order_paid", time.Hour}}},
	{name: "chatted while waiting", responses: []parityResponse{{"chat_started", time.Hour}}},
	{name: "opened then paid", responses: []parityResponse{{"push_open", time.Hour}, {"order_paid", 150 * time.Minute}}},
	// Just inside and just outside the timeouts (2h, 24h) and the plain wait (2h). At a deadline
	// exactly the order of the timer and the signal is a race on a real server (under the test
	// clock the timer wins and the response lands at the run's next activity); the dry run counts
	// such a response in, so the table stays a minute off each deadline.
	{name: "opened just before 2h", responses: []parityResponse{{"push_open", 2*time.Hour - time.Minute}}},
	{name: "opened just after 2h", responses: []parityResponse{{"push_open", 2*time.Hour + time.Minute}}},
	{name: "opened just before 24h", responses: []parityResponse{{"push_open", 24*time.Hour - time.Minute}}},
	{name: "opened just after 24h", responses: []parityResponse{{"push_open", 24*time.Hour + time.Minute}}},
	{name: "paid just before 2h", responses: []parityResponse{{"order_paid", 2*time.Hour - time.Minute}}},
	{name: "paid just after 2h", responses: []parityResponse{{"order_paid", 2*time.Hour + time.Minute}}},
	{name: "push refused", failed: []string{"push"}},
	{name: "push refused, opened early", failed: []string{"push"}, responses: []parityResponse{{"push_open", time.Hour}}},
	{name: "every channel refused", failed: []string{"push", "sms", "webhook"}},
}

// TestParity runs every demo journey (and the shapes the demos lack) under every script through
// the reach workflow, with Temporal's test clock and the responses as signals, and through the dry
// run: both must take the same steps, send the same messages on the same channels and end the
// same way. A dry run promises what a real run does.
func TestParity(t *testing.T) {
	for _, j := range parityJourneys(t) {
		for _, sc := range parityScripts {
			for _, user := range parityUsers(t, j) {
				for _, who := range parityWho {
					t.Run(j.ID+"/"+sc.name+"/"+user+"/"+who.name, func(t *testing.T) {
						want := parityWalk(t, j, sc, user, who)
						got := parityWorkflow(t, j, sc, user, who)
						require.Equal(t, want, got, "dry run (want) and workflow (got) disagree")
					})
				}
			}
		}
	}
}

// parityUsers are users that take every path of the journey's splits (u1 alone without one).
func parityUsers(t *testing.T, j journey.Journey) []string {
	t.Helper()
	i := slices.IndexFunc(j.Steps, func(s journey.Step) bool { return s.Split != nil })
	if i < 0 {
		return []string{"u1"}
	}
	var users []string
	seen := map[string]bool{}
	for n := 1; n <= 1000 && len(seen) < len(j.Steps[i].Split.Paths)+1; n++ {
		u := fmt.Sprintf("u%d", n)
		if path, _ := j.Pick(j.Steps[i].Split, j.Steps[i].ID, u); !seen[path] {
			seen[path] = true
			users = append(users, u)
		}
	}
	require.Len(t, seen, len(j.Steps[i].Split.Paths)+1, "a user for every path and the holdout")
	return users
}

const (
	parityItem = "sku-1"
	parityRule = "cart-add"
)

func parityWalk(t *testing.T, j journey.Journey, sc parityScript, user string, who parityUser) parityRun {
	t.Helper()
	in := journey.WalkInput{UserID: user, Failed: sc.failed, Profile: who.profile.Vars(),
		Match: map[string]any{"rule_id": parityRule, "item_id": parityItem, "event_type": "cart_add", "attrs": who.attrs}}
	for _, r := range sc.responses {
		// The dry run counts a response's After from the start of the wait it comes in, the
		// workflow's clock from the run's start: the same for a response in a run's first wait.
		// A later wait (pause's ask, from 2h) sees a response later in the dry run than in the
		// workflow; the table's times put every response in the same wait, or after the same
		// deadline, either way. A script with times for later waits would need WalkResponse to
		// take a time since the start.
		in.Responses = append(in.Responses, journey.WalkResponse{Type: r.typ, After: journey.Duration(r.at)})
	}
	w, err := journey.WalkPath(j, in)
	require.NoError(t, err)
	var out parityRun
	for _, s := range w.Steps {
		switch {
		case s.Kind == journey.KindGoal:
			continue // the step the run was at is the one before
		case s.Kind == journey.KindSend && s.Outcome != "sent" && !strings.HasPrefix(s.Outcome, "fallback to "):
			out.Steps = append(out.Steps, s.Step)
			continue
		case s.Kind == journey.KindSend:
			out.Sent = append(out.Sent, s.Channel)
			out.Messages = append(out.Messages, s.Title+"|"+s.Body)
		}
		out.Steps = append(out.Steps, s.Step)
	}
	out.Status = w.Status
	return out
}

func parityWorkflow(t *testing.T, j journey.Journey, sc parityScript, user string, who parityUser) parityRun {
	t.Helper()
	p := who.profile
	p.UserID = user
	h := journeyHarness(t, j, p)
	var out parityRun
	h.env.OnActivity(a.Dispatch, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DispatchInput) (channel.Result, error) {
			if slices.Contains(sc.failed, in.Channel) {
				return channel.Result{Status: 400}, temporal.NewNonRetryableApplicationError("refused",
					activities.ErrTypePermanentDispatch, nil)
			}
			title, body, err := in.Template.Render(p.Locale, in.Fields) // as the activity renders
			require.NoError(t, err)
			out.Sent = append(out.Sent, in.Channel)
			out.Messages = append(out.Messages, title+"|"+body)
			return channel.Result{Status: 200}, nil
		}).Maybe()
	listened := j.ResponseEvents()
	for i, r := range sc.responses {
		if !slices.Contains(listened, r.typ) {
			continue // the CEP stage routes to a run only what its journey listens for
		}
		resp := workflows.Response{EventID: fmt.Sprintf("r%d", i+1), Type: r.typ, At: h.env.Now().Add(r.at)}
		h.signalAt(r.at, workflows.SignalResponse, resp)
	}
	var end workflows.State
	in := testInput()
	in.Match.UserID, in.Match.JourneyID, in.Match.ItemID, in.Match.RuleID = user, j.ID, parityItem, parityRule
	in.Match.Attrs = who.attrs
	res, _ := h.run(in)
	require.NoError(t, h.env.GetWorkflowError())
	v, err := h.env.QueryWorkflow(workflows.QueryState)
	require.NoError(t, err)
	require.NoError(t, v.Get(&end))

	for _, s := range end.Steps {
		name, _, fallback := strings.Cut(s.Step, "/")
		switch {
		case s.Kind == journey.KindGoal:
			// The goal's record names the step the run was at: a wait it interrupted took no
			// record of its own.
			if n := len(out.Steps); n == 0 || trimVisit(out.Steps[n-1]) != s.Step {
				out.Steps = append(out.Steps, visitName(end, s.Step))
			}
			continue
		case fallback && len(out.Steps) > 0 && out.Steps[len(out.Steps)-1] == name:
			continue // the fallback attempt of the same step
		}
		out.Steps = append(out.Steps, name)
	}
	out.Status = res.Status
	return out
}

func trimVisit(name string) string {
	id, _, _ := strings.Cut(name, "#")
	return id
}

// visitName is the name of the latest visit of step id.
func visitName(st workflows.State, id string) string {
	if n := st.Visits[id]; n > 1 {
		return fmt.Sprintf("%s#%d", id, n)
	}
	return id
}
