package cep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/workflows"
)

// t0 is a day ago on the hour: shared join keys expire by event time in Redis' clock, so event
// times must be recent.
var t0 = time.Now().UTC().Truncate(time.Hour).Add(-24 * time.Hour)

type ev struct {
	id, user, typ, item string
	at                  time.Duration // after t0
	attrs               map[string]any
}

func (e ev) event() event.Event {
	return event.Event{EventID: e.id, UserID: e.user, Type: e.typ, ItemID: e.item, TS: t0.Add(e.at), Attrs: e.attrs}
}

// harness runs rules as one partition does: the machine in memory, made durable in real Redis
// (a unique prefix) after every batch and restored from it before the next, so every table test
// also proves that what a restore brings back behaves as what was there before.
type harness struct {
	t     *testing.T
	rdb   redis.UniversalClient
	eng   *engine
	log   *changelog
	part  *partition
	rules []compiledRule
}

// onRedises runs test on a single Redis and on a three-node Redis Cluster.
func onRedises(t *testing.T, test func(*testing.T, redis.UniversalClient)) {
	for _, target := range testenv.Require(t).Redises(t) {
		t.Run(target.Name, func(t *testing.T) { test(t, target.Client) })
	}
}

func newHarnessOn(t *testing.T, rdb redis.UniversalClient, rules ...Rule) *harness {
	prefix := testenv.Unique("cep")
	h := &harness{t: t, rdb: rdb, eng: newEngine(rdb, prefix), log: newChangelog(rdb, prefix, "g", "t", 0)}
	h.log.snapMin, h.log.piece = 256, 4 // snapshots built in pieces between log records: restores read both
	for _, r := range rules {
		c, err := compile(r)
		require.NoError(t, err)
		h.rules = append(h.rules, c)
	}
	h.restore()
	return h
}

// restore claims the partition afresh: the machine comes back from Redis alone.
func (h *harness) restore() {
	h.t.Helper()
	m, next, err := h.log.claim(context.Background(), 0)
	require.NoError(h.t, err)
	h.part = &partition{log: h.log, m: m, next: next}
}

// run processes one batch and commits it.
func (h *harness) run(batch []event.Event) []workflows.Match {
	h.t.Helper()
	return h.runAt(t0, batch)
}

// runAt processes one batch at the wall time now and commits it.
func (h *harness) runAt(now time.Time, batch []event.Event) []workflows.Match {
	h.t.Helper()
	h.restore()
	ms, err := h.part.process(context.Background(), h.eng, h.rules, batch, nil, nil, now)
	require.NoError(h.t, err)
	// Join triggers fan out in slices; here every slice runs before the batch is committed.
	require.NoError(h.t, h.part.fanOut(context.Background(), h.eng, h.rules, time.Now().Add(time.Hour), now,
		func(_ context.Context, fanned []workflows.Match) error { ms = append(ms, fanned...); return nil }))
	require.NoError(h.t, h.log.commit(context.Background(), h.part.m, -1, time.Hour))
	return ms
}

// fire moves the watermark to t0+at, as an idle partition's wall clock would, and returns what
// fired (committed).
func (h *harness) fire(at time.Duration) []string {
	h.t.Helper()
	h.restore()
	ms := h.fireUncommitted(at)
	require.NoError(h.t, h.log.commit(context.Background(), h.part.m, -1, time.Hour))
	return matchKeys(ms)
}

func (h *harness) fireUncommitted(at time.Duration) []workflows.Match {
	h.t.Helper()
	h.part.m.advance(ms(t0.Add(at)))
	ms, err := h.part.complete(context.Background(), h.eng, h.rules, h.part.m.fire(rulesByID(h.rules), t0, -1), nil, t0, nil)
	require.NoError(h.t, err)
	return ms
}

// fireUpTo moves the watermark to t0+at and fires at most limit timers, then sweeps and commits,
// as an idle partition's slice does; it returns the match keys.
func (h *harness) fireUpTo(at time.Duration, limit int) []string {
	h.t.Helper()
	h.restore()
	h.part.m.advance(ms(t0.Add(at)))
	ms, err := h.part.complete(context.Background(), h.eng, h.rules, h.part.m.fire(rulesByID(h.rules), t0, limit), nil, t0, nil)
	require.NoError(h.t, err)
	h.part.m.sweep()
	require.NoError(h.t, h.log.commit(context.Background(), h.part.m, -1, time.Hour))
	return matchKeys(ms)
}

// feed processes events one batch each and returns the match keys in order.
func (h *harness) feed(evs ...ev) []string {
	h.t.Helper()
	var keys []string
	for _, e := range evs {
		keys = append(keys, matchKeys(h.run([]event.Event{e.event()}))...)
	}
	return keys
}

// feedAt processes each event in a batch of its own at the wall time now.
func (h *harness) feedAt(now time.Time, evs ...ev) {
	h.t.Helper()
	for _, e := range evs {
		h.runAt(now, []event.Event{e.event()})
	}
}

// feedBatch processes all events in one batch.
func (h *harness) feedBatch(evs ...ev) []workflows.Match {
	h.t.Helper()
	batch := make([]event.Event, len(evs))
	for i, e := range evs {
		batch[i] = e.event()
	}
	return h.run(batch)
}

func matchKeys(ms []workflows.Match) []string {
	var out []string
	for _, m := range ms {
		if m.Suppressed == "" { // what starts: a suppressed match is recorded, never started
			out = append(out, m.UserID+"/"+m.MatchKey)
		}
	}
	return out
}

func TestSingle(t *testing.T) { onRedises(t, testSingle) }

func testSingle(t *testing.T, rdb redis.UniversalClient) {
	h := newHarnessOn(t, rdb, demoRule(t, "cart-add"))
	require.Equal(t, []string{"u1/e1"}, h.feed(
		ev{id: "e1", user: "u1", typ: "cart_add", item: "i1"},
		ev{id: "e2", user: "u1", typ: "cart_add"}, // condition fails: no item
		ev{id: "e3", user: "u1", typ: "view", item: "i1"},
	))
}

