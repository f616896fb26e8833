package cep

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// The engine keeps the pattern state that no partition owns in Redis: join links and triggers
// (a link travels on its user's partition, a trigger on its item's) and the instances of rules
// keyed on something other than the user (events of one item come on every user's partition).
// The rest lives in each partition's machine (machine.go). All keys of one correlation key share a hash tag
// ({key}), so each script touches one Redis Cluster slot; every key has a TTL derived from its
// rule's window. A batch of events costs one pipelined round trip for state, plus one for the
// re-entry checks of its matches, plus one per page of join fan-out: never one per event.

// lateness is how long after its window a pattern's state is kept for late and replayed events.
const lateness = time.Hour

// countScript: KEYS[1] the rule's zset of counted event IDs by event time, KEYS[2] the key's last
// unless-event time, KEYS[3] the last match (the ID of the event that completed it and its
// result). ARGV: ts_ms, event_id, window_ms, n, ttl_ms. Returns 0 (no match), 1 (match), 2 (match
// suppressed by unless). The window is the W before the latest event time of the key, so late
// events count when they fall inside it; events older than it are dropped. A match clears the
// window: N more events are needed for the next. The event that completed a match, replayed
// (a crash before its reach started), gets the same answer again and clears the window again,
// so a replay repeats itself exactly.
var countScript = redis.NewScript(`
local ts = tonumber(ARGV[1])
local w = tonumber(ARGV[3])
local last = redis.call('GET', KEYS[3])
if last and string.sub(last, 3) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return tonumber(string.sub(last, 1, 1))
end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ts, ARGV[2])
-- The window ends at the latest event time seen, so a late event still counts with the others.
local top = tonumber(redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (top - w))
local c = redis.call('ZCARD', KEYS[1])
if c >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
  local res = 1
  local u = redis.call('GET', KEYS[2])
  if u and tonumber(u) >= top - w then res = 2 end
  redis.call('SET', KEYS[3], res .. '|' .. ARGV[2], 'PX', ARGV[5])
  return res
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 0`)

// unlessScript: KEYS[1] the key's last unless-event time. ARGV: ts_ms, ttl_ms.
var unlessScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0`)

// seqScript: KEYS[1] the instance hash (next step, start time, event IDs, and the last match:
// the event that completed it and its events). ARGV: ts_ms, event_id, window_ms, ttl_ms, mask
// (bit i set: the event satisfies step i), steps. Returns {0} or {1, ids}. Relaxed contiguity:
// other events may come between the steps. A step-0 event that does not advance the instance
// restarts it (the latest A counts). An event already in the instance is a no-op, and the event
// that completed the last match, replayed, gets that match again: replays repeat themselves.
var seqScript = redis.NewScript(`
local ts = tonumber(ARGV[1])
local id = ARGV[2]
local mask = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local st = redis.call('HMGET', KEYS[1], 'next', 'start', 'ids', 'done', 'doneids')
if st[4] == id then
  redis.call('HSET', KEYS[1], 'next', 0, 'ids', '')
  return {1, st[5]}
end
local nxt = tonumber(st[1]) or 0
local start = tonumber(st[2]) or 0
local ids = st[3] or ''
if string.find(',' .. ids .. ',', ',' .. id .. ',', 1, true) then return {0} end
if nxt > 0 and ts - start > tonumber(ARGV[3]) then nxt = 0 end
if nxt > 0 and ts >= start and bit.band(mask, bit.lshift(1, nxt)) ~= 0 then
  ids = ids .. ',' .. id
  nxt = nxt + 1
  if nxt >= n then
    redis.call('HSET', KEYS[1], 'next', 0, 'ids', '', 'done', id, 'doneids', ids)
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {1, ids}
  end
  redis.call('HSET', KEYS[1], 'next', nxt, 'ids', ids)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {0}
end
if bit.band(mask, 1) ~= 0 then
  redis.call('HSET', KEYS[1], 'next', 1, 'start', ts, 'ids', id)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {0}`)

// absStartScript: KEYS[1] the key's pending absence instance, KEYS[2] the key's Bs by event time.
// ARGV: ts_ms, event_id, expire_at_ms, window_ms. Returns 1 when the A waits. The latest A
// restarts the wait; an A with a B already read inside its window (a B from a partition ahead of
// the A's: the key's events come from every partition) does not wait. The instance expires by
// event time (its due time, the lateness and the engine's grace): its timer fires on the group's
// watermark, which may be that far behind the wall clock (a backlog, a partition without a
// consumer).
var absStartScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'ts')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
local ts = tonumber(ARGV[1])
if redis.call('ZCOUNT', KEYS[2], ts, '(' .. (ts + tonumber(ARGV[4]))) > 0 then
  if cur then redis.call('DEL', KEYS[1]) end
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'ts', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3], 'NX')
redis.call('PEXPIREAT', KEYS[1], ARGV[3], 'GT')
return 1`)

