// Package obvious is the CEP stage a Go team writes first, kept as one of the benchmark's
// comparisons (issue 15): go-redis with plain commands, no Lua, pipelined per batch. A batch costs
// three round trips whatever its size:
//
//  1. de-duplication: a SET NX with a 24-hour TTL per event;
//  2. state, in event order: per count rule a ZADD, ZREMRANGEBYSCORE, ZCARD and PEXPIRE (and a GET
//     of the unless mark, or a SET of it); per sequence and absence instance one HGETALL the first
//     time the batch touches it; per join link a ZADD, ZREMRANGEBYSCORE and PEXPIRE, per trigger a
//     ZRANGEBYSCORE of the links;
//  3. writes: the sequence and absence hashes the batch changed (HSET and PEXPIRE, or DEL), the
//     count windows a match consumed, the absence timers (one sorted set), re-entry marks.
//
// Matches are decided in Go between 2 and 3, from the replies and the batch's own changes; they
// are counted, not started. It is what the issue calls the obvious design: plain and correct for
// an ordered, duplicate-free stream, with none of the stage's guarantees (a crash between 1 and 3
// loses the batch's events; absences are not fired here, as the benchmark's are due after it ends).
package obvious

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/bench/cep/compiled"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
)

// DedupeTTL is how long an event ID is remembered.
const DedupeTTL = 24 * time.Hour

// lateness is how long after its window an instance is kept.
const lateness = time.Hour

// Design is the obvious CEP.
type Design struct {
	rdb    redis.UniversalClient
	prefix string
	rules  []compiled.Rule

	matches, shadow, duplicates, dead atomic.Int64
}

// New keeps state under prefix.
func New(rdb redis.UniversalClient, prefix string, rules []cep.Rule) (*Design, error) {
	cs, err := compiled.Compile(rules)
	if err != nil {
		return nil, err
	}
	return &Design{rdb: rdb, prefix: prefix, rules: cs}, nil
}

// Matches is how many live matches would have started a reach; Shadow those of shadow rules.
func (d *Design) Matches() int64 { return d.matches.Load() }
func (d *Design) Shadow() int64  { return d.shadow.Load() }

func (d *Design) key(k, rule, kind string) string {
	return d.prefix + ":{" + strings.NewReplacer("{", "(", "}", ")").Replace(k) + "}:" + rule + ":" + kind
}

// hashState is a sequence or absence instance as the batch sees it: read once, changed in Go,
// written back at the end.
type hashState struct {
	read    *redis.MapStringStringCmd
	f       map[string]string
	loaded  bool
	dirty   bool
	deleted bool
	ttl     time.Duration
}

func (h *hashState) fields() map[string]string {
	if !h.loaded {
		h.f = h.read.Val()
		if h.f == nil {
			h.f = map[string]string{}
		}
		h.loaded = true
	}
	return h.f
}

func (h *hashState) set(kv ...string) {
	f := h.fields()
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = kv[i+1]
	}
	h.dirty, h.deleted = true, false
}

func (h *hashState) del() {
	clear(h.fields())
	h.dirty, h.deleted = true, true
}

// match is a decided match (the fields a start would need are the event's).
type match struct {
	rule   *compiled.Rule
	userID string
	id     string
}

// batch is one Handle call's working set.
type batch struct {
	d       *Design
	ctx     context.Context
	read    redis.Pipeliner
	write   redis.Pipeliner
	hashes  map[string]*hashState
	decide  []func()
	matches []match
	// consumed is, per count window, the cardinality at its last match in this batch (its DEL is
	// queued in the write pipeline, which the later replies of this batch do not see yet).
	consumed map[string]int64
}