func TestCount(t *testing.T) { onRedises(t, testCount) }

func testCount(t *testing.T, rdb redis.UniversalClient) {
	rule := Rule{ID: "views", Kind: KindCount, Key: "user+item", Steps: []Step{{Type: "view"}}, Count: 3,
		Within: Duration(10 * time.Minute), Unless: &Step{Type: "chat_started"}, JourneyID: "j"}
	v := func(id string, at time.Duration) ev { return ev{id: id, user: "u", typ: "view", item: "i", at: at} }
	tests := []struct {
		name string
		evs  []ev
		want []string
	}{
		{name: "three in the window", evs: []ev{v("a", 0), v("b", time.Minute), v("c", 2*time.Minute)}, want: []string{"u/c"}},
		{name: "spread beyond the window", evs: []ev{v("a", 0), v("b", 6*time.Minute), v("c", 11*time.Minute)}},
		{name: "window edge inclusive", evs: []ev{v("a", 0), v("b", 5*time.Minute), v("c", 10*time.Minute)}, want: []string{"u/c"}},
		{name: "window edge exceeded", evs: []ev{v("a", 0), v("b", 5*time.Minute), v("c", 10*time.Minute+time.Millisecond)}},
		{name: "duplicates change nothing", evs: []ev{v("a", 0), v("a", 0), v("a", time.Second), v("b", time.Second)}},
		{name: "six views two matches", evs: []ev{v("a", 0), v("b", 1), v("c", 2), v("d", 3), v("e", 4), v("f", 5)}, want: []string{"u/c", "u/f"}},
		{name: "out of order", evs: []ev{v("a", 2*time.Minute), v("b", 0), v("c", time.Minute)}, want: []string{"u/c"}},
		{name: "other item does not count", evs: []ev{v("a", 0), v("b", 1), {id: "c", user: "u", typ: "view", item: "other", at: 2}}},
		{name: "unless inside the window", evs: []ev{v("a", 0), {id: "x", user: "u", typ: "chat_started", item: "i", at: time.Minute}, v("b", 2*time.Minute), v("c", 3*time.Minute)}},
		{name: "unless before the window", evs: []ev{{id: "x", user: "u", typ: "chat_started", item: "i", at: -time.Hour}, v("a", 0), v("b", 1), v("c", 2)}, want: []string{"u/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessOn(t, rdb, rule)
			require.Equal(t, tt.want, h.feed(tt.evs...))
		})
	}
}

func TestSequence(t *testing.T) { onRedises(t, testSequence) }

