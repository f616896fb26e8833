package filter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Lists keeps the blacklist and the whitelist durably in PostgreSQL (table list_members), with a
// copy in a Redis set per list for the filter chain's hot path. Writes go to PostgreSQL first, then
// to Redis. A set whose copy is not marked loaded (a Redis restart without persistence lost it) is
// reloaded from PostgreSQL before it answers, so a lost Redis can never let a blacklisted user
// through: while PostgreSQL cannot answer either, the check fails and is retried.
type Lists struct {
	Pool  *pgxpool.Pool
	Redis redis.UniversalClient
}

// loadedKey marks a set whose copy is complete.
func loadedKey(key string) string { return key + ":loaded" }

// Add stores members in the list, then in its Redis set; it returns how many were new.
func (l *Lists) Add(ctx context.Context, name, key string, members []string) (int64, error) {
	if err := l.Ensure(ctx, name, key); err != nil {
		return 0, err
	}
	tag, err := l.Pool.Exec(ctx, `INSERT INTO list_members (list, member) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, name, members)
	if err != nil {
		return 0, fmt.Errorf("add to list %s: %w", name, err)
	}
	if err := l.Redis.SAdd(ctx, key, anys(members)...).Err(); err != nil {
		return 0, fmt.Errorf("add to list %s in redis: %w", name, err)
	}
	return tag.RowsAffected(), nil
}

// Remove takes members off the list, then off its Redis set; it returns how many were there.
func (l *Lists) Remove(ctx context.Context, name, key string, members []string) (int64, error) {
	if err := l.Ensure(ctx, name, key); err != nil {
		return 0, err
	}
	tag, err := l.Pool.Exec(ctx, `DELETE FROM list_members WHERE list = $1 AND member = ANY($2::text[])`, name, members)
	if err != nil {
		return 0, fmt.Errorf("remove from list %s: %w", name, err)
	}
	if err := l.Redis.SRem(ctx, key, anys(members)...).Err(); err != nil {
		return 0, fmt.Errorf("remove from list %s in redis: %w", name, err)
	}
	return tag.RowsAffected(), nil
}

// Ensure reloads the Redis copy of the list from PostgreSQL unless it is marked loaded. Members
// already in the set stay (a reload only adds), and concurrent reloads are harmless.
func (l *Lists) Ensure(ctx context.Context, name, key string) error {
	n, err := l.Redis.Exists(ctx, loadedKey(key)).Result()
	if err != nil {
		return fmt.Errorf("read list %s: %w", name, err)
	}
	if n == 1 {
		return nil
	}
	return l.load(ctx, name, key)
}

func (l *Lists) load(ctx context.Context, name, key string) error {
	rows, err := l.Pool.Query(ctx, `SELECT member FROM list_members WHERE list = $1`, name)
	if err != nil {
		return fmt.Errorf("load list %s: %w", name, err)
	}
	members, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("load list %s: %w", name, err)
	}
	for start := 0; start < len(members); start += 5000 {
		if err := l.Redis.SAdd(ctx, key, anys(members[start:min(start+5000, len(members))])...).Err(); err != nil {
			return fmt.Errorf("load list %s into redis: %w", name, err)
		}
	}
	return l.Redis.Set(ctx, loadedKey(key), time.Now().UTC().Format(time.RFC3339), 0).Err()
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// member reads a list's Redis copy, reloading it first when it is not marked loaded (with a
// loader); without one the set alone answers.
func member(ctx context.Context, rdb redis.UniversalClient, lists *Lists, name, key, user string) (bool, error) {
	if lists == nil {
		return rdb.SIsMember(ctx, key, user).Result()
	}
	pipe := rdb.Pipeline()
	in := pipe.SIsMember(ctx, key, user)
	loaded := pipe.Exists(ctx, loadedKey(key))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	if loaded.Val() == 1 {
		return in.Val(), nil
	}
	if err := lists.load(ctx, name, key); err != nil {
		return false, err
	}
	return rdb.SIsMember(ctx, key, user).Result()
}
