package e2e_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// TestEventCatalogue: a growth team's own vocabulary, end to end on the real stack. The rule on
// coupon_claimed and the journey waiting for coupon_redeemed (docs/examples/coupons) are refused
// while the catalogue does not declare them, naming the field; `omega events types apply`
// declares them while a CEP stage runs, which picks them up without restart; coupon_claimed
// produced straight to Kafka starts the reminders, coupon_redeemed is routed to the waiting reach
// and ends it, an unanswered one gets the last call; an event of an undeclared type is counted and
// skipped; and Ingest (through `omega api` and `omega events send`) checks the attribute schema,
// naming events[i].attrs.<name>.
func TestEventCatalogue(t *testing.T) {
	p := newPipeline(t)
	bin := omegaBinary(t)
	ctx := context.Background()
	pool := p.store.Pool()
	const dir = "../docs/examples/coupons"

	// A run against a stack this test used before starts from a catalogue without them.
	types := eventtype.NewStore(pool)
	for _, name := range []string{"coupon_claimed", "coupon_redeemed"} {
		if err := types.Disable(ctx, name); err != nil && !errors.Is(err, eventtype.ErrNotFound) {
			require.NoError(t, err)
		}
	}
	catalogue := func() *event.Catalog { // read afresh: no cache between the CLI's writes and the checks
		c, err := eventtype.NewStore(pool).EventTypes(ctx)
		require.NoError(t, err)
		return c
	}
	jcat := worker.Catalog()
	jcat.Events = catalogue
	js, err := journey.Load(dir + "/journeys")
	require.NoError(t, err)
	j := js[0]
	j.ID = p.id + "-coupon-reminder"
	const timeout = 3 * time.Second
	j.Steps[1].WaitFor.Timeout = journey.Duration(timeout)
	rs, err := cep.LoadRules(dir + "/rules")
	require.NoError(t, err)
	rule := rs[0]
	rule.ID, rule.JourneyID = p.id+"-coupon-claimed", j.ID
	rules := cep.NewRuleStore(pool, cep.Catalog{Events: catalogue, Journey: func(id string) bool { return id == j.ID }})

	var je *journey.Error
	require.ErrorAs(t, journey.Validate(j, jcat), &je)
	require.Equal(t, "wait_for.events", je.Field)
	_, err = rules.Apply(ctx, rule)
	var re *cep.RuleError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "steps[0].type", re.Field)

	// The stage runs before the types exist: it learns them by polling, like rules.
	st, err := cep.New(cep.Config{
		Brokers: p.env.Brokers, Sarama: saramaConfig(), Group: p.id + "-cep", Topic: p.topic, DLQTopic: p.dlq,
		Redis: p.redis(), KeyPrefix: p.prefix, ReachPrefix: p.prefix, RuleSource: ownRules{rules, p.id},
		EventTypes: eventtype.NewStore(pool), ReloadInterval: 200 * time.Millisecond, Starter: p.starter(), Log: testLogger(t),
	})
	require.NoError(t, err)
	p.run(st)

	omega := p.omegaCLI(bin)
	out, err := omega(nil, "events", "types", "apply", "-f", dir+"/event-types")
	require.NoError(t, err)
	require.Contains(t, out, "coupon_claimed")
	require.Contains(t, out, "coupon_redeemed")
	out, err = omega(nil, "events", "types", "list")
	require.NoError(t, err)
	require.Regexp(t, `coupon_redeemed\s+\d+\s+user\s+response,goal\s+coupon_id:string!\s+active`, out)
	require.Regexp(t, `push_open\s+0\s+user\s+trigger,response,goal`, out, "the default types are listed")
	out, err = omega(nil, "events", "types", "get", "coupon_claimed")
	require.NoError(t, err)
	require.Contains(t, out, `"required": true`)

	// Declared, the journey and the rule validate and apply.
	journeys, err := journey.NewStatic(jcat, j)
	require.NoError(t, err)
	p.startWorkerWith(journeys)
	_, err = rules.Apply(ctx, rule)
	require.NoError(t, err)

	undeclaredBefore := undeclaredEvents(t)
	redeemer, silent := p.id+"-redeemer", p.id+"-silent"
	claim := func(user, coupon string) {
		p.produceEvent(event.Event{EventID: user + "-claim", UserID: user, Type: "coupon_claimed",
			Attrs: map[string]any{"coupon_id": coupon, "value": 5.0}})
	}
	// The rule may reach the stage a reload after the types: claim until it starts the reminders.
	reminders := map[string]channel.Delivery{}
	require.Eventually(t, func() bool {
		for _, d := range p.receiver.Deliveries() {
			reminders[d.Message.UserID] = d
		}
		if len(reminders) < 2 {
			claim(redeemer, "C-R")
			claim(silent, "C-S")
		}
		return len(reminders) == 2
	}, 60*time.Second, time.Second, "a reminder to each user")
	require.Equal(t, "Coupon C-R is yours: use it at checkout.", reminders[redeemer].Message.Body)
	p.produceEvent(event.Event{EventID: redeemer + "-shared", UserID: redeemer, Type: "coupon_shared"}) // undeclared
	p.produceEvent(event.Event{EventID: redeemer + "-redeem", UserID: redeemer, Type: "coupon_redeemed",
		Attrs: map[string]any{"coupon_id": "C-R"}})

	tc := p.env.Temporal(t)
	result := func(user string) workflows.ReachResult {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		var res workflows.ReachResult
		require.NoError(t, tc.GetWorkflow(ctx, reminders[user].Message.ReachID, "").Get(ctx, &res))
		return res
	}
	require.Equal(t, workflows.ReachResult{Status: workflows.StatusSent, Channel: "webhook", Reason: "journey completed", Sent: 1}, result(redeemer),
		"coupon_redeemed was routed to the reach waiting for it")
	res := result(silent)
	require.Equal(t, 2, res.Sent, "no redemption within the timeout: the last call")
	require.Eventually(t, func() bool { return undeclaredEvents(t) > undeclaredBefore }, 30*time.Second, 100*time.Millisecond,
		"the undeclared coupon_shared is counted")

	// Ingest through `omega api` checks the schema; a valid claim goes through Kafka to a reach.
	addr := p.startAPIProcess(t, bin, "OMEGA_EVENTS_TOPIC="+p.topic)
	key, err := omega(nil, "apikey", "create", "--name", p.id+"-catalogue", "--scopes", "ingest")
	require.NoError(t, err)
	apiEnv := []string{"OMEGA_API_URL=http://" + addr, "OMEGA_API_KEY=" + strings.TrimSpace(key)}
	viaAPI := p.id + "-api"
	for _, tt := range []struct {
		args      []string
		wantField string
	}{
		{[]string{"--type", "coupon_claimed", "--attr", "value=5"}, "events[0].attrs.coupon_id"},
		{[]string{"--type", "coupon_claimed", "--attr", "coupon_id=C-A", "--attr", "value=\"five\""}, "events[0].attrs.value"},
		{[]string{"--type", "coupon_shared"}, "events[0].type"},
	} {
		_, err = omega(apiEnv, append([]string{"events", "send", "--user", viaAPI}, tt.args...)...)
		require.ErrorContains(t, err, "invalid_argument: "+tt.wantField+": ")
	}
	out, err = omega(apiEnv, "events", "send", "--user", viaAPI, "--type", "coupon_claimed", "--attr", "coupon_id=C-A", "--attr", "value=5")
	require.NoError(t, err)
	require.Contains(t, out, "accepted 1 event")
	require.Eventually(t, func() bool {
		for _, d := range p.receiver.Deliveries() {
			if d.Message.UserID == viaAPI {
				return d.Message.Body == "Coupon C-A is yours: use it at checkout."
			}
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "the claim ingested through the API starts a reminder")
}

// undeclaredEvents reads omega_cep_events_total{outcome="undeclared"} of this process's stages.
func undeclaredEvents(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, metrics.EventsConsumed.WithLabelValues("undeclared").Write(&m))
	return m.GetCounter().GetValue()
}
