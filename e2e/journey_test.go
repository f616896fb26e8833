package e2e_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/omegareach/omega/activities/plugin"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// TestRetargetJourney runs the retargeting journey (push, wait for push_open, else SMS) on the
// real stack, with its 24h timeout shortened to 3s by the journey's data: a user who opens the push
// (push_open through Kafka, carrying the reach ID) gets the push only; one who does not gets the
// SMS after the timeout; one who pays (order_paid by user, no reach ID) converts the run.
func TestRetargetJourney(t *testing.T) {
	p := newPipeline(t)
	const timeout = 3 * time.Second
	j := retargetWithTimeout(t, timeout)
	journeys, err := journey.NewStatic(worker.Catalog(), j)
	require.NoError(t, err)
	p.startWorkerWith(journeys)
	rule := cep.Rule{ID: p.id + "-cart", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: j.ID}
	p.startCEPWith(p.id+"-cep", p.id, []cep.Rule{rule})

	opener, silent, buyer := p.id+"-opener", p.id+"-silent", p.id+"-buyer"
	for _, u := range []string{opener, silent, buyer} {
		p.produceEvent(event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: "sku-1"})
	}
	push := map[string]channel.Delivery{}
	require.Eventually(t, func() bool {
		for _, d := range p.receiver.Deliveries() {
			if d.Message.Channel == "push" {
				push[d.Message.UserID] = d
			}
		}
		return len(push) == 3
	}, 60*time.Second, 50*time.Millisecond, "a push to each user")
	// While the silent user's run waits for push_open, the audit trail lists it as waiting.
	require.Eventually(t, func() bool {
		rs, _, err := p.store.List(context.Background(), audit.Query{UserID: silent, Status: "waiting", Limit: 10})
		return err == nil && len(rs) == 1 && rs[0].ID == push[silent].Message.ReachID
	}, timeout, 20*time.Millisecond, "the waiting reach is listed as waiting")

	// The opener opens the push: the event names the reach. The buyer pays: routed by user.
	p.produceEvent(event.Event{EventID: opener + "-open", UserID: opener, Type: "push_open",
		Attrs: map[string]any{event.AttrReachID: push[opener].Message.ReachID}})
	p.produceEvent(event.Event{EventID: buyer + "-paid", UserID: buyer, Type: "order_paid", ItemID: "sku-1"})

	tc := p.env.Temporal(t)
	result := func(user string) workflows.ReachResult {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var res workflows.ReachResult
		require.NoError(t, tc.GetWorkflow(ctx, push[user].Message.ReachID, "").Get(ctx, &res))
		return res
	}
	require.Equal(t, workflows.ReachResult{Status: workflows.StatusSent, Channel: "push", Reason: "journey completed", Sent: 1}, result(opener))
	conv := result(buyer)
	require.Equal(t, workflows.StatusConverted, conv.Status)
	require.Contains(t, conv.Reason, "goal order_paid (event "+buyer+"-paid)")
	silentRes := result(silent)
	require.Equal(t, workflows.StatusSent, silentRes.Status)
	require.Equal(t, 2, silentRes.Sent)
	require.Equal(t, "sms", silentRes.Channel)

	byUser := map[string][]channel.Delivery{}
	for _, d := range p.receiver.Deliveries() {
		byUser[d.Message.UserID] = append(byUser[d.Message.UserID], d)
	}
	require.Len(t, byUser[opener], 1, "the opener got the push only")
	require.Len(t, byUser[buyer], 1, "the buyer got the push only")
	require.Len(t, byUser[silent], 2)
	sms := byUser[silent][1]
	require.Equal(t, "sms", sms.Message.Channel)
	require.Equal(t, "Omega: sku-1 is still in your cart. Reply STOP to opt out.", sms.Message.Body)
	require.GreaterOrEqual(t, sms.ReceivedAt.Sub(byUser[silent][0].ReceivedAt), timeout, "the SMS waited for the timeout")

	// The trail says it step by step.
	r, err := p.store.Get(context.Background(), push[silent].Message.ReachID)
	require.NoError(t, err)
	require.Equal(t, []string{"received", "matched", "routed", "filtered", "dispatched", "waiting", "timed_out", "filtered", "dispatched", "completed"}, kinds(r))
	r, err = p.store.Get(context.Background(), push[opener].Message.ReachID)
	require.NoError(t, err)
	require.Equal(t, []string{"received", "matched", "routed", "filtered", "dispatched", "waiting", "responded", "completed"}, kinds(r))

	// The rule's funnel: three matched and sent, one opened, one converted.
	f, err := p.store.Funnel(context.Background(), audit.FunnelQuery{RuleID: rule.ID, From: time.Now().Add(-time.Hour), To: time.Now()})
	require.NoError(t, err)
	require.Equal(t, audit.Funnel{Matched: 3, Sent: 3, Opened: 1, Converted: 1, SuppressedBy: map[string]int64{}}, f)

	// Runs that ended left the open-reach index.
	rdb := p.env.Redis(t)
	for _, u := range []string{opener, silent, buyer} {
		n, err := rdb.Exists(context.Background(), p.prefix+":{"+u+"}:open").Result()
		require.NoError(t, err)
		require.Zero(t, n, "open reaches of %s", u)
	}
}

