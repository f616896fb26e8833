package cep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// The timers of absences whose state is shared (rules keyed on something other than the user: an
// item's A and B come on any user's partition) live in Redis sorted sets scored by due time (event
// time of the A plus the window), spread over timerShards sets by rule and key, each under its own
// hash tag, so no one Redis Cluster slot holds them all. They fire in event time: when the group's
// watermark, the least of its partitions' (each partition's commits carry its own; an idle one
// that has read everything publishes the wall clock less the allowed lateness), passes the due
// time, so a B still in any partition's backlog always wins. A partition that no replica consumes
// holds them back: an absence is never decided on events not yet read.
//
// Any replica's timer loop claims due entries by moving them, atomically, to an in-flight set with
// a lease (on the wall clock); it fires the match, then removes the entry. A replica that dies
// mid-fire leaves the entry in flight until its lease ends, and the next claim fires it again: the
// workflow ID derived from the A collapses the second start, so each timer reaches the user exactly
// once.

// timerShards is how many sorted sets hold the shared absence timers.
const timerShards = 16

// claimScript: KEYS[1] due timers, KEYS[2] in-flight. ARGV: due_ms (the group's watermark),
// now_ms (the wall clock, for leases), lease_ms, limit.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local until_ = now + tonumber(ARGV[3])
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[4])) do
  redis.call('ZADD', KEYS[2], until_, m)
  table.insert(out, m)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[4])) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], until_, m)
  table.insert(out, m)
end
return out`)

// pendingScript: KEYS[1] the pending instance; ARGV: the A's event ID. 1 while it still waits.
var pendingScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then return 1 end
return 0`)

// doneScript: KEYS[1] the pending instance; ARGV: the A's event ID. Ends it if it is still this A.
var doneScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)

// timerLease bounds how long a claimed timer waits before another replica may fire it again.
const timerLease = 30 * time.Second

// timerShard is the shard of rule r's timers for key.
func timerShard(r *compiledRule, key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(r.ID))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % timerShards)
}

// timerSets lists the sorted sets of timers, due and in flight: the shards, then the single pair
// that held every timer before the shards (its timers still fire).
func (e *engine) timerSets() [][2]string {
	out := make([][2]string, 0, timerShards+1)
	for i := range timerShards {
		out = append(out, e.timerSet(i))
	}
	return append(out, [2]string{e.prefix + ":{timers}:due", e.prefix + ":{timers}:inflight"})
}

// timerSet is a shard's sorted sets, due and in flight.
func (e *engine) timerSet(shard int) [2]string {
	t := e.prefix + ":{timers:" + strconv.Itoa(shard) + "}"
	return [2]string{t + ":due", t + ":inflight"}
}

// fireDue claims, from each set, up to limit absence timers due at or before upTo (the group's
// watermark), hands each still-pending one to start as a match, and retires it. It returns the
// most timers one set gave (fired or found cancelled), so a caller drains a backlog by calling
// again while a full page comes back. Rules come from the caller so a timer fires under the
// version it was set with, if that version is still loaded.
func (e *engine) fireDue(ctx context.Context, rules []compiledRule, upTo, now time.Time, limit int,
	start func(context.Context, []workflows.Match) error) (most int, err error) {
	var errs []error
	for _, set := range e.timerSets() {
		var n int
		if err := e.withScripts(ctx, func() (err error) {
			n, err = e.fireDueOnce(ctx, rules, set, upTo, now, limit, start)
			return err
		}); err != nil {
			errs = append(errs, err) // the other sets still fire
			continue
		}
		most = max(most, n)
	}
	return most, errors.Join(errs...)
}

func (e *engine) fireDueOnce(ctx context.Context, rules []compiledRule, set [2]string, upTo, now time.Time, limit int,
	start func(context.Context, []workflows.Match) error) (int, error) {
	members, err := claimScript.Run(ctx, e.rdb, set[:], ms(upTo), ms(now), msd(timerLease), limit).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("claim timers: %w", err)
	}
	if len(members) == 0 {
		return 0, nil
	}
	byID := map[string]*compiledRule{}
	for i := range rules {
		byID[rules[i].ID] = &rules[i]
	}
	type fired struct {
		member string
		entry  timerEntry
		rule   *compiledRule
		cmd    *redis.Cmd
	}
	var fs []fired
	pipe := e.rdb.Pipeline()
	for _, m := range members {
		var t timerEntry
		if err := json.Unmarshal([]byte(m), &t); err != nil {
			pipe.ZRem(ctx, set[1], m) // not ours to understand: drop it
			continue
		}
		r := byID[t.Rule]
		if r == nil || r.StateFrom() != t.Version {
			// The rule was disabled or replaced: its instances end with it (documented).
			pipe.ZRem(ctx, set[1], m)
			continue
		}
		f := fired{member: m, entry: t, rule: r}
		f.cmd = pendingScript.Run(ctx, pipe, []string{e.stateKey(r, t.Key, "abs")}, t.EventID)
		fs = append(fs, f)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("read pending absences: %w", err)
	}
	var matches []workflows.Match
	var live []fired
	for _, f := range fs {
		if n, _ := f.cmd.Int(); n == 1 {
			ev := event.Event{EventID: f.entry.EventID, UserID: f.entry.UserID, ItemID: f.entry.ItemID,
				Type: f.entry.Type, TS: f.entry.TS, Attrs: f.entry.Attrs}
			m := newMatch(f.rule, &ev, f.entry.Key, now)
			m.Due = f.entry.TS.Add(f.rule.Within.D())
			if reason := staleReason(&m, ms(upTo), e.maxMatchAge); reason != "" {
				m.Suppressed = reason
				metrics.Matches.WithLabelValues(m.RuleID, "stale").Inc()
			}
			matches = append(matches, m)
		}
		live = append(live, f)
	}
	matches, err = e.applyReentryOnce(ctx, rules, matches)
	if err != nil {
		return 0, err
	}
	if err := start(ctx, matches); err != nil {
		return 0, err // the lease runs out and a later claim fires them again
	}
	pipe = e.rdb.Pipeline()
	for _, f := range live {
		doneScript.Run(ctx, pipe, []string{e.stateKey(f.rule, f.entry.Key, "abs")}, f.entry.EventID)
		pipe.ZRem(ctx, set[1], f.member)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("retire timers: %w", err)
	}
	return len(members), nil
}
