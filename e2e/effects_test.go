package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/faultproxy"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// gateStarter holds one user's starts until released; the others pass through.
type gateStarter struct {
	cep.Starter
	user    string
	held    chan struct{} // closed when the user's start first arrives
	release chan struct{}
	once    sync.Once
}

func (g *gateStarter) Start(ctx context.Context, m workflows.Match) error {
	if m.UserID == g.user {
		g.once.Do(func() { close(g.held) })
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Starter.Start(ctx, m)
}

// TestSlowStartHoldsNoEvents: a reach whose start hangs (Temporal slow to answer) does not hold
// back the events behind it on its partition: the next user's reach is started and delivered
// meanwhile. Nothing of the partition is committed past the hanging match until its start is
// done, and once released both users are reached once.
func TestSlowStartHoldsNoEvents(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	slow := p.id + "-slow"
	fast := sharingPartition(t, slow, p.id+"-fast")
	gate := &gateStarter{Starter: p.starter(), user: slow, held: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	group := p.id + "-cep"
	p.startCEPConfig(group, p.prefix, []cep.Rule{demoRule(t, "cart-add")}, func(c *cep.Config) { c.Starter = gate })

	p.produceEvent(event.Event{EventID: slow + "-add", UserID: slow, Type: "cart_add", ItemID: "sku-1"})
	select {
	case <-gate.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow user's match never reached the starter")
	}
	p.produceEvent(event.Event{EventID: fast + "-add", UserID: fast, Type: "cart_add", ItemID: "sku-2"})
	require.Eventually(t, func() bool { return p.deliveriesByUser()[fast] == 1 }, 20*time.Second, 20*time.Millisecond,
		"the next user's reach waited for the hanging start")
	require.Zero(t, p.deliveriesByUser()[slow])
	// The slow user's cart_add is its partition's first record: no commit may cover it yet.
	time.Sleep(1500 * time.Millisecond) // past the commit interval and its longest put-off
	require.Zero(t, p.groupOffsets(group)[partitionOf(t, slow)], "the partition was committed past a match not yet started")

	close(gate.release)
	released = true
	p.waitDeliveries(2)
	p.waitCaughtUp(group)
	time.Sleep(500 * time.Millisecond) // a second delivery would show by now
	require.Equal(t, map[string]int{slow: 1, fast: 1}, p.deliveriesByUser())
}

// TestCommitPutOffIsBounded: under a stream whose effects never all land (one start hangs), a
// partition puts its commit off for them, but not past a bounded number of changed instances: it
// stops reading records there, so a commit never carries more than that (the stage's buffers and a
// crash's replay stay bounded), and goes on once the effects land and it has committed.
func TestCommitPutOffIsBounded(t *testing.T) {
	p := newPipeline(t)
	slow := p.id + "-slow"
	count := &recordingStarter{at: map[string]time.Time{}} // starts nothing
	gate := &gateStarter{Starter: count, user: slow, held: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	rules := []cep.Rule{
		{ID: p.id + "-add", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: "cart-retarget"},
		// Every view starts a reach (an effect) and changes an instance (a count per user).
		{ID: p.id + "-view", Steps: []cep.Step{{Type: "view"}}, JourneyID: "cart-retarget"},
		{ID: p.id + "-views", Kind: cep.KindCount, Steps: []cep.Step{{Type: "view"}}, Count: 3,
			Within: cep.Duration(time.Hour), JourneyID: "cart-retarget"},
	}
	// The slow user's cart_add, then 12,000 users' views on its partition, all in the topic before
	// the stage starts: it reads them as fast as it can.
	p.produceEvent(event.Event{EventID: slow + "-add", UserID: slow, Type: "cart_add", ItemID: "sku-1"})
	const viewers = 12_000
	part := partitionOf(t, slow)
	var msgs []*sarama.ProducerMessage
	for i := 0; len(msgs) < viewers; i++ {
		u := fmt.Sprintf("%s-v%d", p.id, i)
		if partitionOf(t, u) != part {
			continue
		}
		ev := event.Event{EventID: u + "-view", UserID: u, Type: "view", ItemID: "sku-2", TS: time.Now().UTC()}
		b, err := ev.Encode()
		require.NoError(t, err)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(u), Value: sarama.ByteEncoder(b)})
	}
	require.NoError(t, p.producer.SendMessages(msgs))
	group := p.id + "-cep"
	p.startCEPConfig(group, p.prefix, rules, func(c *cep.Config) {
		c.Starter = gate
		c.CommitInterval = 10 * time.Millisecond // a commit is due, and put off, almost at once
		c.CommitDelay = time.Minute              // and not forced (waiting for the start) in this test
	})
	select {
	case <-gate.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow user's match never reached the starter")
	}

	// The partition reads on while the commit is put off, up to the bound of changes (and at most
	// a batch past it), then waits for the hanging start: what it has read stays put.
	var read int
	require.Eventually(t, func() bool {
		before := count.users()
		time.Sleep(time.Second)
		read = count.users()
		return read == before && read >= 8192-500
	}, 30*time.Second, 10*time.Millisecond, "the partition stopped short of the bound while the start hung, or kept reading")
	require.Less(t, read, 8192+1000, "the partition read on past the bound of changes a put-off commit may carry")
	require.Zero(t, p.groupOffsets(group)[part], "the partition was committed past a match not yet started")

	holds := holdsObserved(t)
	close(gate.release)
	released = true
	require.Eventually(t, func() bool { return count.users() == viewers+1 }, 30*time.Second, 20*time.Millisecond,
		"every view's match, once the start landed")
	p.waitCaughtUp(group)
	require.Greater(t, holdsObserved(t), holds, "the hold shows in omega_cep_batch_seconds{step=\"hold\"}")
}

// holdsObserved is how many partition holds omega_cep_batch_seconds{step="hold"} has observed.
func holdsObserved(t *testing.T) uint64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "omega_cep_batch_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "step" && l.GetValue() == "hold" {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// proxiedRedis is a client of the stack's Redis through a fault proxy, for a test that takes Redis
// away.
func proxiedRedis(t *testing.T, p *pipeline) (*faultproxy.Proxy, *redis.Client) {
	px, err := faultproxy.Start(p.env.RedisAddr)
	require.NoError(t, err)
	t.Cleanup(px.Close)
	rdb := redis.NewClient(&redis.Options{Addr: px.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return px, rdb
}

// TestUnreachableRedisHoldsNoEvents: a commit Redis does not answer (the state store unreachable
// for a moment) does not hold back the events behind it: the commit is in flight, retried, while
// the partitions read on and start their reaches; nothing is marked for Kafka past what is
// durable, and once Redis answers the commits land and every user was reached once.
func TestUnreachableRedisHoldsNoEvents(t *testing.T) {
	p := newPipeline(t)
	px, rdb := proxiedRedis(t, p)
	count := &recordingStarter{at: map[string]time.Time{}} // starts nothing
	group := p.id + "-cep"
	rule := cep.Rule{ID: p.id + "-add", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: "cart-retarget"}
	p.startCEPConfig(group, p.prefix, []cep.Rule{rule}, func(c *cep.Config) {
		c.Redis, c.Starter = rdb, count
		c.CommitDelay = time.Minute // the partitions read on behind a commit in flight for the whole outage
	})
	add := func(u string) {
		p.produceEvent(event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: "sku-1"})
	}
	add(p.id + "-u0")
	require.Eventually(t, func() bool { return count.users() == 1 }, 30*time.Second, 20*time.Millisecond)
	p.waitCaughtUp(group)
	before := p.groupOffsets(group)

	px.SetDown(true)
	// Waves of users on every partition, each a few commit intervals after the one before: every
	// wave's batch asks for a commit while the one before is still in flight.
	const waves, perWave = 5, 8
	users := 0
	for w := range waves {
		for range perWave {
			users++
			add(fmt.Sprintf("%s-u%d", p.id, users))
		}
		require.Eventually(t, func() bool { return count.users() == users+1 }, 10*time.Second, 20*time.Millisecond,
			"wave %d's reaches waited for Redis to answer a commit", w)
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(time.Second) // past Kafka's auto-commit interval: a mark would show
	require.Equal(t, before, p.groupOffsets(group), "an offset was marked past a commit Redis never took")

	px.SetDown(false)
	p.waitCaughtUp(group)
	require.Equal(t, users+1, count.users())
}

// orderStarter records the order of its starts, each taking a while (a busy Temporal).
type orderStarter struct {
	cep.Starter
	took  time.Duration
	mu    sync.Mutex
	order []string // users, in the order their starts ended
}

func (o *orderStarter) Start(ctx context.Context, m workflows.Match) error {
	time.Sleep(o.took)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.order = append(o.order, m.UserID)
	return nil
}

// startedBefore is how many starts ended before user's first, and whether it has started.
func (o *orderStarter) startedBefore(user string) (int, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := slices.Index(o.order, user)
	return i, i >= 0
}

func (o *orderStarter) counts() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int{}
	for _, u := range o.order {
		out[u]++
	}
	return out
}

// TestOverdueTimersHoldNoFreshEvent: a partition that comes back to thousands of overdue absence
// timers (a restart after a while; here carts added two hours ago, an hour's wait) fires and
// starts them a slice at a time, reading its records between slices: a user's fresh event is
// matched and started while the overdue reaches are still being started, not after all of them.
// Every overdue timer still fires once.
func TestOverdueTimersHoldNoFreshEvent(t *testing.T) {
	p := newPipeline(t)
	fresh := p.id + "-fresh"
	part := partitionOf(t, fresh)
	const overdue = 2000
	var msgs []*sarama.ProducerMessage
	want := map[string]int{fresh: 1}
	for i := 0; len(msgs) < overdue; i++ {
		u := fmt.Sprintf("%s-c%d", p.id, i)
		if partitionOf(t, u) != part {
			continue
		}
		ev := event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: "sku-1", TS: time.Now().Add(-2 * time.Hour).UTC()}
		b, err := ev.Encode()
		require.NoError(t, err)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(u), Value: sarama.ByteEncoder(b)})
		want[u] = 1
	}
	require.NoError(t, p.producer.SendMessages(msgs))
	starts := &orderStarter{took: 10 * time.Millisecond}
	rules := []cep.Rule{
		{ID: p.id + "-abandon", Kind: cep.KindAbsence, Steps: []cep.Step{{Type: "cart_add"}}, Absent: &cep.Step{Type: "order_paid"},
			Within: cep.Duration(time.Hour), JourneyID: "cart-retarget"},
		{ID: p.id + "-view", Steps: []cep.Step{{Type: "view"}}, JourneyID: "cart-retarget"},
	}
	p.startCEPConfig(p.id+"-cep", p.prefix, rules, func(c *cep.Config) {
		c.Starter = starts
		c.StartConcurrency = 2 // 200 starts/s: the overdue reaches take ten seconds to start
	})
	require.Eventually(t, func() bool { return len(starts.counts()) > 0 }, 30*time.Second, 10*time.Millisecond,
		"the overdue timers never fired")
	p.produceEvent(event.Event{EventID: fresh + "-view", UserID: fresh, Type: "view", ItemID: "sku-2"})
	var before int
	require.Eventually(t, func() bool {
		var ok bool
		before, ok = starts.startedBefore(fresh)
		return ok
	}, 60*time.Second, 10*time.Millisecond, "the fresh event's reach never started")
	t.Logf("the fresh reach started after %d of %d overdue reaches", before, overdue)
	require.Less(t, before, overdue/2, "the fresh event's reach waited behind the overdue timers")
	require.Eventually(t, func() bool { return len(starts.counts()) == overdue+1 }, 60*time.Second, 20*time.Millisecond,
		"every overdue timer fires")
	time.Sleep(300 * time.Millisecond) // a second start would show by now
	require.Equal(t, want, starts.counts())
}

