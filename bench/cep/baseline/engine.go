package baseline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/bench/cep/compiled"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// The scripts, key layout and batch plan below are cep/engine.go as of 5874283, unchanged but for
// the compiled rules coming from bench/cep/compiled.

// lateness is how long after its window a pattern's state is kept for late and replayed events.
const lateness = time.Hour

// countScript: KEYS[1] the rule's zset of counted event IDs by event time, KEYS[2] the key's last
// unless-event time. ARGV: ts_ms, event_id, window_ms, n, ttl_ms. Returns 0 (no match), 1 (match),
// 2 (match suppressed by unless).
var countScript = redis.NewScript(`
local ts = tonumber(ARGV[1])
local w = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ts, ARGV[2])
-- The window ends at the latest event time seen, so a late event still counts with the others.
local top = tonumber(redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (top - w))
local c = redis.call('ZCARD', KEYS[1])
if c >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
  local last = redis.call('GET', KEYS[2])
  if last and tonumber(last) >= top - w then return 2 end
  return 1
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

// seqScript: KEYS[1] the instance hash (next step, start time, event IDs). ARGV: ts_ms, event_id,
// window_ms, ttl_ms, mask (bit i set: the event satisfies step i), steps. Returns {0} or {1, ids}.
var seqScript = redis.NewScript(`
local ts = tonumber(ARGV[1])
local id = ARGV[2]
local mask = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local st = redis.call('HMGET', KEYS[1], 'next', 'start', 'ids')
local nxt = tonumber(st[1]) or 0
local start = tonumber(st[2]) or 0
local ids = st[3] or ''
if string.find(',' .. ids .. ',', ',' .. id .. ',', 1, true) then return {0} end
if nxt > 0 and ts - start > tonumber(ARGV[3]) then nxt = 0 end
if nxt > 0 and ts >= start and bit.band(mask, bit.lshift(1, nxt)) ~= 0 then
  ids = ids .. ',' .. id
  nxt = nxt + 1
  if nxt >= n then
    redis.call('DEL', KEYS[1])
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

// absStartScript: KEYS[1] the key's pending absence instance. ARGV: ts_ms, event_id, ttl_ms.
var absStartScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'ts')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'ts', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`)

// absCancelScript: KEYS[1] the pending instance. ARGV: ts_ms of a B. A B at or after the A cancels.
var absCancelScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'ts')
if cur and tonumber(ARGV[1]) >= tonumber(cur) then redis.call('DEL', KEYS[1]) return 1 end
return 0`)

