package workflows_test

import (
	"context"
	"fmt"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/workflows"
)

// journeyHarness runs one journey with every filter passing and every send accepted unless the
// test says otherwise.
func journeyHarness(t *testing.T, j journey.Journey, p profile.Profile) *harness {
	t.Helper()
	require.NoError(t, journey.Validate(j, journey.Catalog{Channels: []string{"push", "sms", "webhook"}}))
	if j.Version == 0 {
		j.Version = 1
	}
	if p.UserID == "" {
		p.UserID = "u1"
	}
	h := newHarness(t)
	h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(activities.RouteResult{Journey: j, Profile: p}, nil).Once()
	h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil).Maybe()
	return h
}

func (h *harness) run(in workflows.ReachInput) (workflows.ReachResult, time.Duration) {
	start := h.env.Now()
	h.env.ExecuteWorkflow(workflows.ReachWorkflow, in)
	var res workflows.ReachResult
	if h.env.GetWorkflowError() == nil {
		_ = h.env.GetWorkflowResult(&res)
	}
	return res, h.env.Now().Sub(start)
}

func (h *harness) signalAt(d time.Duration, name string, arg any) {
	h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(name, arg) }, d)
}

func (h *harness) sentChannels() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, d := range h.dispatch {
		out = append(out, d.Channel)
	}
	return out
}

func response(id, typ string) workflows.Response {
	return workflows.Response{EventID: id, Type: typ, At: time.Date(2026, 11, 24, 11, 0, 0, 0, time.UTC)}
}

func retarget() journey.Journey { return demoJourney("cart-retarget") }

func withRetargetInput() workflows.ReachInput {
	in := testInput()
	in.Match.JourneyID = "cart-retarget"
	return in
}

func TestRetargetPushOpened(t *testing.T) {
	h := journeyHarness(t, retarget(), profile.Profile{})
	h.onDispatch(channel.Result{ProviderMessageID: "m", Status: 200}, nil)
	var mid workflows.State
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(workflows.QueryState)
		require.NoError(t, err)
		require.NoError(t, v.Get(&mid))
	}, time.Hour)
	h.signalAt(2*time.Hour, workflows.SignalResponse, response("open-1", "push_open"))
	// A redelivered signal changes nothing.
	h.signalAt(2*time.Hour+time.Second, workflows.SignalResponse, response("open-1", "push_open"))

	res, elapsed := h.run(withRetargetInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, []string{"push"}, h.sentChannels())
	require.Less(t, elapsed, 3*time.Hour, "ended when the push was opened, not at the timeout")
	require.Equal(t, []string{"match:matched", "route:routed", "push:filtered", "push:dispatched",
		"wait_open:waiting", "wait_open:responded", "end:completed"}, trail(h.records()))

	require.Equal(t, "wait_open", mid.Current)
	require.Equal(t, workflows.StatusWaiting, mid.Status)
	require.Len(t, mid.Steps, 1)
	require.Equal(t, workflows.StepRecord{Step: "push", Kind: "send", Outcome: "sent", Detail: "push: provider 200 m", At: mid.Steps[0].At}, mid.Steps[0])
	require.Contains(t, h.statuses, workflows.StatusWaiting)
	require.Equal(t, workflows.StatusSent, h.statuses[len(h.statuses)-1])
	require.Equal(t, "push", h.channels[len(h.channels)-1])

	require.Len(t, h.registered, 1)
	require.Equal(t, []string{"order_paid", "push_open"}, h.registered[0].Events)
	require.Equal(t, 1, h.unregistered, "the run leaves the open-reach index when it ends")
}

// TestWaitingRecord: a wait begins with a waiting record saying for what and until when, written
// before the run blocks (with the send before it); a run whose input predates it (Rev
// unset: started before the release) writes none, as it ran.
func TestWaitingRecord(t *testing.T) {
	h := journeyHarness(t, retarget(), profile.Profile{})
	h.onDispatch(channel.Result{Status: 200}, nil)
	var atWait []string
	h.env.RegisterDelayedCallback(func() { atWait = trail(h.records()) }, time.Hour)
	_, _ = h.run(withRetargetInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, []string{"match:matched", "route:routed", "push:filtered", "push:dispatched", "wait_open:waiting"}, atWait,
		"written before the run blocks")
	var waiting audit.Record
	for _, r := range h.records() {
		if r.Kind == audit.KindWaiting {
			waiting = r
		}
	}
	require.Equal(t, "waiting", waiting.Outcome)
	require.Regexp(t, `^wait up to 24h for push_open \(step wait_open\), until \d{4}-\d\d-\d\dT`, waiting.Reason)

	old := journeyHarness(t, retarget(), profile.Profile{})
	old.onDispatch(channel.Result{Status: 200}, nil)
	in := withRetargetInput()
	in.Rev = 0
	_, _ = old.run(in)
	require.NoError(t, old.env.GetWorkflowError())
	require.NotContains(t, trail(old.records()), "wait_open:waiting")
	require.Contains(t, trail(old.records()), "wait_open:timed_out")
}