// ruleStarter records, per rule, the users whose reaches were started (it starts nothing).
type ruleStarter struct {
	cep.Starter
	mu    sync.Mutex
	users map[string]map[string]bool // rule -> users
}

func (r *ruleStarter) Start(ctx context.Context, m workflows.Match) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users[m.RuleID] == nil {
		r.users[m.RuleID] = map[string]bool{}
	}
	r.users[m.RuleID][m.UserID] = true
	return nil
}

func (r *ruleStarter) count(rule string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.users[rule])
}

// TestSharedStateHoldsNoEvents: a batch's shared part (here a join's links, kept in Redis) is
// completed with the batch's effects, not before its partition goes on. While Redis does not
// answer, users who favourite an item and then add to their cart are reached for the cart at
// once: the partition's own rules wait for nothing of Redis. Once Redis is back, the favourites
// sent meanwhile are in it, in order: a price drop of the item reaches every one of them, and the
// user who unfavourited it after favouriting it is not reached.
func TestSharedStateHoldsNoEvents(t *testing.T) {
	p := newPipeline(t)
	px, rdb := proxiedRedis(t, p)
	st := &ruleStarter{users: map[string]map[string]bool{}}
	group := p.id + "-cep"
	add := cep.Rule{ID: p.id + "-add", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: "cart-retarget"}
	drop := demoRule(t, "price-drop-favorited")
	drop.ID = p.id + "-drop"
	p.startCEPConfig(group, p.prefix, []cep.Rule{add, drop}, func(c *cep.Config) {
		c.Redis, c.Starter = rdb, st
		c.CommitDelay = time.Minute // the partitions read on behind a commit in flight for the whole outage
	})
	item := p.id + "-item"
	now := time.Now().UTC()
	p.produceEvent(event.Event{EventID: "u0-add", UserID: p.id + "-u0", Type: "cart_add", ItemID: item})
	require.Eventually(t, func() bool { return st.count(add.ID) == 1 }, 30*time.Second, 20*time.Millisecond)
	p.waitCaughtUp(group)

	px.SetDown(true)
	// Few enough that no partition holds more than maxInflight batches waiting for Redis (past
	// that it waits too: backpressure, as for a commit).
	const waves, perWave = 2, 5
	users := 0
	for w := range waves {
		for range perWave {
			users++
			u := fmt.Sprintf("%s-u%d", p.id, users)
			p.produceEvent(event.Event{EventID: u + "-fav", UserID: u, Type: "favorite", ItemID: item, TS: now.Add(-time.Minute)})
			p.produceEvent(event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: item})
		}
		require.Eventually(t, func() bool { return st.count(add.ID) == users+1 }, 10*time.Second, 20*time.Millisecond,
			"wave %d's cart reaches waited for Redis to answer the favourites before them", w)
	}
	// One user takes the favourite back during the outage: sent after the favourite, it lands after it.
	gone := fmt.Sprintf("%s-u%d", p.id, users)
	p.produceEvent(event.Event{EventID: gone + "-unfav", UserID: gone, Type: "unfavorite", ItemID: item, TS: now.Add(-30 * time.Second)})
	time.Sleep(300 * time.Millisecond)
	require.Zero(t, st.count(drop.ID))

	px.SetDown(false)
	p.waitCaughtUp(group)
	p.produceEvent(event.Event{EventID: p.id + "-drop", Type: "price_drop", ItemID: item, TS: now, Attrs: map[string]any{"new_price": "5"}})
	require.Eventually(t, func() bool { return st.count(drop.ID) == users-1 }, 30*time.Second, 20*time.Millisecond)
	p.waitCaughtUp(group)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, users-1, st.count(drop.ID))
	st.mu.Lock()
	defer st.mu.Unlock()
	require.False(t, st.users[drop.ID][gone], "the user who unfavourited the item was reached")
}