func testSequence(t *testing.T, rdb redis.UniversalClient) {
	two := Rule{ID: "seq", Kind: KindSequence, Steps: []Step{{Type: "view"}, {Type: "cart_add"}}, Within: Duration(time.Hour), JourneyID: "j"}
	three := Rule{ID: "seq3", Kind: KindSequence, Steps: []Step{{Type: "view"}, {Type: "cart_add"}, {Type: "order_paid"}}, Within: Duration(time.Hour), JourneyID: "j"}
	e := func(id, typ string, at time.Duration) ev { return ev{id: id, user: "u", typ: typ, item: "i", at: at} }
	tests := []struct {
		name string
		rule Rule
		evs  []ev
		want []string
	}{
		{name: "A then B", rule: two, evs: []ev{e("a", "view", 0), e("b", "cart_add", time.Minute)}, want: []string{"u/b"}},
		{name: "B then A", rule: two, evs: []ev{e("b", "cart_add", 0), e("a", "view", time.Minute)}},
		{name: "B too late", rule: two, evs: []ev{e("a", "view", 0), e("b", "cart_add", 2*time.Hour)}},
		{name: "relaxed contiguity", rule: two, evs: []ev{e("a", "view", 0), e("x", "favorite", 1), e("b", "cart_add", 2)}, want: []string{"u/b"}},
		{name: "replayed B matches once", rule: two, evs: []ev{e("a", "view", 0), e("b", "cart_add", 1), e("b", "cart_add", 1)}, want: []string{"u/b"}},
		{name: "B before A in event time", rule: two, evs: []ev{e("a", "view", time.Minute), e("b", "cart_add", 0)}},
		{name: "latest A restarts the window", rule: two, evs: []ev{e("a1", "view", 0), e("a2", "view", 50*time.Minute), e("b", "cart_add", 100*time.Minute)}, want: []string{"u/b"}},
		{name: "three steps", rule: three, evs: []ev{e("a", "view", 0), e("b", "cart_add", 1), e("c", "order_paid", 2)}, want: []string{"u/c"}},
		{name: "three steps out of order", rule: three, evs: []ev{e("a", "view", 0), e("c", "order_paid", 1), e("b", "cart_add", 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessOn(t, rdb, tt.rule)
			require.Equal(t, tt.want, h.feed(tt.evs...))
		})
	}
	t.Run("match carries every event", func(t *testing.T) {
		h := newHarnessOn(t, rdb, three)
		ms := h.feedBatch(e("a", "view", 0), e("b", "cart_add", 1), e("c", "order_paid", 2))
		require.Len(t, ms, 1)
		require.Equal(t, []string{"a", "b", "c"}, ms[0].EventIDs)
	})
}

func TestAbsence(t *testing.T) { onRedises(t, testAbsence) }

func testAbsence(t *testing.T, rdb redis.UniversalClient) {
	rule := Rule{ID: "abandon", Kind: KindAbsence, Steps: []Step{{Type: "cart_add"}}, Absent: &Step{Type: "order_paid"},
		Within: Duration(time.Minute), JourneyID: "j"}
	add := ev{id: "a", user: "u", typ: "cart_add", item: "i"}
	fire := func(h *harness, at time.Duration) []string { return h.fire(at) }
	t.Run("fires once after the window", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		require.Empty(t, h.feed(add))
		require.Empty(t, fire(h, 30*time.Second))
		require.Equal(t, []string{"u/a"}, fire(h, 61*time.Second))
		require.Empty(t, fire(h, 2*time.Minute))
	})
	t.Run("B inside the window cancels", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(add, ev{id: "b", user: "u", typ: "order_paid", at: 30 * time.Second})
		require.Empty(t, fire(h, 2*time.Minute))
	})
	t.Run("B before A does not cancel", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(ev{id: "b", user: "u", typ: "order_paid", at: -time.Second}, add)
		require.Equal(t, []string{"u/a"}, fire(h, 2*time.Minute))
	})
	t.Run("latest A restarts the wait", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(add, ev{id: "a2", user: "u", typ: "cart_add", at: 50 * time.Second})
		require.Equal(t, []string{"u/a2"}, fire(h, 2*time.Minute))
	})
	t.Run("B after the window does not cancel", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		require.Equal(t, []string{"u/a"}, h.feed(add, ev{id: "b", user: "u", typ: "order_paid", at: 61 * time.Second}))
		require.Empty(t, fire(h, 2*time.Minute))
	})
	t.Run("a duplicate A after the cancel does not wait again", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(add, ev{id: "b", user: "u", typ: "order_paid", at: 30 * time.Second}, add)
		require.Empty(t, fire(h, 2*time.Minute))
	})
	t.Run("events move the watermark: a later event fires the timer", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		require.Empty(t, h.feed(add, ev{id: "x", user: "u", typ: "view", at: 30 * time.Second}))
		require.Equal(t, []string{"u/a"}, h.feed(ev{id: "y", user: "u", typ: "view", at: 61 * time.Second}))
	})
	t.Run("an A after the window ended fires the one before", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		require.Equal(t, []string{"u/a"}, h.feed(add, ev{id: "a2", user: "u", typ: "cart_add", at: 61 * time.Second}))
		require.Equal(t, []string{"u/a2"}, fire(h, 3*time.Minute))
	})
	t.Run("overdue timers fire a slice at a time, each once, and a late B cancels none", func(t *testing.T) {
		// A restart after days: every wait ended long ago, past its instance's expiry. The
		// partition fires them a slice at a time (restored from Redis between slices); the sweep
		// keeps the instances still due, and a B inside a window that arrives once the watermark
		// passed its end does not cancel it (as when every timer fired at once).
		h := newHarnessOn(t, rdb, rule)
		var adds []event.Event
		want := map[string]int{}
		for i := range 50 {
			u := fmt.Sprintf("u%d", i)
			adds = append(adds, ev{id: "a-" + u, user: u, typ: "cart_add", at: time.Duration(i) * time.Second}.event())
			want[u+"/a-"+u] = 1
		}
		h.run(adds)
		got := map[string]int{}
		count := func(keys []string) {
			for _, k := range keys {
				got[k]++
			}
		}
		slice := h.fireUpTo(72*time.Hour, 10)
		require.Len(t, slice, 10)
		count(slice)
		// The late B, in a batch that may fire no timer.
		h.restore()
		local := h.part.compute(h.rules, []event.Event{ev{id: "b", user: "u42", typ: "order_paid", at: 50 * time.Second}.event()},
			nil, nil, t0, 0)
		require.Empty(t, local)
		require.NoError(t, h.log.commit(context.Background(), h.part.m, -1, time.Hour))
		for i := 0; i < 10; i++ {
			count(h.fireUpTo(72*time.Hour, 10))
		}
		require.Equal(t, want, got)
	})
	t.Run("a batch's events' matches come before its timers'", func(t *testing.T) {
		// The batch's first event passes the cart's due time; its last is a view that matches
		// at once: that reach starts first, the timer's after it.
		h := newHarnessOn(t, rdb, rule, Rule{ID: "viewed", Steps: []Step{{Type: "view"}}, JourneyID: "j"})
		h.feed(add)
		got := matchKeys(h.feedBatch(ev{id: "x", user: "u2", typ: "order_paid", at: 2 * time.Minute},
			ev{id: "v", user: "u3", typ: "view", at: 2*time.Minute + time.Second}))
		require.Equal(t, []string{"u3/v", "u/a"}, got)
	})
	t.Run("a fire whose start failed fires again after a restore", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(add)
		require.Len(t, h.fireUncommitted(2*time.Minute), 1) // the start fails: nothing is committed
		require.Equal(t, []string{"u/a"}, fire(h, 2*time.Minute))
		require.Empty(t, fire(h, 3*time.Minute))
	})
}

// A replica that lost its partition can never write over the new owner's state.
func TestChangelogFencing(t *testing.T) { onRedises(t, testChangelogFencing) }

func testChangelogFencing(t *testing.T, rdb redis.UniversalClient) {
	rule := Rule{ID: "abandon", Kind: KindAbsence, Steps: []Step{{Type: "cart_add"}}, Absent: &Step{Type: "order_paid"},
		Within: Duration(time.Minute), JourneyID: "j"}
	h := newHarnessOn(t, rdb, rule)
	h.feed(ev{id: "a", user: "u", typ: "cart_add"})
	zombie := h.part
	h.log = newChangelog(h.rdb, h.log.meta[:len(h.log.meta)-len(":{p:g/t/0}:meta")], "g", "t", 0)
	owner := &harness{t: t, rdb: h.rdb, eng: h.eng, log: h.log, rules: h.rules}
	owner.restore()
	// The zombie goes on as if it still owned the partition: its commit is refused.
	_, err := zombie.process(context.Background(), h.eng, h.rules, []event.Event{{EventID: "b", UserID: "u", Type: "order_paid", TS: t0.Add(time.Second)}}, nil, nil, t0)
	require.NoError(t, err)
	err = zombie.log.commit(context.Background(), zombie.m, 7, time.Hour)
	require.ErrorIs(t, err, errFenced)
	// The owner's state is untouched: the cart still waits, and fires.
	require.Equal(t, []string{"u/a"}, owner.fire(2*time.Minute))
}

func TestJoin(t *testing.T) { onRedises(t, testJoin) }