func TestRetargetNoResponseSendsSMSAfterTimeout(t *testing.T) {
	h := journeyHarness(t, retarget(), profile.Profile{})
	h.onDispatch(channel.Result{Status: 200}, nil)

	res, elapsed := h.run(withRetargetInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, 2, res.Sent)
	require.Equal(t, []string{"push", "sms"}, h.sentChannels())
	require.GreaterOrEqual(t, elapsed, 24*time.Hour, "the 24h timeout ran (skipped, not slept)")
	require.Equal(t, []string{"match:matched", "route:routed", "push:filtered", "push:dispatched",
		"wait_open:waiting", "wait_open:timed_out", "sms:filtered", "sms:dispatched", "end:completed"}, trail(h.records()))
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Equal(t, testReachID+"/push/push", h.dispatch[0].Message.IdempotencyKey)
	require.Equal(t, testReachID+"/sms/sms", h.dispatch[1].Message.IdempotencyKey)
	require.Equal(t, "sms", h.channels[len(h.channels)-1])
}

// A response that comes before the wait starts (the user opened the push at once) counts.
func TestResponseBeforeWaitCounts(t *testing.T) {
	h := journeyHarness(t, retarget(), profile.Profile{})
	h.onDispatch(channel.Result{Status: 200}, nil).After(time.Minute)
	h.signalAt(10*time.Second, workflows.SignalResponse, response("open-1", "push_open"))

	res, _ := h.run(withRetargetInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, []string{"push"}, h.sentChannels())
}

// A response after the timeout does not undo the timeout path; it is kept in the state.
func TestResponseAfterTimeout(t *testing.T) {
	j := journey.Journey{ID: "late", Templates: map[string]journey.Template{"t": {Body: "hi"}}, Steps: []journey.Step{
		{ID: "w", WaitFor: &journey.WaitFor{Events: []string{"chat_started"}, Timeout: journey.Duration(time.Hour), Then: "yes", OnTimeout: "pause"}},
		{ID: "pause", Wait: &journey.Wait{For: journey.Duration(2 * time.Hour)}, Next: "no"},
		{ID: "yes", Exit: &journey.Exit{Reason: "chatted"}},
		{ID: "no", Send: &journey.Send{Channel: "push", Template: "t"}},
	}}
	h := journeyHarness(t, j, profile.Profile{})
	h.onDispatch(channel.Result{Status: 200}, nil)
	h.signalAt(90*time.Minute, workflows.SignalResponse, response("chat-1", "chat_started"))
	var end workflows.State
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(workflows.QueryState)
		require.NoError(t, err)
		require.NoError(t, v.Get(&end))
	}, 2*time.Hour+30*time.Minute)

	res, _ := h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, []string{"push"}, h.sentChannels())
	require.Equal(t, []string{"match:matched", "route:routed", "w:waiting", "w:timed_out", "pause:waiting", "pause:waited", "no:filtered", "no:dispatched", "end:completed"}, trail(h.records()))
	require.Len(t, end.Responses, 1)
	require.False(t, end.Responses[0].Consumed)
}

func threeDayJourney() journey.Journey {
	return journey.Journey{ID: "slow", Templates: map[string]journey.Template{"t": {Body: "hi"}}, Steps: []journey.Step{
		{ID: "first", Send: &journey.Send{Channel: "push", Template: "t"}},
		{ID: "pause", Wait: &journey.Wait{For: journey.Duration(72 * time.Hour)}},
		{ID: "second", Send: &journey.Send{Channel: "sms", Template: "t"}},
		{ID: "paid", Goal: &journey.Goal{Events: []string{"order_paid"}}},
	}}
}

func TestThreeDayWait(t *testing.T) {
	h := journeyHarness(t, threeDayJourney(), profile.Profile{})
	h.onDispatch(channel.Result{Status: 200}, nil)
	res, elapsed := h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, []string{"push", "sms"}, h.sentChannels())
	require.GreaterOrEqual(t, elapsed, 72*time.Hour)
	require.Contains(t, trail(h.records()), "pause:waited")
}

