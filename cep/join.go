package cep

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

func (e *engine) joinKey(r *compiledRule, item string) string {
	return e.prefix + ":" + tag(item) + ":r:" + r.ID + ":v" + strconv.Itoa(r.StateFrom()) + ":links"
}

func (e *engine) triggersKey(r *compiledRule, item string) string {
	return e.prefix + ":" + tag(item) + ":r:" + r.ID + ":v" + strconv.Itoa(r.StateFrom()) + ":triggers"
}

// lateLink is a link whose user may have missed a trigger processed before it, or (unlink) an
// unfavourite of the same batch, which takes back the late matches of the links before it in
// event time.
type lateLink struct {
	rule   *compiledRule
	ev     *event.Event
	cmd    *redis.StringSliceCmd // the item's kept triggers later than the link
	unlink bool
}

// linkExpiry is when (ms) an item's link key may go, written with a link of event time ts (ms)
// processed at now: its link TTL and a grace past the later of ts and the latest event time a
// process could accept now (now plus event.MaxFutureLag). Every link of the key needs at most that,
// and processing times only move on, so one unconditional PEXPIREAT per link keeps the key as long
// as its newest link needs, whatever order links come in and whatever partition writes them (a
// clock behind by less than the grace shortens nothing that is needed). Reckoned from the event
// time alone, an older link written after a newer one would shorten the key (it took PEXPIREAT NX
// then GT: one command more per link, the most frequent write of a join). The price: a key lives
// up to a day longer than its links need.
func linkExpiry(ts int64, now time.Time, ttl, grace time.Duration) int64 {
	return max(ts, ms(now)+msd(event.MaxFutureLag)) + msd(ttl) + msd(grace)
}

// linkExpiries remembers, by a 64-bit hash of the key, the expiry (ms) this process last set on
// each join link key, once the pipeline that set it succeeded. A link whose key this process set to
// within linkExpirySlack of what the link needs sends no PEXPIREAT (the most frequent join write,
// one command in three of a link): the key outlives the link's need by the grace less that slack,
// and one link an hour per key and process extends it. A process whose clock is behind may have
// shortened the key meanwhile, by less than the grace (linkExpiry); nothing else can: a link key
// is never emptied but by its expiry (an unfavourite moves its member out of every read, it does
// not remove it: planJoin), so it is never recreated without one under a remembered expiry, and
// a key that expired is past every expiry remembered for it. Bounded: it starts afresh at
// linkExpiriesMax keys.
type linkExpiries struct {
	mu sync.Mutex
	m  map[uint64]int64
}

const linkExpiriesMax = 1 << 20

// linkExpirySlack is how far short of a link's need its key's expiry may be left (at most a
// quarter of the grace).
func (e *engine) linkExpirySlack() int64 { return msd(min(time.Hour, e.grace/4)) }

func hashKey(k string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(k))
	return h.Sum64()
}

// covers reports whether this process has set key k to expire at or after at less slack.
func (l *linkExpiries) covers(k uint64, at, slack int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	set, ok := l.m[k]
	return ok && set >= at-slack
}

// set remembers expiries a successful pipeline set.
func (l *linkExpiries) set(sets []linkExpirySet) {
	if len(sets) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m)+len(sets) > linkExpiriesMax {
		l.m = make(map[uint64]int64, len(sets))
	}
	for _, s := range sets {
		if s.at > l.m[s.key] {
			l.m[s.key] = s.at
		}
	}
}

// linkExpirySet is a link key's expiry sent in a pipeline, remembered once it succeeds.
type linkExpirySet struct {
	key uint64
	at  int64
}

// expireAt sets key's expiry to at (ms), unless it expires later already: an item's trigger keys
// live a grace past their newest trigger's need, whatever order triggers come in.
func expireAt(ctx context.Context, pipe redis.Pipeliner, key string, at int64) {
	pipe.Do(ctx, "PEXPIREAT", key, at, "NX") // a new key (no expiry yet)
	pipe.Do(ctx, "PEXPIREAT", key, at, "GT")
}

