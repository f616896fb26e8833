package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// TestBulkReachesRunBesideFreshOnes is a restart after an outage, end to end: the stage reads a
// backlog of records Kafka took ten minutes ago and fires the absences it left overdue, and
// starts their reaches while no worker runs, as a Temporal that was down, or a stack catching up.
// Then a fresh event comes. Those late reaches are bulk ones (cep.Config.BulkAfter) and start on
// the bulk task queue; the fresh one does not queue behind them: once the worker polls, it is
// delivered among the first, not after the backlog Temporal's queue would serve first (first in,
// first out: on one queue it came after 393-400 of 400). Every user is reached once.
func TestBulkReachesRunBesideFreshOnes(t *testing.T) {
	p := newPipeline(t)
	const late, overdue = 400, 400
	fresh := p.id + "-fresh"
	want := map[string]int{fresh: 1}
	var msgs []*sarama.ProducerMessage
	add := func(ev event.Event, took time.Time) {
		b, err := ev.Encode()
		require.NoError(t, err)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(ev.UserID), Value: sarama.ByteEncoder(b), Timestamp: took})
		want[ev.UserID] = 1
	}
	for i := range late {
		u := fmt.Sprintf("%s-l%d", p.id, i)
		add(event.Event{EventID: u + "-view", UserID: u, Type: "view", ItemID: "sku-1", TS: time.Now().Add(-10 * time.Minute).UTC()},
			time.Now().Add(-10*time.Minute))
	}
	for i := range overdue {
		u := fmt.Sprintf("%s-o%d", p.id, i)
		add(event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: "sku-1", TS: time.Now().Add(-2 * time.Hour).UTC()},
			time.Now().Add(-2*time.Hour))
	}
	require.NoError(t, p.producer.SendMessages(msgs))

	starts := &countingStarter{Starter: p.starter()}
	rules := []cep.Rule{
		{ID: p.id + "-view", Steps: []cep.Step{{Type: "view"}}, JourneyID: "cart-retarget"},
		{ID: p.id + "-abandon", Kind: cep.KindAbsence, Steps: []cep.Step{{Type: "cart_add"}}, Absent: &cep.Step{Type: "order_paid"},
			Within: cep.Duration(time.Hour), JourneyID: "cart-retarget"},
	}
	p.startCEPConfig(p.id+"-cep", p.prefix, rules, func(c *cep.Config) { c.Starter = starts })
	require.Eventually(t, func() bool { return starts.count() == late+overdue }, 60*time.Second, 20*time.Millisecond,
		"the backlog's reaches never all started")
	p.produceEvent(event.Event{EventID: fresh + "-view", UserID: fresh, Type: "view", ItemID: "sku-2"})
	require.Eventually(t, func() bool { return starts.count() == late+overdue+1 }, 30*time.Second, 20*time.Millisecond,
		"the fresh event's reach never started")
	require.Equal(t, []bool{true, true, false}, starts.bulk(p.id+"-l0", p.id+"-o0", fresh),
		"the late record's and the overdue timer's reaches are bulk, the fresh one is not")

	p.startWorker()
	var before int
	require.Eventually(t, func() bool {
		ds := p.receiver.Deliveries()
		before = slices.IndexFunc(ds, func(d channel.Delivery) bool { return d.Message.UserID == fresh })
		return before >= 0
	}, 60*time.Second, 20*time.Millisecond, "the fresh reach was never delivered")
	t.Logf("the fresh reach was delivered after %d of the %d bulk reaches", before, late+overdue)
	// It is typically among the first ten; Temporal has held a fresh task about ten seconds
	// (two runs in twenty on the test stack), still short of the backlog's twenty.
	require.Less(t, before, (late+overdue)/2, "the fresh reach waited behind the bulk reaches")
	p.waitDeliveries(late + overdue + 1)
	time.Sleep(300 * time.Millisecond) // a second delivery would show by now
	require.Equal(t, want, p.deliveriesByUser())
}

// countingStarter starts with its Starter and remembers each match it started.
type countingStarter struct {
	cep.Starter
	mu      sync.Mutex
	started map[string]workflows.Match // by user
}

func (c *countingStarter) Start(ctx context.Context, m workflows.Match) error {
	if err := c.Starter.Start(ctx, m); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started == nil {
		c.started = map[string]workflows.Match{}
	}
	c.started[m.UserID] = m
	return nil
}

func (c *countingStarter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.started)
}

// bulk says whether each user's started match was a bulk one.
func (c *countingStarter) bulk(users ...string) []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]bool, len(users))
	for i, u := range users {
		out[i] = c.started[u].Bulk
	}
	return out
}
