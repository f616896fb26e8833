package cep

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// Absence timers live in one Redis sorted set scored by due time (event time of the A plus the
// window). Any replica's timer loop claims due entries by moving them, atomically, to an in-flight
// set with a lease; it fires the match, then removes the entry. A replica that dies mid-fire leaves
// the entry in flight until its lease ends, and the next claim fires it again: the workflow ID
// derived from the A collapses the second start, so each timer reaches the user exactly once.

// claimScript: KEYS[1] due timers, KEYS[2] in-flight. ARGV: now_ms, lease_ms, limit.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local until_ = now + tonumber(ARGV[2])
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZADD', KEYS[2], until_, m)
  table.insert(out, m)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])) do
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

// fireDue claims up to limit due absence timers at now, hands each still-pending one to start as a
// match, and retires it. It returns how many timers it claimed (fired or found cancelled), so a
// caller drains a backlog by calling again while a full page comes back. Rules come from the
// caller so a timer fires under the version it was set with, if that version is still loaded.
func (e *engine) fireDue(ctx context.Context, rules []compiledRule, now time.Time, limit int,
	start func(context.Context, []workflows.Match) error) (n int, err error) {
	err = e.withScripts(ctx, func() error {
		n, err = e.fireDueOnce(ctx, rules, now, limit, start)
		return err
	})
	return n, err
}

func (e *engine) fireDueOnce(ctx context.Context, rules []compiledRule, now time.Time, limit int,
	start func(context.Context, []workflows.Match) error) (int, error) {
	members, err := claimScript.Run(ctx, e.rdb, []string{e.timersKey(), e.inflightKey()},
		ms(now), msd(timerLease), limit).StringSlice()
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
			pipe.ZRem(ctx, e.inflightKey(), m) // not ours to understand: drop it
			continue
		}
		r := byID[t.Rule]
		if r == nil || r.Version != t.Version {
			// The rule was disabled or replaced: its instances end with it (documented).
			pipe.ZRem(ctx, e.inflightKey(), m)
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
			matches = append(matches, newMatch(f.rule, &ev, f.entry.Key, now))
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
		pipe.ZRem(ctx, e.inflightKey(), f.member)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("retire timers: %w", err)
	}
	return len(members), nil
}