// fresh reports whether a member whose key would expire at at (ms) is still worth writing at
// now, with a minute to spare for clocks: one older than that joins nothing, and writing it could
// delete its item's key at once (PEXPIREAT in the past) just as another partition's fresh member
// created it.
func fresh(at int64, now time.Time) bool { return at > ms(now)+msd(time.Minute) }

// planJoin queues a link (step 0: a user's event on an item) or records a trigger (step 1: the
// item's event) whose fan-out is read after the batch's links (queueHeads), so a link and a
// trigger in one batch see each other in order.
//
// Links are keyed by user and triggers by item, so they travel on different partitions and a
// trigger may be processed before a link that precedes it in event time. Triggers are therefore
// kept for the lateness bound, and a link also matches the kept triggers later than it: the join
// is exact in event time for links that arrive up to an hour late. The same (rule, user, trigger)
// found both ways is one match.
func (e *engine) planJoin(pipe redis.Pipeliner, r *compiledRule, ev *event.Event, vars *condVars, now time.Time,
	joins *[]joinQuery, late *[]lateLink, exps *[]linkExpirySet) {
	ctx := context.Background()
	if ev.ItemID == "" {
		return
	}
	k := e.joinKey(r, ev.ItemID)
	if r.steps[0].test(ev, vars) && ev.UserID != "" {
		// Record the link, keep the key as long as its newest link needs (linkExpiry), and read the item's
		// kept triggers later than the link; a link already past its need is only read with
		// (fresh). One link in linkTrimEvery also drops the item's links older than the link TTL
		// before it and those past MaxFanout (the newest kept), which every link did before (a
		// third of its commands): the reads take the newest MaxFanout in their span whatever the
		// set holds, so sampling the trims changes no match, only how far past them the set
		// grows. As ever, the trims are relative to the link that makes them: a trigger read
		// after links newer than it by more than the link TTL, or after more than MaxFanout
		// newer links, finds its own older links trimmed (a trigger lagging that far is not
		// served exactly). Plain commands, pipelined
		// with the batch's others: a Lua script per link cost Redis about four times their CPU.
		// They need no atomicity: a trigger is recorded before its partition reads the links
		// (queueHeads), a link before its own read of the triggers, so of a link and a trigger
		// racing on two partitions at least one finds the other (both may: one match ID).
		ts, ttl := ms(ev.TS), msd(r.LinkTTL.D())
		if fresh(ts+ttl+msd(e.grace), now) {
			pipe.ZAdd(ctx, k, redis.Z{Score: float64(ts), Member: ev.UserID})
			if trimsLinks(ev.EventID) {
				pipe.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(ts-ttl, 10))
				pipe.ZRemRangeByRank(ctx, k, 0, int64(-r.MaxFanout-1))
			}
			at, h := linkExpiry(ts, now, r.LinkTTL.D(), e.grace), hashKey(k)
			if !e.linkExp.covers(h, at, e.linkExpirySlack()) {
				pipe.PExpireAt(ctx, k, time.UnixMilli(at))
				*exps = append(*exps, linkExpirySet{key: h, at: at})
			}
		}
		cmd := pipe.ZRangeByScore(ctx, e.triggersKey(r, ev.ItemID), &redis.ZRangeBy{Min: "(" + strconv.FormatInt(ts, 10),
			Max: strconv.FormatInt(ts+ttl, 10)})
		*late = append(*late, lateLink{rule: r, ev: ev, cmd: cmd})
	}
	if ev.Type == "unfavorite" && ev.UserID != "" && r.steps[0].Type == "favorite" {
		// Scored out of every read, not removed (the next trim of the key drops it): a key emptied
		// by an unfavourite would be created again by the next link without an expiry, where
		// linkExpiries remembers one (XX: an unfavourite of no link writes nothing).
		pipe.ZAddXX(ctx, k, redis.Z{Score: math.Inf(-1), Member: ev.UserID})
		*late = append(*late, lateLink{rule: r, ev: ev, unlink: true})
	}
	if r.steps[1].test(ev, vars) {
		// Keep the trigger for the lateness bound (a link up to that late still finds it), its key
		// a grace past the newest trigger's.
		*joins = append(*joins, joinQuery{rule: r, ev: ev})
		ts, tk := ms(ev.TS), e.triggersKey(r, ev.ItemID)
		if at := ts + msd(lateness+e.grace); fresh(at, now) {
			b, _ := json.Marshal(ev)
			pipe.ZAdd(ctx, tk, redis.Z{Score: float64(ts), Member: b})
			pipe.ZRemRangeByScore(ctx, tk, "-inf", "("+strconv.FormatInt(ts-msd(lateness), 10))
			expireAt(ctx, pipe, tk, at)
		}
	}
}