// reentryScript: KEYS[1] the rule's re-entry mark for a key. ARGV: match id, ttl_ms.
var reentryScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1`)

var allScripts = []*redis.Script{countScript, unlessScript, seqScript, absStartScript, absCancelScript, reentryScript}

// tag returns a hash tag safe for any key value.
func tag(v string) string {
	return "{" + strings.NewReplacer("{", "(", "}", ")").Replace(v) + "}"
}

func (e *Engine) stateKey(r *compiled.Rule, key, kind string) string {
	return e.prefix + ":" + tag(key) + ":r:" + r.ID + ":v" + strconv.Itoa(r.Version) + ":" + kind
}

func (e *Engine) timersKey() string { return e.prefix + ":{timers}:due" }

func ms(t time.Time) int64          { return compiled.Ms(t) }
func msd(d time.Duration) int64     { return compiled.Msd(d) }
func ttlFor(r *compiled.Rule) int64 { return msd(r.Within.D() + lateness) }

func newMatch(r *compiled.Rule, e *event.Event, key string, now time.Time) workflows.Match {
	return workflows.Match{
		RuleID: r.ID, RuleVersion: r.Version, UserID: e.UserID, JourneyID: r.JourneyID, MatchKey: e.EventID,
		EventIDs: []string{e.EventID}, EventType: e.Type, ItemID: e.ItemID, EventTime: e.TS,
		MatchedAt: now, Attrs: e.Attrs, Shadow: r.Shadow, CorrelationKey: key, MaxOpen: r.MaxOpen, Rollout: r.Rollout, Chain: r.Chain,
	}
}

// pending is a pipelined script call whose result decides a match.
type pending struct {
	rule *compiled.Rule
	ev   *event.Event
	key  string
	cmd  *redis.Cmd
	kind string
}

// joinQuery is a trigger's fan-out to read.
type joinQuery struct {
	rule *compiled.Rule
	ev   *event.Event
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

// process advances every rule's state with evs (fresh events, in partition order) and returns the
// matches to start.
func (e *Engine) process(ctx context.Context, evs []event.Event, now time.Time) (ms []workflows.Match, err error) {
	err = e.withScripts(ctx, func() error {
		ms, err = e.processOnce(ctx, evs, now)
		return err
	})
	return ms, err
}

// withScripts runs fn and, when Redis lost the scripts, loads them and runs fn once more.
func (e *Engine) withScripts(ctx context.Context, fn func() error) error {
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

func (e *Engine) processOnce(ctx context.Context, evs []event.Event, now time.Time) ([]workflows.Match, error) {
	pipe := e.rdb.Pipeline()
	var pend []pending
	var joins []joinQuery
	var late []lateLink
	var matches []workflows.Match
	for i := range evs {
		ev := &evs[i]
		var vars map[string]any
		for j := range e.rules {
			r := &e.rules[j]
			if r.Disabled || !r.Types[ev.Type] {
				continue
			}
			if vars == nil {
				vars = compiled.Vars(ev)
			}
			e.plan(pipe, r, ev, vars, now, &pend, &joins, &late, &matches)
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return nil, fmt.Errorf("advance pattern state: %w", err)
		}
	}
	for _, p := range pend {
		m, ok, err := e.decide(p, now)
		if err != nil {
			return nil, err
		}
		if ok {
			matches = append(matches, m)
		}
	}
	fanned, err := e.fanOut(ctx, joins, now)
	if err != nil {
		return nil, err
	}
	matches = append(matches, fanned...)
	matches = append(matches, lateMatches(late, now)...)
	return e.applyReentryOnce(ctx, dedupeMatches(matches))
}

func (e *Engine) plan(pipe redis.Pipeliner, r *compiled.Rule, ev *event.Event, vars map[string]any, now time.Time,
	pend *[]pending, joins *[]joinQuery, late *[]lateLink, matches *[]workflows.Match) {
	ctx := context.Background() // commands are queued, not sent
	if r.Kind == cep.KindJoin {
		e.planJoin(pipe, r, ev, vars, joins, late)
		return
	}
	if ev.UserID == "" {
		return // user patterns need a user
	}
	key, ok := r.Key(ev)
	if !ok {
		return
	}
	ts := ms(ev.TS)
	switch r.Kind {
	case cep.KindSingle:
		if r.Steps[0].Test(ev, vars) {
			*matches = append(*matches, newMatch(r, ev, key, now))
		}
	case cep.KindCount:
		if r.Unless != nil && r.Unless.Test(ev, vars) {
			unlessScript.Run(ctx, pipe, []string{e.stateKey(r, key, "unless")}, ts, ttlFor(r))
		}
		if r.Steps[0].Test(ev, vars) {
			cmd := countScript.Run(ctx, pipe, []string{e.stateKey(r, key, "count"), e.stateKey(r, key, "unless")},
				ts, ev.EventID, msd(r.Within.D()), r.Count, ttlFor(r))
			*pend = append(*pend, pending{rule: r, ev: ev, key: key, cmd: cmd, kind: cep.KindCount})
		}
	case cep.KindSequence:
		if r.Unless != nil && r.Unless.Test(ev, vars) {
			pipe.Del(ctx, e.stateKey(r, key, "seq"))
		}
		mask := 0
		for i := range r.Steps {
			if r.Steps[i].Test(ev, vars) {
				mask |= 1 << i
			}
		}
		if mask != 0 {
			cmd := seqScript.Run(ctx, pipe, []string{e.stateKey(r, key, "seq")},
				ts, ev.EventID, msd(r.Within.D()), ttlFor(r), mask, len(r.Steps))
			*pend = append(*pend, pending{rule: r, ev: ev, key: key, cmd: cmd, kind: cep.KindSequence})
		}
	case cep.KindAbsence:
		if r.Absent.Test(ev, vars) {
			absCancelScript.Run(ctx, pipe, []string{e.stateKey(r, key, "abs")}, ts)
		}
		if r.Steps[0].Test(ev, vars) {
			absStartScript.Run(ctx, pipe, []string{e.stateKey(r, key, "abs")}, ts, ev.EventID, ttlFor(r))
			entry, _ := json.Marshal(timerEntry{Rule: r.ID, Version: r.Version, Key: key, EventID: ev.EventID,
				UserID: ev.UserID, ItemID: ev.ItemID, Type: ev.Type, TS: ev.TS, Attrs: ev.Attrs})
			pipe.ZAdd(ctx, e.timersKey(), redis.Z{Score: float64(ts + msd(r.Within.D())), Member: string(entry)})
		}
	}
}

func (e *Engine) decide(p pending, now time.Time) (workflows.Match, bool, error) {
	switch p.kind {
	case cep.KindCount:
		n, err := p.cmd.Int()
		if err != nil {
			return workflows.Match{}, false, fmt.Errorf("count state: %w", err)
		}
		return newMatch(p.rule, p.ev, p.key, now), n == 1, nil
	case cep.KindSequence:
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

// applyReentryOnce drops matches whose rule allows no second reach for the key yet.
func (e *Engine) applyReentryOnce(ctx context.Context, ms []workflows.Match) ([]workflows.Match, error) {
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(ms))
	for i, m := range ms {
		r := e.byID[m.RuleID]
		if r == nil || r.Reentry == cep.ReentryEvery || m.Shadow {
			continue
		}
		ttl := cep.OnceTTL
		if r.Reentry == cep.ReentryCooldown {
			ttl = r.Cooldown.D()
		}
		key := e.prefix + ":" + tag(m.UserID) + ":r:" + r.ID + ":reentry"
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
			if n, _ := cmds[i].Int(); n == 0 {
				continue
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