func testJoin(t *testing.T, rdb redis.UniversalClient) {
	rule := Rule{ID: "drop", Kind: KindJoin, Steps: []Step{{Type: "favorite"}, {Type: "price_drop"}},
		LinkTTL: Duration(24 * time.Hour), JourneyID: "j"}
	fav := func(user, item string, at time.Duration) ev {
		return ev{id: "f-" + user + "-" + item, user: user, typ: "favorite", item: item, at: at}
	}
	drop := func(item string, at time.Duration) ev {
		return ev{id: "d-" + item, typ: "price_drop", item: item, at: at}
	}
	users := func(ms []workflows.Match) []string {
		var out []string
		for _, m := range ms {
			require.Equal(t, "d-"+m.ItemID, m.MatchKey)
			out = append(out, m.UserID)
		}
		sort.Strings(out)
		return out
	}
	t.Run("fans out to the item's users", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(fav("u1", "i1", 0), fav("u2", "i1", 1), fav("u3", "i2", 2))
		require.Equal(t, []string{"u1", "u2"}, users(h.feedBatch(drop("i1", time.Hour))))
	})
	t.Run("links expire", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(fav("old", "i1", 0), fav("new", "i1", 20*time.Hour))
		require.Equal(t, []string{"new"}, users(h.feedBatch(drop("i1", 25*time.Hour))))
	})
	t.Run("shared keys expire by event time", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		c := &h.rules[0]
		expireAt := func(key string) time.Time {
			d, err := rdb.PExpireTime(context.Background(), key).Result()
			require.NoError(t, err)
			require.Positive(t, d, "%s has an expiry", key)
			return time.UnixMilli(d.Milliseconds()).UTC()
		}
		// A link key lives its newest link's TTL and a grace past the later of the link's event
		// time and the latest one the process could accept (now plus a day), whatever order links
		// come in: one processed later extends it, an older one does not shorten it.
		linkExp := func(now time.Time) time.Time { return now.Add(event.MaxFutureLag + 24*time.Hour + DefaultSharedGrace) }
		h.feed(fav("u1", "i1", 0))
		require.Equal(t, linkExp(t0), expireAt(h.eng.joinKey(c, "i1")))
		// A link that needs at most the slack (an hour) more than the expiry this process set on
		// the key sends none: the key outlives it by the grace less the slack.
		h.feedAt(t0.Add(time.Hour), fav("u2", "i1", time.Hour))
		require.Equal(t, linkExp(t0), expireAt(h.eng.joinKey(c, "i1")))
		h.feedAt(t0.Add(2*time.Hour), fav("u3", "i1", 30*time.Minute))
		require.Equal(t, linkExp(t0.Add(2*time.Hour)), expireAt(h.eng.joinKey(c, "i1")))
		h.feedAt(t0.Add(time.Hour), fav("u6", "i1", 40*time.Minute))
		require.Equal(t, linkExp(t0.Add(2*time.Hour)), expireAt(h.eng.joinKey(c, "i1")), "this process set it later")
		// Another process whose clock is an hour behind takes that hour off the key, which still
		// outlives every link's need by more than the grace less that hour.
		h.eng.linkExp = linkExpiries{}
		h.feedAt(t0.Add(time.Hour), fav("u6", "i1", 40*time.Minute))
		require.Equal(t, linkExp(t0.Add(time.Hour)), expireAt(h.eng.joinKey(c, "i1")))
		// An unfavourite never empties a key (its member is scored out of every read), so the next
		// link never creates it again without an expiry where this process remembers one.
		h.feed(fav("u8", "i4", 0), ev{id: "x8", user: "u8", typ: "unfavorite", item: "i4", at: time.Minute})
		require.Equal(t, linkExp(t0), expireAt(h.eng.joinKey(c, "i4")))
		require.Equal(t, math.Inf(-1), rdb.ZScore(context.Background(), h.eng.joinKey(c, "i4"), "u8").Val())
		h.feed(ev{id: "x9", user: "u9", typ: "unfavorite", item: "i5", at: time.Minute})
		require.Zero(t, rdb.Exists(context.Background(), h.eng.joinKey(c, "i5")).Val(), "an unfavourite of no link writes nothing")
		// A link later than that (decoded by a process whose clock is ahead) is kept its TTL and the
		// grace past its own time.
		h.feed(fav("u7", "i3", 25*time.Hour))
		require.Equal(t, t0.Add(25*time.Hour+24*time.Hour+DefaultSharedGrace), expireAt(h.eng.joinKey(c, "i3")))
		// A trigger key lives the lateness and a grace past its newest trigger, likewise.
		trigExp := func(at time.Duration) time.Time { return t0.Add(at + lateness + DefaultSharedGrace) }
		dropAt := func(id string, at time.Duration) ev { return ev{id: id, typ: "price_drop", item: "i1", at: at} }
		h.feed(dropAt("d1", 2*time.Hour))
		require.Equal(t, trigExp(2*time.Hour), expireAt(h.eng.triggersKey(c, "i1")))
		h.feed(dropAt("d2", 3*time.Hour))
		require.Equal(t, trigExp(3*time.Hour), expireAt(h.eng.triggersKey(c, "i1")))
		h.feed(dropAt("d3", 150*time.Minute))
		require.Equal(t, trigExp(3*time.Hour), expireAt(h.eng.triggersKey(c, "i1")))
		// A link older than that is not written: a replayed or backfilled old stream leaves no key
		// behind, and cannot expire the key a fresh link of another partition just created.
		h.feed(fav("u4", "i2", -72*time.Hour))
		require.Zero(t, rdb.Exists(context.Background(), h.eng.joinKey(c, "i2")).Val())
		h.feed(fav("u5", "i1", -72*time.Hour))
		require.Equal(t, linkExp(t0.Add(time.Hour)), expireAt(h.eng.joinKey(c, "i1")), "a stale link leaves a live key alone")
		require.ErrorIs(t, rdb.ZScore(context.Background(), h.eng.joinKey(c, "i1"), "u5").Err(), redis.Nil, "nor joins it")
		// Unless the grace covers them (a backfill's covers the history it replays): then they join.
		h.eng.grace = 4 * 24 * time.Hour
		require.Equal(t, []string{"u3"}, users(h.feedBatch(fav("u3", "i2", -72*time.Hour), drop("i2", -71*time.Hour))))
	})
	t.Run("unfavorite removes the link", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		h.feed(fav("u1", "i1", 0), fav("u2", "i1", 0), ev{id: "x", user: "u2", typ: "unfavorite", item: "i1", at: 1})
		require.Equal(t, []string{"u1"}, users(h.feedBatch(drop("i1", time.Hour))))
	})
	t.Run("a favourite after the drop is not reached", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		require.Equal(t, []string{"u1"}, users(h.feedBatch(fav("u1", "i1", 0), drop("i1", time.Hour), fav("u2", "i1", 2*time.Hour))))
	})
	t.Run("a link processed after the trigger still matches", func(t *testing.T) {
		// The favourite precedes the drop in event time but travels on another partition.
		h := newHarnessOn(t, rdb, rule)
		require.Equal(t, []string{"u1"}, users(h.feedBatch(fav("u1", "i1", 0), drop("i1", time.Hour))))
		require.Equal(t, []string{"u2"}, users(h.feedBatch(fav("u2", "i1", time.Minute))))
		require.Empty(t, h.feedBatch(fav("u3", "i1", 2*time.Hour)), "a favourite after the drop is not reached")
		// A duplicated drop (the same event ID) matches the same users under the same match key,
		// so the same reach IDs: its starts collapse on their workflow IDs, as a duplicated
		// single event's do.
		require.Equal(t, []string{"u1", "u2"}, users(h.feedBatch(drop("i1", time.Hour))))
	})
	t.Run("a link and its unfavourite processed after the trigger do not match", func(t *testing.T) {
		// The favourite and the unfavourite both precede the drop in event time, on a partition
		// behind the item's; read in one batch, the user was not linked when the price dropped.
		h := newHarnessOn(t, rdb, rule)
		unfav := func(user string, at time.Duration) ev {
			return ev{id: "x-" + user + "-" + at.String(), user: user, typ: "unfavorite", item: "i1", at: at}
		}
		require.Empty(t, h.feedBatch(drop("i1", time.Hour)))
		require.Empty(t, h.feedBatch(fav("u1", "i1", 0), unfav("u1", 30*time.Minute)))
		// Unfavourited after the drop: the user was linked when it dropped.
		require.Equal(t, []string{"u2"}, users(h.feedBatch(fav("u2", "i1", 0), unfav("u2", 2*time.Hour))))
		// Favourited again before the drop: linked again.
		require.Equal(t, []string{"u3"}, users(h.feedBatch(fav("u3", "i1", 0), unfav("u3", 10*time.Minute),
			ev{id: "f2-u3", user: "u3", typ: "favorite", item: "i1", at: 20 * time.Minute})))
	})
	t.Run("link and trigger in one batch reach the user once", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		// Found by the link (the trigger came first) and by the fan-out: one workflow ID.
		require.Equal(t, []string{"u1"}, users(dedupeMatches(h.feedBatch(drop("i1", time.Hour), fav("u1", "i1", 0)))))
	})
	t.Run("a large fan-out goes in slices, and a crash replays one slice", func(t *testing.T) {
		h := newHarnessOn(t, rdb, rule)
		var favs []ev
		for i := range 1200 {
			favs = append(favs, fav(fmt.Sprintf("u%04d", i), "i1", time.Duration(i)*time.Millisecond))
		}
		h.feedBatch(favs...)
		h.restore()
		_, err := h.part.process(context.Background(), h.eng, h.rules, []event.Event{drop("i1", time.Hour).event()}, nil, nil, t0)
		require.NoError(t, err)
		require.NoError(t, h.log.commit(context.Background(), h.part.m, -1, time.Hour)) // the job is durable
		started := map[string]int{}
		slice := func(fail bool) error {
			return h.part.fanOut(context.Background(), h.eng, h.rules, time.Now().Add(time.Hour), t0,
				func(_ context.Context, ms []workflows.Match) error {
					for _, m := range ms {
						started[m.UserID]++
						require.True(t, m.Bulk, "a fan-out past a page is bulk")
					}
					if fail {
						return errors.New("the process dies after the first page")
					}
					return nil
				})
		}
		require.Error(t, slice(true)) // one page started, its cursor never committed
		require.Equal(t, fanPageSize, len(started))
		h.restore()
		require.NoError(t, slice(false))
		require.NoError(t, h.log.commit(context.Background(), h.part.m, -1, time.Hour))
		require.Len(t, started, 1200, "every user started")
		for u, n := range started {
			if n > 1 {
				require.Less(t, u, fmt.Sprintf("u%04d", fanPageSize), "only the replayed page starts twice (and collapses on its IDs)")
			}
		}
		require.Empty(t, h.part.m.pendingJobs())
	})
	t.Run("a stale trigger fans out to nobody", func(t *testing.T) {
		// A drop that happened three days before Kafka took it: past a page of favouriters, no
		// fan-out job at all (a page or less is suppressed with the batch's stale matches).
		h := newHarnessOn(t, rdb, rule)
		h.eng.maxMatchAge = 24 * time.Hour
		var favs []ev
		for i := range fanPageSize + 20 {
			favs = append(favs, fav(fmt.Sprintf("u%04d", i), "i1", time.Duration(i)*time.Millisecond))
		}
		h.feedBatch(favs...)
		stale := drop("i1", time.Hour).event()
		_, err := h.part.process(context.Background(), h.eng, h.rules, []event.Event{stale}, []time.Time{stale.TS.Add(72 * time.Hour)}, nil, t0)
		require.NoError(t, err)
		require.Empty(t, h.part.m.pendingJobs())
		fresh := drop("i1", 2*time.Hour).event()
		_, err = h.part.process(context.Background(), h.eng, h.rules, []event.Event{fresh}, []time.Time{fresh.TS.Add(time.Second)}, nil, t0)
		require.NoError(t, err)
		require.Len(t, h.part.m.pendingJobs(), 1, "a fresh one fans out")
	})
	t.Run("fan-out is bounded and paged", func(t *testing.T) {
		r := rule
		r.MaxFanout = 2100
		h := newHarnessOn(t, rdb, r)
		var favs []ev
		for i := range 2500 {
			favs = append(favs, fav(fmt.Sprintf("u%04d", i), "i1", time.Duration(i)*time.Millisecond))
		}
		h.feedBatch(favs...)
		got := users(h.feedBatch(drop("i1", time.Hour)))
		require.Len(t, got, 2100)
		require.Equal(t, "u0400", got[0], "the newest links are kept")
	})
}

