package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/workflows"
)

// TestPatterns: each pattern kind, through Kafka, the CEP stage and Temporal, to one delivery per
// expected user; an absence timer set before a CEP restart fires after it.
func TestPatterns(t *testing.T) {
	for _, target := range testenv.Require(t).Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			p := newPipeline(t)
			p.rdb = target.Client
			testPatterns(t, p)
		})
	}
}

func testPatterns(t *testing.T, p *pipeline) {
	p.startWorker()
	demo := map[string]cep.Rule{}
	for _, r := range cep.DemoRules() {
		demo[r.ID] = r
	}
	rules := []cep.Rule{
		demo["price-drop-favorited"], // join: favourite, then the item's price drop
		demo["viewed-3x-no-chat"],    // count: 3 views of an item in 10 minutes without a chat
		{ID: "abandoned", Kind: cep.KindAbsence, Steps: []cep.Step{{Type: "cart_add"}},
			Absent: &cep.Step{Type: "order_paid"}, Within: cep.Duration(2 * time.Second), JourneyID: "cart-reminder"},
		{ID: "fav-then-buy", Kind: cep.KindSequence, Steps: []cep.Step{{Type: "favorite"}, {Type: "order_paid"}},
			Within: cep.Duration(time.Hour), JourneyID: "cart-reminder"},
	}
	group := p.id + "-cep"
	stop := p.startCEPWith(group, p.prefix, rules)
	u := func(name string) string { return p.id + "-" + name }
	now := time.Now().UTC()
	at := func(d time.Duration) time.Time { return now.Add(d) }
	item := p.id + "-item"

	// Absence: one abandoned cart, one paid. The CEP stage restarts before the timer is due.
	p.produceEvent(event.Event{EventID: "abandon-1", UserID: u("abandoner"), Type: "cart_add", ItemID: item, TS: at(0)})
	p.produceEvent(event.Event{EventID: "abandon-2", UserID: u("payer"), Type: "cart_add", ItemID: item, TS: at(0)})
	p.produceEvent(event.Event{EventID: "abandon-3", UserID: u("payer"), Type: "order_paid", ItemID: item, TS: at(time.Second)})
	p.waitCaughtUp(group)
	stop()
	p.startCEPWith(group, p.prefix, rules)

	// Join: two users favourite the item, another user an other item; the item's price drops.
	p.produceEvent(event.Event{EventID: "fav-1", UserID: u("fan1"), Type: "favorite", ItemID: item, TS: at(0)})
	p.produceEvent(event.Event{EventID: "fav-2", UserID: u("fan2"), Type: "favorite", ItemID: item, TS: at(0)})
	p.produceEvent(event.Event{EventID: "fav-3", UserID: u("other"), Type: "favorite", ItemID: item + "-x", TS: at(0)})
	p.produceEvent(event.Event{EventID: "drop-1", Type: "price_drop", ItemID: item, TS: at(time.Second),
		Attrs: map[string]any{"new_price": "9.99"}})
	// Count: three views, and three views with a chat in between.
	for i, id := range []string{"v1", "v2", "v3"} {
		p.produceEvent(event.Event{EventID: id, UserID: u("viewer"), Type: "view", ItemID: item, TS: at(time.Duration(i) * time.Second)})
	}
	p.produceEvent(event.Event{EventID: "w1", UserID: u("chatter"), Type: "view", ItemID: item, TS: at(0)})
	p.produceEvent(event.Event{EventID: "w2", UserID: u("chatter"), Type: "chat_started", ItemID: item, TS: at(time.Second)})
	p.produceEvent(event.Event{EventID: "w3", UserID: u("chatter"), Type: "view", ItemID: item, TS: at(2 * time.Second)})
	p.produceEvent(event.Event{EventID: "w4", UserID: u("chatter"), Type: "view", ItemID: item, TS: at(3 * time.Second)})
	// Sequence: favourite then buy.
	p.produceEvent(event.Event{EventID: "seq-1", UserID: u("buyer"), Type: "favorite", ItemID: item + "-y", TS: at(0)})
	p.produceEvent(event.Event{EventID: "seq-2", UserID: u("buyer"), Type: "order_paid", ItemID: item + "-y", TS: at(time.Minute)})

	want := map[string]int{u("abandoner"): 1, u("fan1"): 1, u("fan2"): 1, u("viewer"): 1, u("buyer"): 1}
	p.waitDeliveries(len(want))
	time.Sleep(2500 * time.Millisecond) // a wrong absence match would have fired by now
	require.Equal(t, want, p.deliveriesByUser())
	templates := map[string]string{}
	for _, d := range p.receiver.Deliveries() {
		templates[d.Message.UserID] = d.Message.Template
		require.Contains(t, d.IdempotencyKey, "reach/")
	}
	require.Equal(t, "price_drop_v1", templates[u("fan1")])
	require.Equal(t, "chat_nudge_v1", templates[u("viewer")])
	require.Equal(t, "cart_reminder_v1", templates[u("abandoner")])
	for _, d := range p.receiver.Deliveries() {
		if d.Message.UserID == u("fan1") {
			require.Equal(t, "The item "+item+" you favourited is cheaper now: 9.99.", d.Message.Body)
		}
	}
}