func TestGoalMidWaitConverts(t *testing.T) {
	h := journeyHarness(t, threeDayJourney(), profile.Profile{})
	h.onDispatch(channel.Result{Status: 200}, nil)
	h.signalAt(24*time.Hour, workflows.SignalResponse, response("pay-1", "order_paid"))

	res, elapsed := h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusConverted, res.Status)
	require.Contains(t, res.Reason, "goal order_paid (event pay-1) at step pause")
	require.Equal(t, []string{"push"}, h.sentChannels())
	require.Less(t, elapsed, 25*time.Hour)
	require.Equal(t, []string{"match:matched", "route:routed", "first:filtered", "first:dispatched", "pause:waiting", "goal:converted", "end:completed"}, trail(h.records()))
	require.Equal(t, workflows.StatusConverted, h.statuses[len(h.statuses)-1])
}

func TestCancelMidWait(t *testing.T) {
	h := journeyHarness(t, threeDayJourney(), profile.Profile{})
	h.onDispatch(channel.Result{Status: 200}, nil)
	h.signalAt(time.Hour, workflows.SignalCancel, workflows.CancelSignal{Reason: "user deleted the account"})

	res, elapsed := h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusCancelled, res.Status)
	require.Equal(t, "user deleted the account", res.Reason)
	require.Equal(t, []string{"push"}, h.sentChannels())
	require.Less(t, elapsed, 2*time.Hour)
	recs := h.records()
	require.Equal(t, "end:cancelled", trail(recs)[len(recs)-1])
	require.Equal(t, "user deleted the account", recs[len(recs)-1].Reason)
	require.Equal(t, 1, h.unregistered, "cleanup ran")
	require.Equal(t, workflows.StatusCancelled, h.statuses[len(h.statuses)-1])
}

func TestFallbackOnPermanentFailure(t *testing.T) {
	h := journeyHarness(t, retarget(), profile.Profile{})
	permanent := temporal.NewNonRetryableApplicationError("no push token", activities.ErrTypePermanentDispatch, nil)
	h.env.OnActivity(a.Dispatch, mock.Anything, mock.MatchedBy(func(in activities.DispatchInput) bool { return in.Channel == "push" })).
		Return(channel.Result{Status: 400}, permanent).Once()
	h.env.OnActivity(a.Dispatch, mock.Anything, mock.MatchedBy(func(in activities.DispatchInput) bool { return in.Channel == "sms" })).
		Return(channel.Result{Status: 200}, nil)
	h.signalAt(time.Hour, workflows.SignalResponse, response("open-1", "push_open"))

	res, _ := h.run(withRetargetInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, "sms", res.Channel)
	require.Equal(t, []string{"match:matched", "route:routed", "push:filtered", "push:failed", "push/sms:filtered",
		"push/sms:dispatched", "wait_open:waiting", "wait_open:responded", "end:completed"}, trail(h.records()))
	require.Len(t, h.released, 1, "the failed push's reservation went back")
}

func TestBranchOnProfile(t *testing.T) {
	j := journey.Journey{ID: "tiers", Templates: map[string]journey.Template{"gold": {Body: "gold"}, "std": {Body: "std"}}, Steps: []journey.Step{
		{ID: "which", Branch: &journey.Branch{Cases: []journey.Case{{When: `profile.attrs.tier == "gold"`, Next: "vip"}}, Else: "plain"}},
		{ID: "vip", Send: &journey.Send{Channel: "push", Template: "gold"}, Next: journey.End},
		{ID: "plain", Send: &journey.Send{Channel: "sms", Template: "std"}},
	}}
	for tier, want := range map[string]string{"gold": "push", "silver": "sms", "": "sms"} {
		t.Run("tier "+tier, func(t *testing.T) {
			p := profile.Profile{UserID: "u1"}
			if tier != "" {
				p.Attrs = map[string]any{"tier": tier}
			}
			h := journeyHarness(t, j, p)
			h.onDispatch(channel.Result{Status: 200}, nil)
			res, _ := h.run(testInput())
			require.NoError(t, h.env.GetWorkflowError())
			require.Equal(t, workflows.StatusSent, res.Status)
			require.Equal(t, []string{want}, h.sentChannels())
			require.Contains(t, trail(h.records()), "which:branched")
		})
	}
}