func retargetWithTimeout(t *testing.T, d time.Duration) journey.Journey {
	t.Helper()
	for _, j := range journey.Demo() {
		if j.ID == "cart-retarget" {
			for i := range j.Steps {
				if j.Steps[i].WaitFor != nil {
					j.Steps[i].WaitFor.Timeout = journey.Duration(d)
				}
			}
			return j
		}
	}
	t.Fatal("no cart-retarget demo journey")
	return journey.Journey{}
}

// TestJourneyVersions: journeys live in PostgreSQL; a run keeps the version it started with while
// a new version, applied meanwhile, applies to the runs that start after it.
func TestJourneyVersions(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	store := journey.NewStore(p.store.Pool(), worker.Catalog())
	p.startWorkerWith(store)

	id := p.id + "-promo"
	v := func(body string) journey.Journey {
		return journey.Journey{ID: id, Templates: map[string]journey.Template{"t": {Body: body}}, Steps: []journey.Step{
			{ID: "pause", Wait: &journey.Wait{For: journey.Duration(3 * time.Second)}},
			{ID: "send", Send: &journey.Send{Channel: "push", Template: "t"}},
		}}
	}
	a, err := store.Apply(ctx, v("first wording"))
	require.NoError(t, err)
	require.Equal(t, journey.Applied{ID: id, Version: 1, Status: "created"}, a)
	a, err = store.Apply(ctx, v("first wording"))
	require.NoError(t, err)
	require.Equal(t, "unchanged", a.Status, "applying the same journey again is a no-op")
	bad := v("x")
	bad.Steps[1].Send.Channel = "pigeon"
	_, err = store.Apply(ctx, bad)
	require.ErrorContains(t, err, `step "send": send.channel: unknown channel "pigeon"`)

	tc := p.env.Temporal(t)
	start := func(user string) string {
		m := workflows.Match{RuleID: workflows.APIRuleID, UserID: user, JourneyID: id, MatchKey: "k", MatchedAt: time.Now()}
		run, err := tc.ExecuteWorkflow(ctx, workflows.StartOptions(m, p.queue), workflows.ReachWorkflow, workflows.NewReachInput(m))
		require.NoError(t, err)
		return run.GetID()
	}
	early := start(p.id + "-early")
	// The early run pins version 1 as it starts; then version 2 is applied.
	require.Eventually(t, func() bool {
		r, err := p.store.Get(ctx, early)
		return err == nil && slices.Contains(kinds(r), "routed")
	}, 30*time.Second, 50*time.Millisecond)
	a, err = store.Apply(ctx, v("second wording"))
	require.NoError(t, err)
	require.Equal(t, 2, a.Version)
	time.Sleep(journey.CacheTTL + 100*time.Millisecond)
	late := start(p.id + "-late")

	for _, rid := range []string{early, late} {
		var res workflows.ReachResult
		require.NoError(t, tc.GetWorkflow(ctx, rid, "").Get(ctx, &res))
		require.Equal(t, workflows.StatusSent, res.Status)
	}
	bodies := map[string]string{}
	for _, d := range p.receiver.Deliveries() {
		bodies[d.Message.ReachID] = d.Message.Body
	}
	require.Equal(t, "first wording", bodies[early], "the run in flight kept version 1")
	require.Equal(t, "second wording", bodies[late])
	r, err := p.store.Get(ctx, early)
	require.NoError(t, err)
	require.Equal(t, "v1", r.Records[1].Outcome, "the routed record names the pinned version")

	// Disabling stops new runs; the error says why.
	require.NoError(t, store.Disable(ctx, id))
	time.Sleep(journey.CacheTTL + 100*time.Millisecond)
	var res workflows.ReachResult
	err = tc.GetWorkflow(ctx, start(p.id+"-after"), "").Get(ctx, &res)
	require.ErrorContains(t, err, "disabled")
}

