package filter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/store"
)

// Blacklist drops the users on the list named "blacklist".
type Blacklist struct{ lists store.Lists }

// NewBlacklist reads the blacklist from lists.
func NewBlacklist(lists store.Lists) *Blacklist { return &Blacklist{lists: lists} }

func (b *Blacklist) Name() string { return "blacklist" }

func (b *Blacklist) Check(ctx context.Context, r Request) (Verdict, error) {
	in, err := b.lists.Has(ctx, "blacklist", r.UserID)
	if err != nil {
		return Verdict{}, fmt.Errorf("read blacklist: %w", err) // fail closed: retried, never passed
	}
	if in {
		return Verdict{Outcome: Drop, Reason: "user is on the blacklist"}, nil
	}
	return Verdict{Outcome: Pass}, nil
}

// Whitelist passes only the users on the list named "whitelist": a chain for tests on real
// users, or a journey opened to a list first.
type Whitelist struct{ lists store.Lists }

// NewWhitelist reads the whitelist from lists.
func NewWhitelist(lists store.Lists) *Whitelist { return &Whitelist{lists: lists} }

func (w *Whitelist) Name() string { return "whitelist" }

// Has reports whether user is on the list (the gray rollout's allowlist).
func (w *Whitelist) Has(ctx context.Context, user string) (bool, error) {
	return w.lists.Has(ctx, "whitelist", user)
}

func (w *Whitelist) Check(ctx context.Context, r Request) (Verdict, error) {
	in, err := w.Has(ctx, r.UserID)
	if err != nil {
		return Verdict{}, fmt.Errorf("read whitelist: %w", err)
	}
	if !in {
		return Verdict{Outcome: Drop, Reason: "user is not on the whitelist"}, nil
	}
	return Verdict{Outcome: Pass}, nil
}

// Fatigue caps the sends a user gets in a sliding window (24 hours by default): per channel
// (PerChannel, e.g. at most 2 SMS) and across every channel, rule and journey (All, e.g. at most 3
// messages whatever the journey). The last slot of a cap is kept for journeys of priority
// LastSlotPriority or more (when set), so a promotion cannot take the room a transactional or
// important journey needs.
//
// A pass reserves the slot under the request's dispatch key, atomically for both caps, so two
// concurrent journeys cannot both take the last slot and a retried check takes nothing twice.
type Fatigue struct {
	rdb              redis.UniversalClient
	prefix           string
	Window           time.Duration
	All              int
	PerChannel       map[string]int
	LastSlotPriority int
}

// NewFatigue caps sends per user; keys start with prefix ("omega" when empty). A cap of 0 is no cap.
func NewFatigue(rdb redis.UniversalClient, prefix string, all int, perChannel map[string]int) *Fatigue {
	if prefix == "" {
		prefix = "omega"
	}
	return &Fatigue{rdb: rdb, prefix: prefix, Window: 24 * time.Hour, All: all, PerChannel: perChannel}
}

func (f *Fatigue) Name() string { return "fatigue" }

// The hash tag keeps a user's keys on one Redis Cluster slot.
func (f *Fatigue) keys(r Request) []string {
	base := f.prefix + ":{" + r.UserID + "}:fatigue:"
	return []string{base + "all", base + "ch:" + r.Channel}
}

// fatigueScript: KEYS[1] the all-channel window, KEYS[2] the channel's. ARGV: member, now ms,
// window ms, all cap, channel cap, priority, last-slot priority. A zset per window scores members
// by reservation time. Returns 1 when the member holds a slot (now or already), 0 when the all cap
// refuses, -1 when the channel cap refuses.
var fatigueScript = redis.NewScript(`
local member, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local caps = {tonumber(ARGV[4]), tonumber(ARGV[5])}
local prio, lastPrio = tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('ZSCORE', KEYS[1], member) then return 1 end
for i = 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if caps[i] > 0 then
    local used = redis.call('ZCARD', KEYS[i])
    local room = caps[i]
    if lastPrio > 0 and prio < lastPrio then room = caps[i] - 1 end
    if used >= room then
      if i == 1 then return 0 end
      return -1
    end
  end
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], window)
end
return 1`)