// Handle processes one partition's batch (safe for concurrent partitions).
func (d *Design) Handle(msgs []*sarama.ConsumerMessage) error {
	ctx := context.Background()
	evs := make([]event.Event, 0, len(msgs))
	for _, m := range msgs {
		ev, err := event.Decode(m.Value)
		if err != nil {
			d.dead.Add(1)
			continue
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return nil
	}
	// 1. De-duplication.
	pipe := d.rdb.Pipeline()
	nx := make([]*redis.BoolCmd, len(evs))
	for i := range evs {
		nx[i] = pipe.SetNX(ctx, d.prefix+":{"+evs[i].Key()+"}:seen:"+evs[i].EventID, 1, DedupeTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	fresh := evs[:0]
	for i := range evs {
		if nx[i].Val() {
			fresh = append(fresh, evs[i])
		}
	}
	d.duplicates.Add(int64(len(evs) - len(fresh)))

	// 2. State, in event order; decisions queued in the same order.
	b := &batch{d: d, ctx: ctx, read: d.rdb.Pipeline(), write: d.rdb.Pipeline(), hashes: map[string]*hashState{},
		consumed: map[string]int64{}}
	for i := range fresh {
		ev := &fresh[i]
		var vars map[string]any
		for j := range d.rules {
			r := &d.rules[j]
			if r.Disabled || !r.Types[ev.Type] {
				continue
			}
			if vars == nil {
				vars = compiled.Vars(ev)
			}
			b.plan(r, ev, vars)
		}
	}
	if b.read.Len() > 0 {
		if _, err := b.read.Exec(ctx); err != nil && err != redis.Nil {
			return fmt.Errorf("read state: %w", err)
		}
	}
	for _, f := range b.decide {
		f()
	}

	// 3. Writes, and re-entry marks for the rules that have them.
	for k, h := range b.hashes {
		switch {
		case !h.dirty:
		case h.deleted:
			b.write.Del(ctx, k)
		default:
			args := make([]any, 0, 2*len(h.f))
			for f, v := range h.f {
				args = append(args, f, v)
			}
			b.write.HSet(ctx, k, args...)
			b.write.PExpire(ctx, k, h.ttl)
		}
	}
	reentry := make([]*redis.BoolCmd, len(b.matches))
	for i, m := range b.matches {
		if m.rule.Reentry == cep.ReentryEvery || m.rule.Shadow {
			continue
		}
		ttl := cep.OnceTTL
		if m.rule.Reentry == cep.ReentryCooldown {
			ttl = m.rule.Cooldown.D()
		}
		reentry[i] = b.write.SetNX(ctx, d.key(m.userID, m.rule.ID, "reentry"), m.id, ttl)
	}
	if b.write.Len() > 0 {
		if _, err := b.write.Exec(ctx); err != nil && err != redis.Nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	for i, m := range b.matches {
		switch {
		case reentry[i] != nil && !reentry[i].Val():
		case m.rule.Shadow:
			d.shadow.Add(1)
		default:
			d.matches.Add(1)
		}
	}
	return nil
}

func (b *batch) hash(k string, ttl time.Duration) *hashState {
	h := b.hashes[k]
	if h == nil {
		h = &hashState{read: b.read.HGetAll(b.ctx, k), ttl: ttl}
		b.hashes[k] = h
	}
	return h
}

func (b *batch) matched(r *compiled.Rule, userID, eventID string) {
	b.matches = append(b.matches, match{rule: r, userID: userID, id: r.ID + "/" + userID + "/" + eventID})
}

func (b *batch) plan(r *compiled.Rule, ev *event.Event, vars map[string]any) {
	ctx, d := b.ctx, b.d
	ts := compiled.Ms(ev.TS)
	if r.Kind == cep.KindJoin {
		b.planJoin(r, ev, vars, ts)
		return
	}
	if ev.UserID == "" {
		return
	}
	key, ok := r.Key(ev)
	if !ok {
		return
	}
	w := compiled.Msd(r.Within.D())
	ttl := r.Within.D() + lateness
	switch r.Kind {
	case cep.KindSingle:
		if r.Steps[0].Test(ev, vars) {
			b.decide = append(b.decide, func() { b.matched(r, ev.UserID, ev.EventID) })
		}
	case cep.KindCount:
		uk := d.key(key, r.ID, "unless")
		if r.Unless != nil && r.Unless.Test(ev, vars) {
			b.read.Set(ctx, uk, ts, ttl)
		}
		if !r.Steps[0].Test(ev, vars) {
			return
		}
		k := d.key(key, r.ID, "count")
		b.read.ZAdd(ctx, k, redis.Z{Score: float64(ts), Member: ev.EventID})
		b.read.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(ts-w, 10))
		card := b.read.ZCard(ctx, k)
		b.read.PExpire(ctx, k, ttl)
		var unless *redis.StringCmd
		if r.Unless != nil {
			unless = b.read.Get(ctx, uk)
		}
		b.decide = append(b.decide, func() {
			c := card.Val()
			if c-b.consumed[k] < int64(r.Count) {
				return
			}
			b.consumed[k] = c
			b.write.ZRemRangeByScore(ctx, k, "-inf", strconv.FormatInt(ts, 10))
			if unless != nil {
				if u, err := unless.Int64(); err == nil && u >= ts-w {
					return // suppressed
				}
			}
			b.matched(r, ev.UserID, ev.EventID)
		})
	case cep.KindSequence:
		h := b.hash(d.key(key, r.ID, "seq"), ttl)
		reset := r.Unless != nil && r.Unless.Test(ev, vars)
		mask := 0
		for i := range r.Steps {
			if r.Steps[i].Test(ev, vars) {
				mask |= 1 << i
			}
		}
		if !reset && mask == 0 {
			return
		}
		b.decide = append(b.decide, func() {
			if reset {
				h.del()
			}
			if mask == 0 {
				return
			}
			f := h.fields()
			next, _ := strconv.Atoi(f["next"])
			start, _ := strconv.ParseInt(f["start"], 10, 64)
			ids := f["ids"]
			if strings.Contains(","+ids+",", ","+ev.EventID+",") {
				return
			}
			if next > 0 && ts-start > w {
				next = 0
			}
			switch {
			case next > 0 && ts >= start && mask&(1<<next) != 0:
				next++
				if next >= len(r.Steps) {
					h.del()
					b.matched(r, ev.UserID, ev.EventID)
					return
				}
				h.set("next", strconv.Itoa(next), "ids", ids+","+ev.EventID)
			case mask&1 != 0:
				h.set("next", "1", "start", strconv.FormatInt(ts, 10), "ids", ev.EventID)
			}
		})
	case cep.KindAbsence:
		isB, isA := r.Absent.Test(ev, vars), r.Steps[0].Test(ev, vars)
		if !isA && !isB {
			return
		}
		k := d.key(key, r.ID, "abs")
		h := b.hash(k, ttl)
		timers := d.prefix + ":{timers}:due"
		b.decide = append(b.decide, func() {
			f := h.fields()
			if isB && f["ts"] != "" {
				if a, _ := strconv.ParseInt(f["ts"], 10, 64); ts >= a {
					b.write.ZRem(ctx, timers, k+"|"+f["id"])
					h.del()
				}
			}
			if !isA {
				return
			}
			if a, err := strconv.ParseInt(f["ts"], 10, 64); err == nil && a > ts {
				return // an older A does not replace a newer one
			}
			if f["id"] != "" {
				b.write.ZRem(ctx, timers, k+"|"+f["id"])
			}
			h.set("id", ev.EventID, "ts", strconv.FormatInt(ts, 10))
			b.write.ZAdd(ctx, timers, redis.Z{Score: float64(ts + w), Member: k + "|" + ev.EventID})
		})
	}
}

func (b *batch) planJoin(r *compiled.Rule, ev *event.Event, vars map[string]any, ts int64) {
	ctx := b.ctx
	if ev.ItemID == "" {
		return
	}
	k := b.d.key(ev.ItemID, r.ID, "links")
	ttl := r.LinkTTL.D()
	if r.Steps[0].Test(ev, vars) && ev.UserID != "" {
		b.read.ZAdd(ctx, k, redis.Z{Score: float64(ts), Member: ev.UserID})
		b.read.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(ts-compiled.Msd(ttl), 10))
		b.read.PExpire(ctx, k, ttl)
	}
	if ev.Type == "unfavorite" && ev.UserID != "" && r.Steps[0].Type == "favorite" {
		b.read.ZRem(ctx, k, ev.UserID)
	}
	if r.Steps[1].Test(ev, vars) {
		users := b.read.ZRangeByScore(ctx, k, &redis.ZRangeBy{
			Min: strconv.FormatInt(ts-compiled.Msd(ttl), 10), Max: strconv.FormatInt(ts, 10), Count: int64(r.MaxFanout),
		})
		b.decide = append(b.decide, func() {
			for _, u := range users.Val() {
				b.matched(r, u, ev.EventID)
			}
		})
	}
}