// TestAbsenceDecidedInEventTime: a CEP replica that starts far behind a backlog (half an hour of
// carts, payments and browsing, read in small batches) reaches the users who did not pay and
// nobody who did: a payment still waiting in the backlog beats the timer of its cart, because
// timers fire on the partition's watermark, not on the wall clock.
func TestAbsenceDecidedInEventTime(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	rule := cep.Rule{ID: "abandoned", Kind: cep.KindAbsence, Key: "user+item", Steps: []cep.Step{{Type: "cart_add"}},
		Absent: &cep.Step{Type: "order_paid"}, Within: cep.Duration(30 * time.Minute), JourneyID: "cart-reminder"}
	start := time.Now().UTC().Add(-45 * time.Minute)
	var payers, abandoners []string
	for i := range 8 {
		payer, abandoner := fmt.Sprintf("%s-payer%d", p.id, i), fmt.Sprintf("%s-abandoner%d", p.id, i)
		payers, abandoners = append(payers, payer), append(abandoners, abandoner)
		p.produceEvent(event.Event{EventID: payer + "-add", UserID: payer, Type: "cart_add", ItemID: "sku", TS: start})
		p.produceEvent(event.Event{EventID: abandoner + "-add", UserID: abandoner, Type: "cart_add", ItemID: "sku", TS: start})
	}
	// Browsing all along, every user, up to now; each payer pays 20 minutes into the window.
	for m := 1; m <= 44; m++ {
		at := start.Add(time.Duration(m) * time.Minute)
		for i := range payers {
			if m == 20 {
				p.produceEvent(event.Event{EventID: payers[i] + "-paid", UserID: payers[i], Type: "order_paid", ItemID: "sku", TS: at})
			}
			p.produceEvent(event.Event{EventID: fmt.Sprintf("%s-view%d", payers[i], m), UserID: payers[i], Type: "view", ItemID: "other", TS: at})
			p.produceEvent(event.Event{EventID: fmt.Sprintf("%s-view%d", abandoners[i], m), UserID: abandoners[i], Type: "view", ItemID: "other", TS: at})
		}
	}
	group := p.id + "-cep"
	p.startCEPConfig(group, p.prefix, []cep.Rule{rule}, func(c *cep.Config) { c.BatchSize = 4 })
	p.waitDeliveries(len(abandoners))
	p.waitCaughtUp(group)
	time.Sleep(time.Second) // a wrong absence would have fired by now
	got := p.deliveriesByUser()
	want := map[string]int{}
	for _, u := range abandoners {
		want[u] = 1
	}
	require.Equal(t, want, got, "every abandoner once, no payer")
}

