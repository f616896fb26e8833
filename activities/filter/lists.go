package filter

import (
	"context"
	"errors"
	"fmt"

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

// LoadedMember is a member of every list's Redis set whose copy is complete. It lives in the set
// itself, so whatever loses the set (a restart, an eviction, a failover, a Cluster shard) loses
// the mark with it. ListMembers leaves it out.
const LoadedMember = "\x00omega:loaded"

// markLoaded marks the set complete only if it holds at least the members just loaded: a Redis
// that lost data in the middle of a load is not marked, and the next check loads again.
var markLoaded = redis.NewScript(`
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('SADD', KEYS[1], ARGV[2])
  return 1
end
return 0`)

// lock serialises a list's removals with its reloads (a reload must not put back a member removed
// meanwhile); reloads share it.
func lock(ctx context.Context, tx pgx.Tx, name string, shared bool) error {
	q := `SELECT pg_advisory_xact_lock(hashtext('list:' || $1))`
	if shared {
		q = `SELECT pg_advisory_xact_lock_shared(hashtext('list:' || $1))`
	}
	_, err := tx.Exec(ctx, q, name)
	return err
}

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
		// The copy misses them now: unmark it, so the next check reloads.
		_ = l.Redis.SRem(context.WithoutCancel(ctx), key, LoadedMember).Err()
		return 0, fmt.Errorf("add to list %s in redis: %w", name, err)
	}
	return tag.RowsAffected(), nil
}

// Remove takes members off the list, then off its Redis set; it returns how many were there.
func (l *Lists) Remove(ctx context.Context, name, key string, members []string) (int64, error) {
	if err := l.Ensure(ctx, name, key); err != nil {
		return 0, err
	}
	var n int64
	err := pgx.BeginFunc(ctx, l.Pool, func(tx pgx.Tx) error {
		if err := lock(ctx, tx, name, false); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM list_members WHERE list = $1 AND member = ANY($2::text[])`, name, members)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return l.Redis.SRem(ctx, key, anys(members)...).Err()
	})
	if err != nil {
		return 0, fmt.Errorf("remove from list %s: %w", name, err)
	}
	return n, nil
}

// Ensure reloads the Redis copy of the list from PostgreSQL unless it is marked loaded. Members
// already in the set stay (a reload only adds), and concurrent reloads are harmless.
func (l *Lists) Ensure(ctx context.Context, name, key string) error {
	loaded, err := l.Redis.SIsMember(ctx, key, LoadedMember).Result()
	if err != nil {
		return fmt.Errorf("read list %s: %w", name, err)
	}
	if loaded {
		return nil
	}
	return l.load(ctx, name, key)
}

func (l *Lists) load(ctx context.Context, name, key string) error {
	err := pgx.BeginFunc(ctx, l.Pool, func(tx pgx.Tx) error {
		if err := lock(ctx, tx, name, true); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT member FROM list_members WHERE list = $1`, name)
		if err != nil {
			return err
		}
		members, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for start := 0; start < len(members); start += 5000 {
			if err := l.Redis.SAdd(ctx, key, anys(members[start:min(start+5000, len(members))])...).Err(); err != nil {
				return err
			}
		}
		ok, err := markLoaded.Run(ctx, l.Redis, []string{key}, len(members), LoadedMember).Int()
		if err != nil {
			return err
		}
		if ok != 1 {
			return errors.New("redis lost members during the load")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load list %s: %w", name, err)
	}
	return nil
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
	res, err := rdb.SMIsMember(ctx, key, user, LoadedMember).Result()
	if err != nil {
		return false, err
	}
	if res[1] {
		return res[0], nil
	}
	if err := lists.load(ctx, name, key); err != nil {
		return false, err
	}
	return rdb.SIsMember(ctx, key, user).Result()
}