func (f *Fatigue) Check(ctx context.Context, r Request) (Verdict, error) {
	chCap := f.PerChannel[r.Channel]
	res, err := fatigueScript.Run(ctx, f.rdb, f.keys(r), r.DispatchKey, r.Now.UnixMilli(), f.Window.Milliseconds(),
		f.All, chCap, r.Priority, f.LastSlotPriority).Int()
	if err != nil {
		return Verdict{}, fmt.Errorf("reserve fatigue slot: %w", err)
	}
	held := ""
	if f.LastSlotPriority > 0 && r.Priority < f.LastSlotPriority {
		held = fmt.Sprintf(" (the last slot is kept for priority %d+, this journey has %d)", f.LastSlotPriority, r.Priority)
	}
	switch res {
	case 0:
		return Verdict{Outcome: Drop, Reason: fmt.Sprintf("fatigue: %d messages in %s across all journeys%s", f.All, human(f.Window), held)}, nil
	case -1:
		return Verdict{Outcome: Drop, Reason: fmt.Sprintf("fatigue: %d %s messages in %s%s", chCap, r.Channel, human(f.Window), held)}, nil
	}
	return Verdict{Outcome: Pass}, nil
}

// Release frees the slot reserved for r.
func (f *Fatigue) Release(ctx context.Context, r Request) error {
	pipe := f.rdb.Pipeline()
	for _, k := range f.keys(r) {
		pipe.ZRem(ctx, k, r.DispatchKey)
	}
	_, err := pipe.Exec(ctx)
	return err
}

func human(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

func init() {
	lists := func(name string, build func(store.Lists) Filter) Spec {
		return Spec{Name: name, Doc: "the " + name + " (ListService edits it)",
			New: func(_ plugin.Values, d Deps) (Filter, error) {
				if d.Lists == nil {
					return nil, errors.New("the lists are required")
				}
				return build(d.Lists), nil
			}}
	}
	builtin.MustRegister(lists("blacklist", func(l store.Lists) Filter { return NewBlacklist(l) }))
	builtin.MustRegister(lists("whitelist", func(l store.Lists) Filter { return NewWhitelist(l) }))
	builtin.MustRegister(Spec{
		Name: "fatigue",
		Doc:  "caps the messages a user gets in 24 hours",
		Fields: []plugin.Field{
			{Env: "OMEGA_DAILY_CAP", Default: "3", Check: plugin.Count, Doc: "most messages per user in 24 hours, every channel and journey"},
			{Env: "OMEGA_CHANNEL_CAPS", Check: plugin.Counts, Doc: "most per channel, e.g. sms=1,push=3"},
			{Env: "OMEGA_LAST_SLOT_PRIORITY", Default: "0", Check: plugin.Count,
				Doc: "a cap's last slot is kept for journeys of this priority or more (0: off)"},
		},
		New: func(s plugin.Values, d Deps) (Filter, error) {
			all, err := plugin.ReadCount(s.Get("OMEGA_DAILY_CAP"))
			if err != nil {
				return nil, fmt.Errorf("OMEGA_DAILY_CAP: %w", err)
			}
			if all == 0 {
				all = 3 // as it always was: no way to switch the daily cap off
			}
			caps, err := plugin.ReadCounts(s.Get("OMEGA_CHANNEL_CAPS"))
			if err != nil {
				return nil, fmt.Errorf("OMEGA_CHANNEL_CAPS: %w", err)
			}
			last, err := plugin.ReadCount(s.Get("OMEGA_LAST_SLOT_PRIORITY"))
			if err != nil {
				return nil, fmt.Errorf("OMEGA_LAST_SLOT_PRIORITY: %w", err)
			}
			f := NewFatigue(d.Redis, d.KeyPrefix, all, caps)
			f.LastSlotPriority = last
			return f, nil
		},
	})
}