// TestStaleMatchesStartNothing: a cart_add that happened three days before Kafka took it (a
// producer's clock or buffer that far behind) still advances the patterns, but neither the match
// it completes nor the absence it arms, which falls due at once, starts a reach: both are audited
// as suppressed, stale, saying why. A fresh cart_add beside it is reached. Found from outside: an
// event dated 1971 sent a message.
func TestStaleMatchesStartNothing(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	ctx := context.Background()
	single := cep.Rule{ID: p.id + "-cart", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: "cart-reminder"}
	absence := cep.Rule{ID: p.id + "-abandoned", Kind: cep.KindAbsence, Steps: []cep.Step{{Type: "cart_add"}},
		Absent: &cep.Step{Type: "order_paid"}, Within: cep.Duration(30 * time.Minute), JourneyID: "cart-reminder"}
	old, fresh := p.id+"-old", p.id+"-fresh"
	p.produceEvent(event.Event{EventID: old + "-add", UserID: old, Type: "cart_add", ItemID: "sku", TS: time.Now().Add(-72 * time.Hour).UTC()})
	p.produceEvent(event.Event{EventID: fresh + "-add", UserID: fresh, Type: "cart_add", ItemID: "sku"})
	p.startCEPConfig(p.id+"-cep", p.prefix, []cep.Rule{single, absence}, func(c *cep.Config) {
		c.Unstarted = cep.AuditUnstarted{Store: p.store}
	})
	p.waitDeliveries(1)
	reasons := map[string]string{}
	require.Eventually(t, func() bool {
		rs, _, err := p.store.ListByUser(ctx, old, 10, "")
		require.NoError(t, err)
		for _, r := range rs {
			if r.Status == workflows.StatusSuppressed && len(r.Records) == 2 {
				reasons[r.RuleID] = r.Records[0].Reason
				require.Equal(t, r.Records[0].Reason, r.Records[1].Reason, "the run's end says the same, not re-entry")
			}
		}
		return len(reasons) == 2
	}, 30*time.Second, 100*time.Millisecond, "both stale matches are audited")
	require.Contains(t, reasons[single.ID], "stale: its event happened 72h0m0s before Kafka took it, more than 24h0m0s")
	require.Contains(t, reasons[absence.ID], "stale: the absence fell due")
	time.Sleep(time.Second)
	require.Equal(t, map[string]int{fresh: 1}, p.deliveriesByUser(), "the fresh cart only")
}

// unsoldRule is an absence keyed on the item: a cart_add, then no order_paid of the item by anyone
// within 30 minutes. Its state is shared in Redis, its timers fire on the group's watermark.
func unsoldRule() cep.Rule {
	return cep.Rule{ID: "unsold", Kind: cep.KindAbsence, Key: "item", Steps: []cep.Step{{Type: "cart_add"}},
		Absent: &cep.Step{Type: "order_paid"}, Within: cep.Duration(30 * time.Minute), JourneyID: "cart-reminder"}
}

// TestSharedAbsenceDecidedInEventTime: an absence keyed on the item (its state shared in Redis: the
// item's cart_add and order_paid come from different users, on different partitions) is decided
// on the group's watermark. A replica starts behind a 45-minute backlog: sixteen carts, then one
// shopper's 8,000 views over the 45 minutes, among which, 20 minutes in, the shopper buys the
// items of half the carts. Every cart's timer is due 15 minutes before the wall clock from the
// moment the cart is read, long before the shopper's partition reaches the purchases, yet only the
// unpaid items' carts are reached.
func TestSharedAbsenceDecidedInEventTime(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	start := time.Now().UTC().Add(-45 * time.Minute)
	sku := func(i int) string { return fmt.Sprintf("%s-sku%d", p.id, i) }
	var evs []event.Event
	want := map[string]int{}
	for i := range 16 {
		u := fmt.Sprintf("%s-cart%d", p.id, i)
		if i%2 == 1 {
			want[u] = 1 // nobody buys its item
		}
		evs = append(evs, event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: sku(i), TS: start})
	}
	shopper := p.id + "-shopper"
	const views = 8000
	for v := range views {
		at := start.Add(time.Duration(v) * 44 * time.Minute / views)
		if v == views*20/44 {
			for i := 0; i < 16; i += 2 {
				evs = append(evs, event.Event{EventID: fmt.Sprintf("%s-paid%d", shopper, i), UserID: shopper, Type: "order_paid", ItemID: sku(i), TS: at})
			}
		}
		evs = append(evs, event.Event{EventID: fmt.Sprintf("%s-view%d", shopper, v), UserID: shopper, Type: "view", ItemID: "other", TS: at})
	}
	msgs := make([]*sarama.ProducerMessage, len(evs))
	for i, ev := range evs {
		b, err := ev.Encode()
		require.NoError(t, err)
		msgs[i] = &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(ev.Key()), Value: sarama.ByteEncoder(b)}
	}
	require.NoError(t, p.producer.SendMessages(msgs))
	group := p.id + "-cep"
	p.startCEPConfig(group, p.prefix, []cep.Rule{unsoldRule()}, func(c *cep.Config) { c.BatchSize = 4; c.TimerInterval = 10 * time.Millisecond })
	p.waitDeliveries(len(want))
	p.waitCaughtUp(group)
	time.Sleep(time.Second) // a wrong absence would have fired by now
	require.Equal(t, want, p.deliveriesByUser(), "every unpaid item's cart once, no paid one's")
}

