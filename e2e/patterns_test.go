package e2e_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
)

// TestPatterns: each pattern kind, through Kafka, the CEP stage and Temporal, to one delivery per
// expected user; an absence timer set before a CEP restart fires after it.
func TestPatterns(t *testing.T) {
	p := newPipeline(t)
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