// linkTrimEvery: one link in this many trims its item's set (planJoin), chosen by its event ID so a
// replay trims where the first pass did. An item's set holds, past what the trims keep, about
// this many links more.
const linkTrimEvery = 8

func trimsLinks(eventID string) bool {
	h := fnv.New32a()
	_, _ = h.Write([]byte(eventID))
	return h.Sum32()%linkTrimEvery == 0
}

// lateMatches turns the triggers a link found into matches for the link's user, but for a
// trigger the user unfavourited the item before, in event time, by an unfavourite of the same
// batch (one read in a later batch comes too late: docs/cep-state.md).
func lateMatches(ls []lateLink, now time.Time) []workflows.Match {
	var out []workflows.Match
	for _, l := range ls {
		if l.unlink {
			continue
		}
		trigs, _ := l.cmd.Result()
		for _, raw := range trigs {
			var trig event.Event
			if json.Unmarshal([]byte(raw), &trig) != nil || unlinkedBy(ls, l, trig.TS) {
				continue
			}
			m := newMatch(l.rule, &trig, l.ev.UserID, now)
			m.UserID = l.ev.UserID
			out = append(out, m)
		}
	}
	return out
}

// unlinkedBy reports whether one of ls is an unfavourite of l's user and item after l and at or
// before at, in event time.
func unlinkedBy(ls []lateLink, l lateLink, at time.Time) bool {
	for _, u := range ls {
		if u.unlink && u.rule == l.rule && u.ev.UserID == l.ev.UserID && u.ev.ItemID == l.ev.ItemID &&
			u.ev.TS.After(l.ev.TS) && !u.ev.TS.After(at) {
			return true
		}
	}
	return false
}

// linkSpan is the score range of the links a trigger reads: those of the link TTL before it. The
// reads take them newest first, at most MaxFanout.
func linkSpan(q joinQuery) (string, string) {
	return strconv.FormatInt(ms(q.ev.TS)-msd(q.rule.LinkTTL.D()), 10), strconv.FormatInt(ms(q.ev.TS), 10)
}

// queueHeads queues, after every link of the batch (planJoin), each trigger's first page of
// linked users: commands to one key run in the order they were sent, so the page sees the batch's
// links without a round trip of its own.
func (e *engine) queueHeads(pipe redis.Pipeliner, qs []joinQuery) []*redis.StringSliceCmd {
	heads := make([]*redis.StringSliceCmd, len(qs))
	for i, q := range qs {
		from, to := linkSpan(q)
		heads[i] = pipe.ZRangeArgs(context.Background(), redis.ZRangeArgs{Key: e.joinKey(q.rule, q.ev.ItemID), ByScore: true,
			Rev: true, Start: to, Stop: from, Count: fanPageSize + 1})
	}
	return heads
}