func TestReentry(t *testing.T) { onRedises(t, testReentry) }

func testReentry(t *testing.T, rdb redis.UniversalClient) {
	base := Rule{ID: "r", Steps: []Step{{Type: "cart_add"}}, JourneyID: "j"}
	add := func(id string) ev { return ev{id: id, user: "u", typ: "cart_add"} }
	t.Run("once", func(t *testing.T) {
		r := base
		r.Reentry = ReentryOnce
		h := newHarnessOn(t, rdb, r)
		require.Equal(t, []string{"u/a"}, h.feed(add("a"), add("b")))
		require.Equal(t, []string{"u/a"}, h.feed(add("a")), "a replayed match passes again: its start collapses on the workflow ID")
	})
	// A suppressed match stays, marked with why, for the audit trail (dispatch records it and
	// starts nothing): the reach holding the key, on machine-owned and shared state alike.
	for _, key := range []string{"", "attrs.coupon"} {
		t.Run("once, the suppressed match says why, key "+key, func(t *testing.T) {
			r := base
			r.Reentry, r.Key = ReentryOnce, key
			h := newHarnessOn(t, rdb, r)
			coupon := map[string]any{"coupon": "WELCOME10"}
			first := h.feedBatch(ev{id: "a", user: "u", typ: "cart_add", attrs: coupon})
			require.Len(t, first, 1)
			require.Empty(t, first[0].Suppressed)
			second := h.feedBatch(ev{id: "b", user: "u", typ: "cart_add", attrs: coupon})
			require.Len(t, second, 1)
			require.Equal(t, "b", second[0].MatchKey)
			require.Contains(t, second[0].Suppressed, "rule r allows one reach per user")
			require.Contains(t, second[0].Suppressed, "reach "+workflows.ReachID("r", "u", "a")+" holds it until ")
		})
	}
	// Once per correlation key: a rule keyed on the user and a coupon reaches a user once per
	// coupon, one keyed on the user and the item once per item; the marks of one key do not hold
	// another's.
	coupon := func(id, user, c string) ev {
		return ev{id: id, user: user, typ: "cart_add", attrs: map[string]any{"coupon": c}}
	}
	suppressed := func() float64 {
		var m dto.Metric
		require.NoError(t, metrics.Matches.WithLabelValues("r", "suppressed").Write(&m))
		return m.GetCounter().GetValue()
	}
	for _, tt := range []struct{ name, key string }{{"once per key", "user+attrs.coupon"}, {"once per key, shared state", "attrs.coupon"}} {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			r.Reentry, r.Key = ReentryOnce, tt.key
			h := newHarnessOn(t, rdb, r)
			require.Equal(t, tt.key == "user+attrs.coupon", ownedByPartition(&h.rules[0]))
			before := suppressed()
			require.Equal(t, []string{"u/a", "u/b", "v/d"},
				h.feed(coupon("a", "u", "WELCOME10"), coupon("b", "u", "SPRING5"), coupon("c", "u", "WELCOME10"), coupon("d", "v", "WELCOME10")))
			require.Equal(t, 1.0, suppressed()-before, "the dropped match is counted")
		})
	}
	t.Run("cooldown per key", func(t *testing.T) {
		r := base
		r.Reentry, r.Cooldown, r.Key = ReentryCooldown, Duration(time.Hour), "user+item"
		h := newHarnessOn(t, rdb, r)
		at := func(id, item string, d time.Duration) ev {
			return ev{id: id, user: "u", typ: "cart_add", item: item, at: d}
		}
		require.Equal(t, []string{"u/a", "u/b", "u/d"},
			h.feed(at("a", "i1", 0), at("b", "i2", time.Minute), at("c", "i1", 2*time.Minute), at("d", "i1", 61*time.Minute)))
	})
	// Redis lost its scripts (a restart, a failover): the batch's first shared match is not lost
	// to the reload (it was: the retry took the first attempt's empty result as its input).
	t.Run("once, shared state, scripts lost", func(t *testing.T) {
		r := base
		r.Reentry, r.Key = ReentryOnce, "attrs.coupon"
		h := newHarnessOn(t, rdb, r)
		require.NoError(t, rdb.ScriptFlush(context.Background()).Err())
		require.Equal(t, []string{"u/a"}, h.feed(coupon("a", "u", "WELCOME10"), coupon("c", "u", "WELCOME10")))
	})
	t.Run("every", func(t *testing.T) {
		h := newHarnessOn(t, rdb, base)
		require.Equal(t, []string{"u/a", "u/b"}, h.feed(add("a"), add("b")))
	})
	t.Run("shadow matches are marked", func(t *testing.T) {
		r := base
		r.Shadow = true
		h := newHarnessOn(t, rdb, r)
		ms := h.feedBatch(add("a"))
		require.Len(t, ms, 1)
		require.True(t, ms[0].Shadow)
	})
}