func TestWaitUntilLocalTime(t *testing.T) {
	j := journey.Journey{ID: "morning", Templates: map[string]journey.Template{"t": {Body: "good morning"}}, Steps: []journey.Step{
		{ID: "nine", Wait: &journey.Wait{Until: "09:00"}},
		{ID: "send", Send: &journey.Send{Channel: "push", Template: "t"}},
	}}
	h := journeyHarness(t, j, profile.Profile{UserID: "u1", TimeZone: "Asia/Tokyo"})
	h.env.SetStartTime(time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)) // 23:00 in Tokyo
	var sentAt time.Time
	h.env.OnActivity(a.Dispatch, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ activities.DispatchInput) (channel.Result, error) {
		sentAt = h.env.Now()
		return channel.Result{Status: 200}, nil
	})
	_, _ = h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	require.Equal(t, time.Date(2026, 11, 25, 9, 0, 0, 0, tokyo), sentAt.In(tokyo).Truncate(time.Minute))
}

func TestWaitUntilBestHour(t *testing.T) {
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	for _, tc := range []struct {
		name   string
		best   activities.BestHourResult
		err    error
		sendAt int // hour of the day in Tokyo
		reason string
	}{
		{"the user's best hour", activities.BestHourResult{Hour: 19, Opens: 5, Read: 8}, nil, 19, "5 of the user's last 8 opens were at 19:xx"},
		{"too little history: the fallback", activities.BestHourResult{Hour: -1, Read: 2}, nil, 10, "the fallback, 2 opens in 90 days, fewer than 3"},
		{"history unreadable: the fallback", activities.BestHourResult{}, temporal.NewNonRetryableApplicationError("down", "Down", nil), 10, "the open history was unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := journey.Journey{ID: "best", Templates: map[string]journey.Template{"t": {Body: "a deal for you"}}, Steps: []journey.Step{
				{ID: "best", Wait: &journey.Wait{Until: journey.BestHour, Fallback: "10:00"}},
				{ID: "send", Send: &journey.Send{Channel: "push", Template: "t"}},
			}}
			h := journeyHarness(t, j, profile.Profile{UserID: "u1", TimeZone: "Asia/Tokyo"})
			h.env.SetStartTime(time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)) // 23:00 in Tokyo
			var asked activities.BestHourInput
			h.env.OnActivity(a.BestHour, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.BestHourInput) (activities.BestHourResult, error) {
				asked = in
				return tc.best, tc.err
			})
			var sentAt time.Time
			h.env.OnActivity(a.Dispatch, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ activities.DispatchInput) (channel.Result, error) {
				sentAt = h.env.Now()
				return channel.Result{Status: 200}, nil
			})
			_, _ = h.run(testInput())
			require.NoError(t, h.env.GetWorkflowError())
			require.Equal(t, activities.BestHourInput{UserID: "u1", TimeZone: "Asia/Tokyo", Types: []string{"push_open"}}, asked)
			require.Equal(t, time.Date(2026, 11, 25, tc.sendAt, 0, 0, 0, tokyo), sentAt.In(tokyo).Truncate(time.Minute))
			var waited string
			for _, recs := range h.audits {
				for _, r := range recs {
					if r.Kind == "waited" {
						waited = r.Reason
					}
				}
			}
			require.Contains(t, waited, fmt.Sprintf("wait until %02d:00 Asia/Tokyo", tc.sendAt))
			require.Contains(t, waited, tc.reason, "the trail says how the hour was chosen")
		})
	}
}

func TestMaxOpenRefusesRun(t *testing.T) {
	h := journeyHarness(t, retarget(), profile.Profile{})
	h.maxOpenReached = true
	in := withRetargetInput()
	in.Match.MaxOpen = 2
	res, _ := h.run(in)
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSuppressed, res.Status)
	require.Contains(t, res.Reason, "2 open runs of rule cart-add")
	require.Empty(t, h.sentChannels())
	require.Equal(t, 2, h.registered[0].MaxOpen)
}