// snapshotLinks turns, for each trigger, the users linked to its item before it (bounded by
// MaxFanout, the newest kept; heads read them after the batch's links were written, so a link and
// a trigger in one batch see each other in order) into matches. A trigger with at most a page of
// users matches them in the batch, like any other event; a bigger one gets a snapshot of its own,
// which its fan-out job pages through (links that come and go meanwhile move no page boundary):
// one more round trip, for the few triggers that need it.
func (e *engine) snapshotLinks(ctx context.Context, qs []joinQuery, heads []*redis.StringSliceCmd, now time.Time) ([]workflows.Match, []fanJob, error) {
	if len(qs) == 0 {
		return nil, nil, nil
	}
	var matches []workflows.Match
	var big []joinQuery
	for i, q := range qs {
		users := heads[i].Val()
		if len(users) > fanPageSize {
			// A page or less is matched here and suppressed with the batch's stale matches
			// (Stage.markStale); past a page, a stale trigger's fan-out is not started at all.
			if stale := staleReason(&workflows.Match{EventTime: q.ev.TS, ReceivedAt: q.at}, 0, e.maxMatchAge); stale != "" {
				metrics.Matches.WithLabelValues(q.rule.ID, "stale").Inc()
				continue
			}
			big = append(big, q)
			continue
		}
		for _, u := range users[:min(len(users), q.rule.MaxFanout)] {
			matches = append(matches, fanMatch(q.rule, q.ev, u, now))
		}
	}
	if len(big) == 0 {
		return matches, nil, nil
	}
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(big))
	for i, q := range big {
		from, to := linkSpan(q)
		snap := e.fanKey(q.rule, q.ev)
		cmds[i] = pipe.ZRangeStore(ctx, snap, redis.ZRangeArgs{Key: e.joinKey(q.rule, q.ev.ItemID), ByScore: true, Rev: true,
			Start: to, Stop: from, Count: int64(q.rule.MaxFanout)})
		pipe.PExpire(ctx, snap, fanSnapshotTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, nil, fmt.Errorf("snapshot join links: %w", err)
	}
	jobs := make([]fanJob, len(big))
	for i, q := range big {
		jobs[i] = fanJob{rule: q.rule, ev: *q.ev, snap: e.fanKey(q.rule, q.ev), total: min(cmds[i].Val(), int64(q.rule.MaxFanout))}
	}
	return matches, jobs, nil
}

// fanMatch is a join trigger's match for one of its item's linked users.
func fanMatch(r *compiledRule, trigger *event.Event, user string, now time.Time) workflows.Match {
	m := newMatch(r, trigger, user, now)
	m.UserID = user
	return m
}

func (e *engine) fanKey(r *compiledRule, trigger *event.Event) string {
	return e.prefix + ":" + tag(trigger.ItemID) + ":r:" + r.ID + ":v" + strconv.Itoa(r.StateFrom()) + ":fan:" + trigger.EventID
}

// fanPage reads users [from, from+n) of a fan-out snapshot.
func (e *engine) fanPage(ctx context.Context, snap string, from, n int64) ([]string, error) {
	users, err := e.rdb.ZRange(ctx, snap, from, from+n-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read fan-out page of %s: %w", snap, err)
	}
	return users, nil
}

// checkRedisVersion refuses a Redis older than 7.0, whose PEXPIREAT has no NX or GT (the join keys'
// expiry): a clear error at start rather than a partition retrying a rejected pipeline. A Redis
// that cannot be reached now is left to the stage's retries.
func checkRedisVersion(ctx context.Context, rdb redis.UniversalClient) error {
	info, _ := rdb.Info(ctx, "server").Result() // "" when it cannot be reached now
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			major, _, _ := strings.Cut(v, ".")
			if n, err := strconv.Atoi(major); err == nil && n < 7 {
				return fmt.Errorf("cep: Redis %s: the stage needs Redis 7.0 or later (join keys expire with PEXPIREAT NX and GT)", v)
			}
			return nil
		}
	}
	return nil
}
