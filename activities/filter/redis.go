package filter

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// BlacklistKey is the Redis set of users who must never be reached.
const BlacklistKey = "omega:list:blacklist"

// Blacklist drops users in a Redis set.
type Blacklist struct {
	rdb redis.UniversalClient
	key string
}

// NewBlacklist reads the set at key (BlacklistKey when empty).
func NewBlacklist(rdb redis.UniversalClient, key string) *Blacklist {
	if key == "" {
		key = BlacklistKey
	}
	return &Blacklist{rdb: rdb, key: key}
}

func (b *Blacklist) Name() string { return "blacklist" }

func (b *Blacklist) Check(ctx context.Context, r Request) (Verdict, error) {
	in, err := b.rdb.SIsMember(ctx, b.key, r.UserID).Result()
	if err != nil {
		return Verdict{}, fmt.Errorf("read blacklist: %w", err)
	}
	if in {
		return Verdict{Outcome: Drop, Reason: "user is on the blacklist"}, nil
	}
	return Verdict{Outcome: Pass}, nil
}

// DailyCap allows at most Limit sends per user per UTC day, across all rules and journeys. A pass
// reserves a slot under the request's dispatch key, atomically, so two concurrent reaches cannot
// both take the last slot and a retried check does not take a second one.
type DailyCap struct {
	rdb    redis.UniversalClient
	prefix string
	limit  int
}

// NewDailyCap caps sends per user per day; keys start with prefix ("omega" when empty).
func NewDailyCap(rdb redis.UniversalClient, prefix string, limit int) *DailyCap {
	if prefix == "" {
		prefix = "omega"
	}
	return &DailyCap{rdb: rdb, prefix: prefix, limit: limit}
}

func (d *DailyCap) Name() string { return "daily_cap" }

// The hash tag keeps a user's keys on one Redis Cluster slot.
func (d *DailyCap) key(r Request) string {
	return fmt.Sprintf("%s:{%s}:cap:%s", d.prefix, r.UserID, r.Now.UTC().Format("20060102"))
}

// reserveScript: KEYS[1] the day's set; ARGV: member, limit, ttl seconds. Returns 1 when the member
// holds a slot (now or already), 0 when the cap is reached.
var reserveScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1`)

func (d *DailyCap) Check(ctx context.Context, r Request) (Verdict, error) {
	ok, err := reserveScript.Run(ctx, d.rdb, []string{d.key(r)}, r.DispatchKey, d.limit, int((48 * time.Hour).Seconds())).Int()
	if err != nil {
		return Verdict{}, fmt.Errorf("reserve daily cap: %w", err)
	}
	if ok == 0 {
		return Verdict{Outcome: Drop, Reason: fmt.Sprintf("daily cap of %d sends reached", d.limit)}, nil
	}
	return Verdict{Outcome: Pass}, nil
}

// Release frees the slot reserved for r.
func (d *DailyCap) Release(ctx context.Context, r Request) error {
	return d.rdb.SRem(ctx, d.key(r), r.DispatchKey).Err()
}