// A long journey continues as new with its pinned version, state and unconsumed responses.
func TestContinueAsNew(t *testing.T) {
	j := journey.Journey{ID: "loop", Templates: map[string]journey.Template{"t": {Body: "hi"}}, Steps: []journey.Step{
		{ID: "tick", Wait: &journey.Wait{For: journey.Duration(time.Hour)}},
		{ID: "again", Branch: &journey.Branch{Cases: []journey.Case{{When: `size(responses) > 0`, Next: "send"}}, Else: "tick"}},
		{ID: "send", Send: &journey.Send{Channel: "push", Template: "t"}},
	}}
	h := journeyHarness(t, j, profile.Profile{})
	in := testInput()
	in.MaxSteps = 10
	_, _ = h.run(in)
	err := h.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	var next workflows.ReachInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.Resume)
	require.Equal(t, "loop", next.Resume.Journey.ID)
	require.Equal(t, 1, next.Resume.Journey.Version)
	require.Greater(t, next.Resume.State.Visits["tick"], 2)
	require.Contains(t, []string{"tick", "again"}, next.Resume.State.Current)

	// The continued run picks up where the first stopped, without routing again.
	h2 := newHarness(t)
	h2.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil)
	h2.onDispatch(channel.Result{Status: 200}, nil)
	h2.signalAt(30*time.Minute, workflows.SignalResponse, response("chat-1", "chat_started"))
	res, _ := h2.run(next)
	require.NoError(t, h2.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, []string{"push"}, h2.sentChannels())
	require.NotContains(t, trail(h2.records()), "route:routed")
	visits := next.Resume.State.Visits["tick"]
	require.Contains(t, trail(h2.records()), fmt.Sprintf("tick#%d:waited", visits+1))
}

func splitJourney() journey.Journey {
	return journey.Journey{ID: "ab", Templates: map[string]journey.Template{"a": {Body: "A"}, "b": {Body: "B"}}, Steps: []journey.Step{
		{ID: "ab", Split: &journey.Split{Paths: []journey.Path{{Name: "a", Weight: 45, Next: "send_a"}, {Name: "b", Weight: 45, Next: "send_b"}}, Holdout: 10}},
		{ID: "send_a", Send: &journey.Send{Channel: "push", Template: "a"}, Next: journey.End},
		{ID: "send_b", Send: &journey.Send{Channel: "push", Template: "b"}},
	}}
}

// Split proportions hold within tolerance over many users and the holdout group is never sent.
func TestSplitProportionsAndHoldout(t *testing.T) {
	users := 10000
	if testing.Short() {
		users = 1000
	}
	counts := map[string]int{}
	for i := range users {
		h := journeyHarness(t, splitJourney(), profile.Profile{})
		var tmpl string
		h.env.OnActivity(a.Dispatch, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DispatchInput) (channel.Result, error) {
			tmpl = in.TemplateID
			return channel.Result{Status: 200}, nil
		}).Maybe()
		in := testInput()
		in.Match.UserID = fmt.Sprintf("user-%d", i)
		h.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.ReachID("r", in.Match.UserID, "k")})
		res, _ := h.run(in)
		require.NoError(t, h.env.GetWorkflowError())
		switch res.Status {
		case workflows.StatusCompleted:
			require.Empty(t, tmpl, "holdout user %s was sent something", in.Match.UserID)
			require.Contains(t, res.Reason, "holdout")
			counts["holdout"]++
		case workflows.StatusSent:
			counts[tmpl]++
		default:
			t.Fatalf("user %d: status %s", i, res.Status)
		}
	}
	tol := 0.02
	if testing.Short() {
		tol = 0.05
	}
	for name, want := range map[string]float64{"a": 0.45, "b": 0.45, "holdout": 0.10} {
		got := float64(counts[name]) / float64(users)
		require.InDelta(t, want, got, tol, "share of %s over %d users", name, users)
	}
}

// A goal that comes while the filter chain runs ends the run as converted; nothing is sent and the
// reservation goes back.
func TestGoalDuringFilterSendsNothing(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(activities.RouteResult{Journey: threeDayJourney(), Profile: profile.Profile{UserID: "u1"}}, nil)
	h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil).After(time.Hour)
	h.onDispatch(channel.Result{Status: 200}, nil).Maybe()
	h.signalAt(30*time.Minute, workflows.SignalResponse, response("pay-1", "order_paid"))

	res, _ := h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusConverted, res.Status)
	require.Empty(t, h.sentChannels())
	require.Len(t, h.released, 1)
}

func TestExitIsAudited(t *testing.T) {
	j := journey.Journey{ID: "bye", Steps: []journey.Step{{ID: "done", Exit: &journey.Exit{Reason: "nothing to say"}}}}
	h := journeyHarness(t, j, profile.Profile{})
	res, _ := h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusCompleted, res.Status)
	require.Equal(t, "nothing to say", res.Reason)
	require.Equal(t, []string{"match:matched", "route:routed", "done:exited", "end:completed"}, trail(h.records()))
}