// absCancelScript: KEYS[1] the pending instance, KEYS[2] the key's Bs by event time. ARGV: ts_ms
// and event ID of a B, expire_at_ms, window_ms, keep_ms. A B at or after the A and inside its
// window cancels it. Every B is remembered (those older than keep_ms before the newest are
// dropped), so an A read after a B that follows it (on another partition, behind) does not wait.
var absCancelScript = redis.NewScript(`
local b = tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], 'ts')
if cur and b >= tonumber(cur) and b < tonumber(cur) + tonumber(ARGV[4]) then redis.call('DEL', KEYS[1]) end
redis.call('ZADD', KEYS[2], b, ARGV[2])
local top = tonumber(redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (top - tonumber(ARGV[5])))
redis.call('PEXPIREAT', KEYS[2], ARGV[3], 'NX')
redis.call('PEXPIREAT', KEYS[2], ARGV[3], 'GT')
return 0`)

// reentryScript: KEYS[1] the rule's re-entry mark for a key. ARGV: match id, ttl_ms. Returns 1
// when this match may start (first, or the same match replayed), or the match that holds it and
// the mark's remaining ms.
var reentryScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return {v, redis.call('PTTL', KEYS[1])} end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1`)

// engine advances pattern state for batches of events.
type engine struct {
	rdb    redis.UniversalClient
	prefix string
	grace  time.Duration // how long shared join keys and absence instances outlive their event time's need (Config.SharedGrace)
	// maxMatchAge is Config.MaxMatchAge (0 or negative: any age).
	maxMatchAge time.Duration
	// linkExp is the expiries this process has set on join link keys (linkExpiries).
	linkExp linkExpiries
}

// newEngine keeps state under prefix.
func newEngine(rdb redis.UniversalClient, prefix string) *engine {
	return &engine{rdb: rdb, prefix: prefix, grace: DefaultSharedGrace}
}

// braces turns a value's braces into parentheses, so it cannot end a hash tag early.
var braces = strings.NewReplacer("{", "(", "}", ")")

// tag returns a hash tag safe for any key value.
func tag(v string) string {
	if strings.ContainsAny(v, "{}") {
		v = braces.Replace(v)
	}
	return "{" + v + "}"
}

func (e *engine) stateKey(r *compiledRule, key, kind string) string {
	return e.prefix + ":" + tag(key) + ":r:" + r.ID + ":v" + strconv.Itoa(r.StateFrom()) + ":" + kind
}

func ms(t time.Time) int64         { return t.UnixMilli() }
func msd(d time.Duration) int64    { return d.Milliseconds() }
func ttlFor(r *compiledRule) int64 { return msd(r.Within.D() + lateness) }
func newMatch(r *compiledRule, e *event.Event, key string, now time.Time) workflows.Match {
	return workflows.Match{
		RuleID: r.ID, RuleVersion: r.Version, UserID: e.UserID, JourneyID: r.JourneyID, MatchKey: e.EventID,
		EventIDs: []string{e.EventID}, EventType: e.Type, ItemID: e.ItemID, EventTime: e.TS,
		MatchedAt: now, Attrs: e.Attrs, Shadow: r.Shadow, CorrelationKey: key, MaxOpen: r.MaxOpen, Rollout: r.Rollout, Chain: r.Chain,
	}
}

// pending is a pipelined script call whose result decides a match.
type pending struct {
	rule *compiledRule
	ev   *event.Event
	key  string
	cmd  *redis.Cmd
	kind string
}

// joinQuery is a trigger's fan-out to read.
type joinQuery struct {
	rule *compiledRule
	ev   *event.Event
	at   time.Time // when Kafka took the trigger (zero: unknown)
}

// timerEntry is what an absence timer carries to fire its match.
type timerEntry struct {
	Rule    string         `json:"r"`
	Version int            `json:"v"`
	Key     string         `json:"k"`
	EventID string         `json:"e"`
	UserID  string         `json:"u,omitempty"`
	ItemID  string         `json:"i,omitempty"`
	Type    string         `json:"t"`
	TS      time.Time      `json:"ts"`
	Attrs   map[string]any `json:"a,omitempty"`
}

// processShared advances the shared state (joins, and rules not keyed on the user) for items in
// partition order and returns the matches, before re-entry. Idempotent per event: replaying it
// yields the same matches.
// A join's triggers come back as fan-out jobs (fanout.go): their users are started a slice at a
// time, so a trigger with many links never holds its partition.
func (e *engine) processShared(ctx context.Context, items []sharedItem, now time.Time) (ms []workflows.Match, jobs []fanJob, err error) {
	err = e.withScripts(ctx, func() error {
		ms, jobs, err = e.processSharedOnce(ctx, items, now)
		return err
	})
	return ms, jobs, err
}

var allScripts = []*redis.Script{countScript, unlessScript, seqScript, absStartScript, absCancelScript,
	reentryScript, claimScript, pendingScript, doneScript, commitScript}

// withScripts runs fn and, when Redis lost the scripts (a restart, a failover), loads them and runs
// fn once more: pipelines call scripts by SHA and cannot fall back to EVAL by themselves. fn must be
// idempotent, which every state change here is.
func (e *engine) withScripts(ctx context.Context, fn func() error) error {
	err := fn()
	if err == nil || !strings.Contains(err.Error(), "NOSCRIPT") {
		return err
	}
	for _, s := range allScripts {
		if lerr := s.Load(ctx, e.rdb).Err(); lerr != nil {
			return fmt.Errorf("load scripts: %w", lerr)
		}
	}
	return fn()
}

func (e *engine) processSharedOnce(ctx context.Context, items []sharedItem, now time.Time) ([]workflows.Match, []fanJob, error) {
	pipe := e.rdb.Pipeline()
	var pend []pending
	var joins []joinQuery
	var late []lateLink
	var exps []linkExpirySet
	var matches []workflows.Match
	for _, it := range items {
		n := len(joins)
		e.plan(pipe, it.rule, it.ev, it.vars, now, &pend, &joins, &late, &exps, &matches)
		for i := n; i < len(joins); i++ {
			joins[i].at = it.at // the trigger's Kafka time: a stale trigger fans out to nobody
		}
	}
	heads := e.queueHeads(pipe, joins)
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return nil, nil, fmt.Errorf("advance pattern state: %w", err)
		}
		e.linkExp.set(exps)
	}
	for _, p := range pend {
		m, ok, err := e.decide(p, now)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			matches = append(matches, m)
		}
	}
	fanned, jobs, err := e.snapshotLinks(ctx, joins, heads, now)
	if err != nil {
		return nil, nil, err
	}
	matches = append(matches, fanned...)
	return append(matches, lateMatches(late, now)...), jobs, nil
}

func (e *engine) plan(pipe redis.Pipeliner, r *compiledRule, ev *event.Event, vars *condVars, now time.Time,
	pend *[]pending, joins *[]joinQuery, late *[]lateLink, exps *[]linkExpirySet, matches *[]workflows.Match) {
	ctx := context.Background() // commands are queued, not sent
	if r.Kind == KindJoin {
		e.planJoin(pipe, r, ev, vars, now, joins, late, exps)
		return
	}
	if ev.UserID == "" {
		return // user patterns need a user
	}
	key, ok := r.key(ev)
	if !ok {
		metrics.Unkeyed.WithLabelValues(r.ID).Inc()
		return
	}
	ts := ms(ev.TS)
	switch r.Kind {
	case KindSingle:
		if r.steps[0].test(ev, vars) {
			*matches = append(*matches, newMatch(r, ev, key, now))
		}
	case KindCount:
		if r.unless != nil && r.unless.test(ev, vars) {
			unlessScript.Run(ctx, pipe, []string{e.stateKey(r, key, "unless")}, ts, ttlFor(r))
		}
		if r.steps[0].test(ev, vars) {
			cmd := countScript.Run(ctx, pipe, []string{e.stateKey(r, key, "count"), e.stateKey(r, key, "unless"), e.stateKey(r, key, "countm")},
				ts, ev.EventID, msd(r.Within.D()), r.Count, ttlFor(r))
			*pend = append(*pend, pending{rule: r, ev: ev, key: key, cmd: cmd, kind: KindCount})
		}
	case KindSequence:
		if r.unless != nil && r.unless.test(ev, vars) {
			// A sequence with an unless clause restarts when the unless event comes.
			pipe.Del(ctx, e.stateKey(r, key, "seq"))
		}
		mask := 0
		for i := range r.steps {
			if r.steps[i].test(ev, vars) {
				mask |= 1 << i
			}
		}
		if mask != 0 {
			cmd := seqScript.Run(ctx, pipe, []string{e.stateKey(r, key, "seq")},
				ts, ev.EventID, msd(r.Within.D()), ttlFor(r), mask, len(r.steps))
			*pend = append(*pend, pending{rule: r, ev: ev, key: key, cmd: cmd, kind: KindSequence})
		}
	case KindAbsence:
		keys := []string{e.stateKey(r, key, "abs"), e.stateKey(r, key, "absb")}
		at := ts + ttlFor(r) + msd(e.grace)
		if r.absent.test(ev, vars) {
			absCancelScript.Run(ctx, pipe, keys, ts, ev.EventID, at, msd(r.Within.D()), ttlFor(r)+msd(e.grace))
		}
		if r.steps[0].test(ev, vars) {
			absStartScript.Run(ctx, pipe, keys, ts, ev.EventID, at, msd(r.Within.D()))
			entry, _ := json.Marshal(timerEntry{Rule: r.ID, Version: r.StateFrom(), Key: key, EventID: ev.EventID,
				UserID: ev.UserID, ItemID: ev.ItemID, Type: ev.Type, TS: ev.TS, Attrs: ev.Attrs})
			pipe.ZAdd(ctx, e.timerSet(timerShard(r, key))[0], redis.Z{Score: float64(ts + msd(r.Within.D())), Member: string(entry)})
		}
	}
}

func (e *engine) decide(p pending, now time.Time) (workflows.Match, bool, error) {
	switch p.kind {
	case KindCount:
		n, err := p.cmd.Int()
		if err != nil {
			return workflows.Match{}, false, fmt.Errorf("count state: %w", err)
		}
		return newMatch(p.rule, p.ev, p.key, now), n == 1, nil
	case KindSequence:
		res, err := p.cmd.Slice()
		if err != nil {
			return workflows.Match{}, false, fmt.Errorf("sequence state: %w", err)
		}
		if len(res) < 2 || res[0] != int64(1) {
			return workflows.Match{}, false, nil
		}
		m := newMatch(p.rule, p.ev, p.key, now)
		m.EventIDs = strings.Split(fmt.Sprint(res[1]), ",")
		return m, true, nil
	}
	return workflows.Match{}, false, nil
}

// applyReentryOnce marks the matches whose rule allows no second reach for the key yet
// (Suppressed: recorded, never started). A replayed match holds its own mark and passes again, so
// a crash between mark and start loses nothing.
// Callers (process, fireDue) run it inside withScripts.
func (e *engine) applyReentryOnce(ctx context.Context, rules []compiledRule, ms []workflows.Match) ([]workflows.Match, error) {
	byID := map[string]*compiledRule{}
	for i := range rules {
		byID[rules[i].ID] = &rules[i]
	}
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(ms))
	for i, m := range ms {
		r := byID[m.RuleID]
		if r == nil || r.Reentry == ReentryEvery || m.Shadow || m.Suppressed != "" { // stale: no mark
			continue
		}
		ttl := OnceTTL
		if r.Reentry == ReentryCooldown {
			ttl = r.Cooldown.D()
		}
		key := e.prefix + ":" + tag(m.UserID) + ":r:" + r.ID + ":reentry"
		if k := reentryOf(m); k != m.UserID {
			key += ":" + k // per correlation key (reentryOf)
		}
		cmds[i] = reentryScript.Run(ctx, pipe, []string{key}, workflows.ReachID(m.RuleID, m.UserID, m.MatchKey), msd(ttl))
	}
	if pipe.Len() == 0 {
		return ms, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("re-entry marks: %w", err)
	}
	out := ms[:0:0]
	for i, m := range ms {
		if cmds[i] != nil {
			if held, ok := cmds[i].Val().([]any); ok && len(held) == 2 {
				holder, _ := held[0].(string)
				var until int64
				if left, _ := held[1].(int64); left > 0 {
					until = time.Now().UnixMilli() + left // the mark's expiry, on the clock its TTL runs on
				}
				m.Suppressed = reentryReason(byID[m.RuleID], m, holder, until)
				metrics.Matches.WithLabelValues(m.RuleID, "suppressed").Inc()
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// dedupeMatches keeps the first of matches that would start the same workflow.
func dedupeMatches(ms []workflows.Match) []workflows.Match {
	seen := make(map[string]bool, len(ms))
	out := ms[:0]
	for _, m := range ms {
		id := workflows.ReachID(m.RuleID, m.UserID, m.MatchKey)
		if !seen[id] {
			seen[id] = true
			out = append(out, m)
		}
	}
	return out
}