// Conditions read the user's profile (attributes from offline jobs); a user without one reads an
// empty profile and does not match.
func TestConditionReadsProfile(t *testing.T) { onRedises(t, testConditionReadsProfile) }

func testConditionReadsProfile(t *testing.T, rdb redis.UniversalClient) {
	h := newHarnessOn(t, rdb, Rule{ID: "gold-cart", Steps: []Step{{Type: "cart_add", Where: `profile.attrs.tier == "gold" && event.item_id != ""`}}, JourneyID: "j"})
	require.True(t, h.rules[0].needsProfile)
	evs := []event.Event{
		{EventID: "e1", UserID: "gold", Type: "cart_add", ItemID: "i", TS: t0},
		{EventID: "e2", UserID: "silver", Type: "cart_add", ItemID: "i", TS: t0},
		{EventID: "e3", UserID: "nobody", Type: "cart_add", ItemID: "i", TS: t0},
	}
	profiles := map[string]map[string]any{
		"gold":   {"time_zone": "", "locale": "", "attrs": map[string]any{"tier": "gold"}},
		"silver": {"time_zone": "", "locale": "", "attrs": map[string]any{"tier": "silver"}},
	}
	ms, err := h.part.process(context.Background(), h.eng, h.rules, evs, nil, profiles, t0)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	require.Equal(t, "gold", ms[0].UserID)

	plain, err := compile(Rule{ID: "plain", Steps: []Step{{Type: "cart_add", Where: `event.attrs.profiled == true`}}, JourneyID: "j"})
	require.NoError(t, err)
	require.False(t, plain.needsProfile, "no profile read, no profile load")
}