// A user the global control group holds out of a marketing journey is audited held_out and sent
// nothing; the run ends at once.
func TestHeldOutByControlGroup(t *testing.T) {
	j := retarget()
	require.True(t, j.Marketing())
	h := newHarness(t)
	h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(activities.RouteResult{Journey: j,
		Profile: profile.Profile{UserID: "u1"}, HeldOut: true}, nil).Once()
	res, _ := h.run(withRetargetInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusHeldOut, res.Status)
	require.Empty(t, h.sentChannels())
	require.Equal(t, []string{"match:matched", "route:routed", "control:held_out", "end:completed"}, trail(h.records()))
}

// A wait longer than the open-reach entry lives refreshes the entry first, so responses still
// find the run.
func TestLongWaitRefreshesOpenReachEntry(t *testing.T) {
	j := journey.Journey{ID: "long", Templates: map[string]journey.Template{"t": {Body: "hi"}}, Steps: []journey.Step{
		{ID: "w", WaitFor: &journey.WaitFor{Events: []string{"order_paid"}, Timeout: journey.Duration(40 * 24 * time.Hour), OnTimeout: journey.End}},
	}}
	h := journeyHarness(t, j, profile.Profile{})
	res, elapsed := h.run(testInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusCompleted, res.Status)
	require.GreaterOrEqual(t, elapsed, 40*24*time.Hour)
	require.Len(t, h.registered, 2, "registered, then refreshed before the 40-day wait")
	require.True(t, h.registered[1].Until.After(h.registered[1].Now.Add(40*24*time.Hour)))
}

// A send that names no chain runs the rule's; one that names a chain runs its own.
func TestChainFromRuleOrSend(t *testing.T) {
	j := journey.Journey{ID: "chains", Templates: map[string]journey.Template{"t": {Body: "hi"}}, Steps: []journey.Step{
		{ID: "a", Send: &journey.Send{Channel: "push", Template: "t"}},
		{ID: "b", Send: &journey.Send{Channel: "sms", Template: "t", Chain: "whitelisted"}},
	}}
	h := newHarness(t)
	h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(activities.RouteResult{Journey: j, Profile: profile.Profile{UserID: "u1"}}, nil)
	var chains []string
	h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(func(_ context.Context, r filter.Request) (filter.Verdict, error) {
		chains = append(chains, r.Chain)
		return filter.Verdict{Outcome: filter.Pass}, nil
	})
	h.onDispatch(channel.Result{Status: 200}, nil)
	in := testInput()
	in.Match.Chain = "transactional"
	res, _ := h.run(in)
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, workflows.StatusSent, res.Status)
	require.Equal(t, []string{"transactional", "whitelisted"}, chains)
}

// A run that reached the user and whose next send the filter chain drops (the retarget SMS over
// the fatigue cap) ends as sent, on the channel that reached them; one started before the change
// (Rev unset) ends suppressed, as it did.
func TestDropAfterASendEndsSent(t *testing.T) {
	for _, tc := range []struct {
		name        string
		rev         int
		wantStatus  string
		wantChannel string
	}{
		{"now", workflows.CurrentRev, workflows.StatusSent, "push"},
		{"started before", 0, workflows.StatusSuppressed, "sms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(activities.RouteResult{Journey: retarget(), Profile: profile.Profile{UserID: "u1"}}, nil)
			h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(func(_ context.Context, r filter.Request) (filter.Verdict, error) {
				if r.Channel == "sms" {
					return filter.Verdict{Outcome: filter.Drop, Filter: "fatigue", Reason: "3 sends today"}, nil
				}
				return filter.Verdict{Outcome: filter.Pass}, nil
			})
			h.onDispatch(channel.Result{Status: 200}, nil)
			in := withRetargetInput()
			in.Rev = tc.rev
			res, _ := h.run(in)
			require.NoError(t, h.env.GetWorkflowError())
			require.Equal(t, tc.wantStatus, res.Status)
			require.Equal(t, tc.wantChannel, res.Channel)
			require.Equal(t, []string{"push"}, h.sentChannels())
			require.Contains(t, res.Reason, "drop by fatigue: 3 sends today")
			recs := h.records()
			end := recs[len(recs)-1]
			require.Equal(t, "end:completed", trail(recs)[len(recs)-1])
			require.Equal(t, tc.wantStatus, end.Outcome, "the trail's status")
			require.Contains(t, trail(recs), "sms:suppressed", "the dropped send is in the trail either way")
		})
	}
}