// TestSharedAbsenceBesideEmptyPartitions: the group's watermark needs every partition's; three of
// the topic's four never hold a record, and their replica publishes theirs from the wall clock, so
// a lone cart, due a minute ago, is still reached.
func TestSharedAbsenceBesideEmptyPartitions(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	u := p.id + "-lone"
	p.produceEvent(event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: p.id + "-sku", TS: time.Now().UTC().Add(-31 * time.Minute)})
	p.startCEPConfig(p.id+"-cep", p.prefix, []cep.Rule{unsoldRule()}, func(c *cep.Config) { c.TimerInterval = 10 * time.Millisecond })
	p.waitDeliveries(1)
	require.Equal(t, map[string]int{u: 1}, p.deliveriesByUser())
}

// TestJoinAcrossReplicas: the join's link events travel on their users' partitions and the trigger
// on its item's, consumed by two replicas of one group; every fan is reached once, including one
// whose favourite (earlier in event time) is produced after the price drop, and nobody who
// favourited after the drop.
func TestJoinAcrossReplicas(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	rules := []cep.Rule{demoRule(t, "price-drop-favorited")}
	group := p.id + "-cep"
	p.startCEPWith(group, p.prefix, rules)
	p.startCEPWith(group, p.prefix, rules)
	item := p.id + "-item"
	now := time.Now().UTC()
	want := map[string]int{}
	for i := range 12 {
		u := fmt.Sprintf("%s-fan%02d", p.id, i)
		want[u] = 1
		p.produceEvent(event.Event{EventID: u + "-fav", UserID: u, Type: "favorite", ItemID: item, TS: now.Add(-time.Minute)})
	}
	p.waitCaughtUp(group)
	p.produceEvent(event.Event{EventID: "drop", Type: "price_drop", ItemID: item, TS: now, Attrs: map[string]any{"new_price": "5"}})
	late := p.id + "-late-fan"
	want[late] = 1
	p.produceEvent(event.Event{EventID: late + "-fav", UserID: late, Type: "favorite", ItemID: item, TS: now.Add(-30 * time.Second)})
	after := p.id + "-after"
	p.produceEvent(event.Event{EventID: after + "-fav", UserID: after, Type: "favorite", ItemID: item, TS: now.Add(time.Minute)})
	p.waitDeliveries(len(want))
	p.waitCaughtUp(group)
	time.Sleep(time.Second)
	require.Equal(t, want, p.deliveriesByUser())
}

// TestMisroutedEventsForwarded: a producer that partitions otherwise than the wire contract (here
// every record on one partition, as a client with another hash or no key may put it) splits a
// user's views over partitions; the stage forwards each to its key's partition, so three views
// still make one count match, reached once.
func TestMisroutedEventsForwarded(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	group := p.id + "-cep"
	p.startCEPWith(group, p.prefix, []cep.Rule{demoRule(t, "viewed-3x-no-chat")})
	sc := saramaConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(p.env.Brokers, sc)
	require.NoError(t, err)
	defer prod.Close()

	var users []string
	for i := range 4 {
		users = append(users, fmt.Sprintf("%s-viewer%d", p.id, i))
	}
	item := p.id + "-item"
	now := time.Now().UTC()
	for n := range 3 {
		for _, u := range users {
			ev := event.Event{EventID: fmt.Sprintf("%s-v%d", u, n), UserID: u, Type: "view", ItemID: item,
				TS: now.Add(time.Duration(n) * time.Second)}
			b, err := ev.Encode()
			require.NoError(t, err)
			var key sarama.Encoder = sarama.StringEncoder(u)
			if n == 1 {
				key = nil // the middle view without a key, as some producers send
			}
			// Every view on partition 0 and, for the third, on partition 1 too: a user whose key
			// hashes elsewhere has each of them forwarded.
			_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: p.topic, Partition: int32(n % 2), Key: key,
				Value: sarama.ByteEncoder(b)})
			require.NoError(t, err)
		}
	}
	want := map[string]int{}
	for _, u := range users {
		want[u] = 1
	}
	p.waitDeliveries(len(users))
	p.waitCaughtUp(group)
	time.Sleep(time.Second)
	require.Equal(t, want, p.deliveriesByUser(), "one reach per user whose three views came in on any partition")
}