// Rules keyed on something other than the user keep their state shared in Redis; there too the
// event that completed a match, replayed (the process died before its reach started), matches
// again (the start collapses on the same workflow ID) instead of counting as a first event.
func TestSharedStateReplays(t *testing.T) { onRedises(t, testSharedStateReplays) }

func testSharedStateReplays(t *testing.T, rdb redis.UniversalClient) {
	view := func(id, user string, at time.Duration) ev {
		return ev{id: id, user: user, typ: "view", item: "i", at: at}
	}
	t.Run("count", func(t *testing.T) {
		h := newHarnessOn(t, rdb, Rule{ID: "trending", Kind: KindCount, Key: "item", Steps: []Step{{Type: "view"}}, Count: 3,
			Within: Duration(10 * time.Minute), JourneyID: "j"})
		require.False(t, ownedByPartition(&h.rules[0]))
		require.Equal(t, []string{"u3/c"}, h.feed(view("a", "u1", 0), view("b", "u2", 1), view("c", "u3", 2)))
		require.Equal(t, []string{"u3/c"}, h.feed(view("c", "u3", 2)), "the replayed match")
		require.Empty(t, h.feed(view("d", "u4", 3), view("e", "u5", 4)), "the window was cleared")
		require.Equal(t, []string{"u6/f"}, h.feed(view("f", "u6", 5)))
	})
	t.Run("sequence", func(t *testing.T) {
		h := newHarnessOn(t, rdb, Rule{ID: "browse-buy", Kind: KindSequence, Key: "item", Steps: []Step{{Type: "view"}, {Type: "cart_add"}},
			Within: Duration(time.Hour), JourneyID: "j"})
		add := ev{id: "b", user: "u2", typ: "cart_add", item: "i", at: time.Minute}
		require.Equal(t, []string{"u2/b"}, h.feed(view("a", "u1", 0), add))
		require.Equal(t, []string{"u2/b"}, h.feed(add), "the replayed match")
		require.Empty(t, h.feed(ev{id: "b2", user: "u3", typ: "cart_add", item: "i", at: 2 * time.Minute}))
	})
}

// An absence keyed on the item keeps its state and timers in Redis: its timers fire on the group's
// watermark (event time), not the wall clock, spread over timerShards sorted sets, and a B from
// another user (another partition) cancels it.
func TestSharedAbsence(t *testing.T) { onRedises(t, testSharedAbsence) }

func testSharedAbsence(t *testing.T, rdb redis.UniversalClient) {
	h := newHarnessOn(t, rdb, Rule{ID: "unsold", Kind: KindAbsence, Key: "item", Steps: []Step{{Type: "cart_add"}},
		Absent: &Step{Type: "order_paid"}, Within: Duration(30 * time.Minute), JourneyID: "j"})
	require.False(t, ownedByPartition(&h.rules[0]))
	var adds []ev
	for i := range 40 {
		adds = append(adds, ev{id: fmt.Sprintf("a%d", i), user: fmt.Sprintf("u%d", i), typ: "cart_add", item: fmt.Sprintf("i%d", i)})
	}
	require.Empty(t, h.feed(adds...))
	// Items i0-i19 are paid for by other users, 20 minutes in.
	for i := range 20 {
		require.Empty(t, h.feed(ev{id: fmt.Sprintf("p%d", i), user: fmt.Sprintf("payer%d", i), typ: "order_paid",
			item: fmt.Sprintf("i%d", i), at: 20 * time.Minute}))
	}
	// Read before their As (their partition ahead of the As'): a B inside its A's window still
	// cancels it, one after the window does not.
	require.Empty(t, h.feed(ev{id: "pin", user: "payer-in", typ: "order_paid", item: "early-in", at: 20 * time.Minute},
		ev{id: "ain", user: "u-in", typ: "cart_add", item: "early-in"},
		ev{id: "pout", user: "payer-out", typ: "order_paid", item: "early-out", at: 31 * time.Minute},
		ev{id: "aout", user: "u-out", typ: "cart_add", item: "early-out"}))
	shards := 0
	for i := range timerShards {
		if n, err := rdb.ZCard(context.Background(), h.eng.timerSet(i)[0]).Result(); err == nil && n > 0 {
			shards++
		}
	}
	require.Greater(t, shards, 8, "40 timers spread over the shards")
	fire := func(upTo time.Duration) []string {
		var got []workflows.Match
		_, err := h.eng.fireDue(context.Background(), h.rules, t0.Add(upTo), time.Now(), 500, func(_ context.Context, ms []workflows.Match) error {
			got = append(got, ms...)
			return nil
		})
		require.NoError(t, err)
		keys := matchKeys(got)
		sort.Strings(keys)
		return keys
	}
	// The wall clock is a day past every due time: only the group's watermark counts.
	require.Empty(t, fire(30*time.Minute-time.Millisecond), "not due before the watermark passes")
	want := []string{"u-out/aout"}
	for i := 20; i < 40; i++ {
		want = append(want, fmt.Sprintf("u%d/a%d", i, i))
	}
	sort.Strings(want)
	require.Equal(t, want, fire(30*time.Minute), "the unpaid items, each once")
	require.Empty(t, fire(time.Hour), "fired once")
}