// trigger starts a journey for user directly (as ReachService.Trigger does) and returns its result.
func (p *pipeline) trigger(user, journeyID, key string) (string, func() workflows.ReachResult) {
	tc := p.env.Temporal(p.t)
	m := workflows.Match{RuleID: workflows.APIRuleID, UserID: user, JourneyID: journeyID, MatchKey: key,
		ItemID: "sku-1", MatchedAt: time.Now().UTC()}
	run, err := tc.ExecuteWorkflow(context.Background(), workflows.StartOptions(m, p.queue), workflows.ReachWorkflow, workflows.NewReachInput(m))
	require.NoError(p.t, err)
	return run.GetID(), func() workflows.ReachResult {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var res workflows.ReachResult
		require.NoError(p.t, run.Get(ctx, &res))
		return res
	}
}

// A user inside the quiet hours is not dropped: the send is deferred to the window's end and goes
// out then. The window is set by configuration a few seconds around now.
func TestQuietHoursDeferThenSend(t *testing.T) {
	p := newPipeline(t)
	now := time.Now().UTC()
	end := now.Add(4 * time.Second).Truncate(time.Second).Add(time.Second)
	p.startWorkerConfig(func(c *worker.Config) {
		c.Settings = c.Settings.With(plugin.Values{"OMEGA_QUIET_HOURS": now.Add(-time.Minute).Format("15:04:05") + "-" + end.Format("15:04:05")})
	})
	user := p.id + "-night"
	id, result := p.trigger(user, "cart-reminder", "k")
	res := result()
	require.Equal(t, workflows.StatusSent, res.Status)
	ds := p.receiver.Deliveries()
	require.Len(t, ds, 1)
	require.False(t, ds[0].ReceivedAt.Before(end), "sent at %s, before the quiet window's end %s", ds[0].ReceivedAt, end)

	r, err := p.store.Get(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, []string{"matched", "routed", "deferred", "filtered", "dispatched", "completed"}, kinds(r))
	require.Equal(t, "defer", r.Records[2].Outcome)
	require.Contains(t, r.Records[2].Reason, "defer by quiet_hours: quiet hours")
	require.Equal(t, "send/recheck1", r.Records[3].Step)
	require.Equal(t, "pass", r.Records[3].Outcome)
}

// A user over the cross-journey cap is suppressed, the reason in the audit; a transactional send
// (its own chain) still goes out.
func TestCrossJourneyCap(t *testing.T) {
	p := newPipeline(t)
	receipt := journey.Journey{ID: "receipt", Templates: map[string]journey.Template{"t": {Body: "your receipt"}}, Steps: []journey.Step{
		{ID: "send", Send: &journey.Send{Channel: "sms", Template: "t", Chain: "transactional", Category: "transactional"}},
	}}
	js, err := journey.NewStatic(worker.Catalog(), append(journey.Demo(), receipt)...)
	require.NoError(t, err)
	p.startWorkerConfig(func(c *worker.Config) {
		c.Journeys, c.Settings = js, c.Settings.With(plugin.Values{"OMEGA_DAILY_CAP": "1"})
	})
	user := p.id + "-busy"

	_, first := p.trigger(user, "cart-reminder", "a")
	require.Equal(t, workflows.StatusSent, first().Status)
	id, second := p.trigger(user, "price-drop", "b")
	res := second()
	require.Equal(t, workflows.StatusSuppressed, res.Status)
	require.Equal(t, "drop by fatigue: fatigue: 1 messages in 24h across all journeys", res.Reason)
	r, err := p.store.Get(context.Background(), id)
	require.NoError(t, err)
	require.Contains(t, kinds(r), "suppressed")
	_, third := p.trigger(user, "receipt", "c")
	require.Equal(t, workflows.StatusSent, third().Status, "the transactional chain has no fatigue cap")
	require.Len(t, p.receiver.Deliveries(), 2)
}
