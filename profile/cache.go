package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cached reads profiles through Redis: the hot path (every filter check, every route) costs one
// GET; a miss reads PostgreSQL and fills the cache for TTL. Writes go to PostgreSQL first, then
// drop the cached copy, so a changed consent is seen at the next read.
type Cached struct {
	Store  *Store
	Redis  redis.UniversalClient
	Prefix string        // key prefix ("omega" when empty)
	TTL    time.Duration // 10 minutes when zero
}

func (c *Cached) key(userID string) string {
	p := c.Prefix
	if p == "" {
		p = "omega"
	}
	return p + ":{" + userID + "}:profile"
}

func (c *Cached) ttl() time.Duration {
	if c.TTL == 0 {
		return 10 * time.Minute
	}
	return c.TTL
}

// Get returns userID's profile from the cache, or from PostgreSQL on a miss. A cache that cannot
// answer is skipped, not fatal.
func (c *Cached) Get(ctx context.Context, userID string) (Profile, error) {
	b, err := c.Redis.Get(ctx, c.key(userID)).Bytes()
	if err == nil {
		var p Profile
		if json.Unmarshal(b, &p) == nil {
			return p, nil
		}
	} else if !errors.Is(err, redis.Nil) && ctx.Err() != nil {
		return Profile{}, err
	}
	p, err := c.Store.Get(ctx, userID)
	if err != nil {
		return Profile{}, err
	}
	if b, err := json.Marshal(p); err == nil {
		// NX: a write that happened since this read has put the newer profile there; a stale
		// fill must not overwrite it.
		_ = c.Redis.SetNX(ctx, c.key(userID), b, c.ttl()).Err()
	}
	return p, nil
}

// UpsertMany writes profiles, then writes them through to the cache: readers that filled it from
// an older read (SET NX) cannot overwrite them, so an unsubscribe is seen at the next send.
func (c *Cached) UpsertMany(ctx context.Context, ps []Profile) error {
	if err := c.Store.UpsertMany(ctx, ps); err != nil {
		return err
	}
	// One SET per key: keys of different users live on different cluster slots.
	pipe := c.Redis.Pipeline()
	for _, p := range ps {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		pipe.Set(ctx, c.key(p.UserID), b, c.ttl())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// The database has the profiles; drop what the cache may hold rather than serve it.
		for _, p := range ps {
			c.Redis.Del(ctx, c.key(p.UserID))
		}
		return fmt.Errorf("cache profiles: %w", err)
	}
	return nil
}

// Upsert writes one profile.
func (c *Cached) Upsert(ctx context.Context, p Profile) error { return c.UpsertMany(ctx, []Profile{p}) }

// GetMany returns the profiles of userIDs (the zero profile for users without one): one pipeline
// of GETs, one query for the misses, one pipeline to fill the cache.
func (c *Cached) GetMany(ctx context.Context, userIDs []string) (map[string]Profile, error) {
	out := make(map[string]Profile, len(userIDs))
	pipe := c.Redis.Pipeline()
	cmds := make([]*redis.StringCmd, len(userIDs))
	for i, u := range userIDs {
		cmds[i] = pipe.Get(ctx, c.key(u))
	}
	_, _ = pipe.Exec(ctx) // misses and a cache that cannot answer fall through to PostgreSQL
	var miss []string
	for i, u := range userIDs {
		var p Profile
		if b, err := cmds[i].Bytes(); err == nil && json.Unmarshal(b, &p) == nil {
			out[u] = p
			continue
		}
		miss = append(miss, u)
	}
	if len(miss) == 0 {
		return out, nil
	}
	found, err := c.Store.GetMany(ctx, miss)
	if err != nil {
		return nil, err
	}
	fill := c.Redis.Pipeline()
	for _, u := range miss {
		p, ok := found[u]
		if !ok {
			p = Profile{UserID: u}
		}
		out[u] = p
		if b, err := json.Marshal(p); err == nil {
			fill.SetNX(ctx, c.key(u), b, c.ttl())
		}
	}
	_, _ = fill.Exec(ctx)
	return out, nil
}

// Stored returns the profiles PostgreSQL holds for userIDs, bypassing the cache; users without
// one are absent (where GetMany gives them the zero profile).
func (c *Cached) Stored(ctx context.Context, userIDs []string) (map[string]Profile, error) {
	return c.Store.GetMany(ctx, userIDs)
}
