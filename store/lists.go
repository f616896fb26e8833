package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Lists are named sets of users (the blacklist, the whitelist) that the filter chain reads on its
// hot path and ListService edits. A list's name is its identity; where its members live is the
// implementation's business.
type Lists interface {
	// Names lists the lists there are, sorted.
	Names() []string
	// Add puts users on list and returns how many were new.
	Add(ctx context.Context, list string, users []string) (int64, error)
	// Remove takes users off list and returns how many were on it.
	Remove(ctx context.Context, list string, users []string) (int64, error)
	// Has reports whether user is on list. An error means the answer is unknown: a filter must
	// fail closed (retry), never pass.
	Has(ctx context.Context, list, user string) (bool, error)
	// HasMany reports, in one round trip, which of users are on list (on[i] for users[i]); an
	// error means the answers are unknown, as for Has.
	HasMany(ctx context.Context, list string, users []string) (on []bool, err error)
	// Scan pages through list's members, count at a time (a hint), from cursor (0: the start);
	// next is 0 after the last page.
	Scan(ctx context.Context, list string, cursor uint64, count int64) (users []string, next uint64, err error)
}

// ErrUnknownList is returned for a list name the store does not keep.
var ErrUnknownList = errors.New("unknown list")

// Redis sets of the lists unless configured otherwise.
const (
	BlacklistKey = "omega:list:blacklist"
	WhitelistKey = "omega:list:whitelist"
)

// ListSets keeps the lists durably in PostgreSQL (table list_members), with a copy in a Redis set
// per list for the filter chain's hot path. Writes go to PostgreSQL first, then to Redis. A set
// whose copy is not marked loaded (a Redis restart without persistence lost it) is reloaded from
// PostgreSQL before it answers, so a lost Redis can never let a blacklisted user through: while
// PostgreSQL cannot answer either, the check fails and is retried.
//
// Without a pool (tests, a deployment without PostgreSQL) the Redis sets alone are the lists.
type ListSets struct {
	pool *pgxpool.Pool
	rdb  redis.UniversalClient
	keys map[string]string
}

var _ Lists = (*ListSets)(nil)

// NewLists keeps the lists named by keys (list name -> Redis set) in pool's database (may be nil)
// and rdb.
func NewLists(pool *pgxpool.Pool, rdb redis.UniversalClient, keys map[string]string) *ListSets {
	return &ListSets{pool: pool, rdb: rdb, keys: keys}
}

// LoadedMember is a member of every list's Redis set whose copy is complete. It lives in the set
// itself, so whatever loses the set (a restart, an eviction, a failover, a Cluster shard) loses
// the mark with it. Scan leaves it out.
const LoadedMember = "\x00omega:loaded"

// markLoaded marks the set complete only if it holds at least the members just loaded: a Redis
// that lost data in the middle of a load is not marked, and the next check loads again.
var markLoaded = redis.NewScript(`
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('SADD', KEYS[1], ARGV[2])
  return 1
end
return 0`)

func (l *ListSets) Names() []string {
	names := make([]string, 0, len(l.keys))
	for n := range l.keys {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (l *ListSets) key(name string) (string, error) {
	k, ok := l.keys[name]
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownList, name)
	}
	return k, nil
}

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

func (l *ListSets) Add(ctx context.Context, name string, members []string) (int64, error) {
	key, err := l.key(name)
	if err != nil {
		return 0, err
	}
	if l.pool == nil {
		return l.rdb.SAdd(ctx, key, anys(members)...).Result()
	}
	if err := l.ensure(ctx, name, key); err != nil {
		return 0, err
	}
	tag, err := l.pool.Exec(ctx, `INSERT INTO list_members (list, member) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, name, members)
	if err != nil {
		return 0, fmt.Errorf("add to list %s: %w", name, err)
	}
	if err := l.rdb.SAdd(ctx, key, anys(members)...).Err(); err != nil {
		// The copy misses them now: unmark it, so the next check reloads.
		_ = l.rdb.SRem(context.WithoutCancel(ctx), key, LoadedMember).Err()
		return 0, fmt.Errorf("add to list %s in redis: %w", name, err)
	}
	return tag.RowsAffected(), nil
}

func (l *ListSets) Remove(ctx context.Context, name string, members []string) (int64, error) {
	key, err := l.key(name)
	if err != nil {
		return 0, err
	}
	if l.pool == nil {
		return l.rdb.SRem(ctx, key, anys(members)...).Result()
	}
	if err := l.ensure(ctx, name, key); err != nil {
		return 0, err
	}
	var n int64
	err = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if err := lock(ctx, tx, name, false); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM list_members WHERE list = $1 AND member = ANY($2::text[])`, name, members)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return l.rdb.SRem(ctx, key, anys(members)...).Err()
	})
	if err != nil {
		return 0, fmt.Errorf("remove from list %s: %w", name, err)
	}
	return n, nil
}

// Has reads the list's Redis copy, reloading it first when it is not marked loaded.
func (l *ListSets) Has(ctx context.Context, name, user string) (bool, error) {
	on, err := l.HasMany(ctx, name, []string{user})
	if err != nil {
		return false, err
	}
	return on[0], nil
}

func (l *ListSets) HasMany(ctx context.Context, name string, users []string) ([]bool, error) {
	key, err := l.key(name)
	if err != nil || len(users) == 0 {
		return nil, err
	}
	members := make([]any, 0, len(users)+1)
	for _, u := range users {
		members = append(members, u)
	}
	if l.pool == nil {
		return l.rdb.SMIsMember(ctx, key, members...).Result()
	}
	res, err := l.rdb.SMIsMember(ctx, key, append(members, LoadedMember)...).Result()
	if err != nil {
		return nil, err
	}
	if res[len(users)] {
		return res[:len(users)], nil
	}
	if err := l.load(ctx, name, key); err != nil {
		return nil, err
	}
	return l.rdb.SMIsMember(ctx, key, members...).Result()
}

func (l *ListSets) Scan(ctx context.Context, name string, cursor uint64, count int64) ([]string, uint64, error) {
	key, err := l.key(name)
	if err != nil {
		return nil, 0, err
	}
	if l.pool != nil {
		if err := l.ensure(ctx, name, key); err != nil {
			return nil, 0, err
		}
	}
	ids, next, err := l.rdb.SScan(ctx, key, cursor, "", count).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("scan list %s: %w", name, err)
	}
	return slices.DeleteFunc(ids, func(id string) bool { return id == LoadedMember }), next, nil
}

// ensure reloads the Redis copy of the list from PostgreSQL unless it is marked loaded. Members
// already in the set stay (a reload only adds), and concurrent reloads are harmless.
func (l *ListSets) ensure(ctx context.Context, name, key string) error {
	loaded, err := l.rdb.SIsMember(ctx, key, LoadedMember).Result()
	if err != nil {
		return fmt.Errorf("read list %s: %w", name, err)
	}
	if loaded {
		return nil
	}
	return l.load(ctx, name, key)
}

func (l *ListSets) load(ctx context.Context, name, key string) error {
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
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
			if err := l.rdb.SAdd(ctx, key, anys(members[start:min(start+5000, len(members))])...).Err(); err != nil {
				return err
			}
		}
		ok, err := markLoaded.Run(ctx, l.rdb, []string{key}, len(members), LoadedMember).Int()
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