// The group's watermark is the least of its partitions' committed ones, and none while a partition
// has committed none.
func TestCommittedWatermark(t *testing.T) { onRedises(t, testCommittedWatermark) }

func testCommittedWatermark(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	prefix := fmt.Sprintf("cw%d", time.Now().UnixNano())
	parts := []int32{0, 1, 2}
	commit := func(p int32, wm time.Time) {
		c := newChangelog(rdb, prefix, "g", "t", p)
		m, _, err := c.claim(ctx, time.Second)
		require.NoError(t, err)
		m.advance(ms(wm))
		require.NoError(t, c.commit(ctx, m, -1, time.Hour))
	}
	_, ok, err := committedWatermark(ctx, rdb, prefix, "g", "t", parts)
	require.NoError(t, err)
	require.False(t, ok, "no partition committed yet")
	commit(0, t0.Add(3*time.Minute))
	commit(2, t0.Add(time.Minute))
	_, ok, err = committedWatermark(ctx, rdb, prefix, "g", "t", parts)
	require.NoError(t, err)
	require.False(t, ok, "partition 1 committed none: no watermark")
	commit(1, t0.Add(2*time.Minute))
	wm, ok, err := committedWatermark(ctx, rdb, prefix, "g", "t", parts)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, t0.Add(time.Minute).UnixMilli(), wm.UnixMilli(), "the least")
}

// A key value's braces cannot end its hash tag early (every key of one value lands in one slot).
func TestTagEscapesBraces(t *testing.T) {
	require.Equal(t, "{u1}", tag("u1"))
	require.Equal(t, "{a(b)c}", tag("a{b}c"))
	require.Equal(t, "{)(}", tag("}{"))
}

// TestNewVersionState: a new version of a rule that keeps its pattern (a new description,
// journey, rollout...) continues the open state of the version before it, machine-owned (an
// absence's pending wait, a count) and shared (a join's links); one that changes the pattern
// starts afresh. Found from outside: a description edit dropped every open window.
func TestNewVersionState(t *testing.T) { onRedises(t, testNewVersionState) }

func testNewVersionState(t *testing.T, rdb redis.UniversalClient) {
	next := func(prev Rule, edit func(*Rule)) Rule {
		r := prev
		edit(&r)
		r.Version, r.StateVersion = prev.Version+1, ContinuedState(prev, r)
		return r
	}
	use := func(h *harness, r Rule) {
		c, err := compile(r)
		require.NoError(t, err)
		h.rules = []compiledRule{c}
	}
	absence := Rule{ID: "abandon", Version: 1, Kind: KindAbsence, Steps: []Step{{Type: "cart_add"}}, Absent: &Step{Type: "order_paid"},
		Within: Duration(time.Minute), JourneyID: "j"}
	add := ev{id: "a", user: "u", typ: "cart_add", item: "i"}
	t.Run("a new description keeps the pending absence", func(t *testing.T) {
		h := newHarnessOn(t, rdb, absence)
		require.Empty(t, h.feed(add))
		v2 := next(absence, func(r *Rule) { r.Description = "carts left behind" })
		require.Equal(t, 1, v2.StateVersion)
		use(h, v2)
		h.restore()
		ms := h.fireUncommitted(61 * time.Second)
		require.Equal(t, []string{"u/a"}, matchKeys(ms))
		require.Equal(t, 2, ms[0].RuleVersion, "the match is the new version's")
	})
	t.Run("a new window starts afresh", func(t *testing.T) {
		h := newHarnessOn(t, rdb, absence)
		require.Empty(t, h.feed(add))
		v2 := next(absence, func(r *Rule) { r.Within = Duration(2 * time.Minute) })
		require.Zero(t, v2.StateVersion)
		use(h, v2)
		require.Empty(t, h.fire(3*time.Minute))
	})
	t.Run("a count carries on across a journey change, twice", func(t *testing.T) {
		count := Rule{ID: "views", Version: 1, Kind: KindCount, Steps: []Step{{Type: "view"}}, Count: 3, Within: Duration(time.Hour), JourneyID: "j"}
		h := newHarnessOn(t, rdb, count)
		view := func(id string, at time.Duration) ev { return ev{id: id, user: "u", typ: "view", item: "i", at: at} }
		require.Empty(t, h.feed(view("v1", 0)))
		v2 := next(count, func(r *Rule) { r.JourneyID = "j2" })
		use(h, v2)
		require.Empty(t, h.feed(view("v2", time.Second)))
		v3 := next(v2, func(r *Rule) { r.Rollout = 50 })
		require.Equal(t, 1, v3.StateVersion, "the state of the first version, through the second")
		use(h, v3)
		require.Equal(t, []string{"u/v3"}, h.feed(view("v3", 2*time.Second)))
	})
	t.Run("join links carry on across a new fan-out bound", func(t *testing.T) {
		join := Rule{ID: "drop", Version: 1, Kind: KindJoin, Steps: []Step{{Type: "favorite"}, {Type: "price_drop"}},
			LinkTTL: Duration(24 * time.Hour), JourneyID: "j"}
		h := newHarnessOn(t, rdb, join)
		h.feed(ev{id: "f1", user: "u1", typ: "favorite", item: "i1"})
		use(h, next(join, func(r *Rule) { r.MaxFanout = 500 }))
		require.Equal(t, []string{"u1/d1"}, matchKeys(h.feedBatch(ev{id: "d1", typ: "price_drop", item: "i1", at: time.Hour})))
	})
	t.Run("unchanged content keeps its StateVersion as stored", func(t *testing.T) {
		v2 := next(absence, func(r *Rule) { r.Description = "x" })
		same := v2
		same.Version, same.StateVersion = 0, 0
		require.Equal(t, v2.StateVersion, ContinuedState(v2, same), "so the store sees no change")
	})
}
