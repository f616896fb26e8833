package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// ownRules shows the stage only this test's rules of the shared store.
type ownRules struct {
	store  *cep.RuleStore
	prefix string
}

func (o ownRules) ActiveRules(ctx context.Context) ([]cep.Rule, error) {
	rs, err := o.store.ActiveRules(ctx)
	var out []cep.Rule
	for _, r := range rs {
		if strings.HasPrefix(r.ID, o.prefix) {
			out = append(out, r)
		}
	}
	return out, err
}

// TestRuleHotReload: a running CEP stage picks up a changed rule, a disabled rule and a shadow
// rule from the store without restart; the shadow rule's matches, and those a re-entry policy
// suppresses, are audited and start nothing.
func TestRuleHotReload(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, p.env.PGURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	store := cep.NewRuleStore(pool, cep.Catalog{Journey: func(id string) bool { return id == "cart-reminder" }})
	ruleID := p.id + "-tier"
	rule := cep.Rule{ID: ruleID, Steps: []cep.Step{{Type: "cart_add", Where: `event.attrs.tier == "gold"`}}, JourneyID: "cart-reminder"}
	a, err := store.Apply(ctx, rule)
	require.NoError(t, err)
	require.Equal(t, cep.Applied{ID: ruleID, Version: 1, Status: "created"}, a)

	// A bad rule is refused with the field named, and nothing is stored.
	bad := rule
	bad.Steps = []cep.Step{{Type: "cart_add", Where: `event.attrs.tier ==`}}
	_, err = store.Apply(ctx, bad)
	require.ErrorContains(t, err, "steps[0].where")
	bad.JourneyID = "no-such-journey"
	bad.Steps = rule.Steps
	_, err = store.Apply(ctx, bad)
	require.ErrorContains(t, err, "journey_id")

	const reload = 200 * time.Millisecond
	st, err := cep.New(cep.Config{
		Brokers: p.env.Brokers, Sarama: saramaConfig(), Group: p.id + "-cep", Topic: p.topic, DLQTopic: p.dlq,
		Redis: p.env.Redis(t), KeyPrefix: p.prefix, RuleSource: ownRules{store, p.id}, ReloadInterval: reload,
		Starter: p.starter(), Unstarted: cep.AuditUnstarted{Store: p.store}, Log: testLogger(t),
	})
	require.NoError(t, err)
	p.run(st)
	u := func(n string) string { return p.id + "-" + n }
	add := func(user, tier string) {
		p.produceEvent(event.Event{EventID: user + "-add", UserID: user, Type: "cart_add", ItemID: "sku", Attrs: map[string]any{"tier": tier}})
	}
	add(u("gold1"), "gold")
	p.waitDeliveries(1)

	// Version 2 matches silver instead; it applies within a few reload intervals.
	rule.Steps[0].Where = `event.attrs.tier == "silver"`
	a, err = store.Apply(ctx, rule)
	require.NoError(t, err)
	require.Equal(t, 2, a.Version)
	a, err = store.Apply(ctx, rule)
	require.NoError(t, err)
	require.Equal(t, "unchanged", a.Status, "apply is idempotent")
	time.Sleep(5 * reload)
	add(u("gold2"), "gold")
	add(u("silver1"), "silver")
	p.waitDeliveries(2)

	// Disabled: nothing more.
	require.NoError(t, store.Disable(ctx, ruleID))
	// A shadow rule records what it would do.
	shadow := cep.Rule{ID: p.id + "-shadow", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: "cart-reminder", Shadow: true}
	_, err = store.Apply(ctx, shadow)
	require.NoError(t, err)
	time.Sleep(5 * reload)
	add(u("silver2"), "silver")
	require.Eventually(t, func() bool {
		rs, _, err := p.store.ListByUser(ctx, u("silver2"), 10, "")
		require.NoError(t, err)
		return len(rs) == 1 && rs[0].Status == "shadow"
	}, 30*time.Second, 100*time.Millisecond, "the shadow match is audited")

	// A rule that reaches a user once: the second match starts nothing, and the audit trail says
	// so, naming the reach that holds the user.
	require.NoError(t, store.Disable(ctx, shadow.ID))
	once := cep.Rule{ID: p.id + "-once", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: "cart-reminder", Reentry: cep.ReentryOnce}
	_, err = store.Apply(ctx, once)
	require.NoError(t, err)
	time.Sleep(5 * reload)
	for _, id := range []string{"first", "second"} {
		p.produceEvent(event.Event{EventID: u("once-") + id, UserID: u("once"), Type: "cart_add", ItemID: "sku"})
	}
	p.waitDeliveries(3)
	var suppressed audit.Reach
	require.Eventually(t, func() bool {
		rs, _, err := p.store.ListByUser(ctx, u("once"), 10, "")
		require.NoError(t, err)
		for _, r := range rs {
			if r.Status == workflows.StatusSuppressed {
				suppressed = r
			}
		}
		return len(rs) == 2 && suppressed.ID != ""
	}, 30*time.Second, 100*time.Millisecond, "the suppressed match is audited")
	require.Equal(t, workflows.ReachID(once.ID, u("once"), u("once-second")), suppressed.ID)
	require.Equal(t, audit.KindSuppressed, suppressed.Records[0].Kind)
	require.Contains(t, suppressed.Records[0].Reason, "reach "+workflows.ReachID(once.ID, u("once"), u("once-first"))+" holds it")
	time.Sleep(time.Second)
	require.Equal(t, map[string]int{u("gold1"): 1, u("silver1"): 1, u("once"): 1}, p.deliveriesByUser())
}
