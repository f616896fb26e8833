package filter_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/store"
)

// The blacklist survives Redis losing it: the filter reloads its copy from PostgreSQL before it
// answers, so a blacklisted user is never let through by a restart without persistence.
func TestBlacklistSurvivesRedisLoss(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			key := testenv.Unique("bl-")
			lists := store.NewLists(env.Audit(t).Pool(), rdb, map[string]string{"blacklist": key})
			listed, free := testenv.Unique("listed-"), testenv.Unique("free-")
			n, err := lists.Add(ctx, "blacklist", []string{listed})
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			bl := filter.NewBlacklist(lists)
			check := func(user string) string {
				t.Helper()
				v, err := bl.Check(ctx, filter.Request{UserID: user, Channel: "push", Now: time.Now()})
				require.NoError(t, err)
				return v.Outcome
			}
			require.Equal(t, filter.Drop, check(listed))
			require.Equal(t, filter.Pass, check(free))

			// Redis restarts empty: the set and its loaded mark are gone.
			require.NoError(t, rdb.Del(ctx, key).Err())
			require.Equal(t, filter.Drop, check(listed), "reloaded from PostgreSQL")
			require.Equal(t, filter.Pass, check(free))

			n, err = lists.Remove(ctx, "blacklist", []string{listed})
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			require.NoError(t, rdb.Del(ctx, key).Err())
			require.Equal(t, filter.Pass, check(listed), "a removal is durable too")
		})
	}
}

// HasMany answers for a page of users in one round trip, and like Has reloads a lost copy from
// PostgreSQL before it answers (on a single Redis and on the Cluster).
func TestListsHasMany(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			key := testenv.Unique("wl-")
			for _, pool := range []bool{true, false} {
				lists := store.NewLists(nil, rdb, map[string]string{"whitelist": key})
				if pool {
					lists = store.NewLists(env.Audit(t).Pool(), rdb, map[string]string{"whitelist": key})
				}
				a, b, c := testenv.Unique("a-"), testenv.Unique("b-"), testenv.Unique("c-")
				_, err := lists.Add(ctx, "whitelist", []string{a, c})
				require.NoError(t, err)
				on, err := lists.HasMany(ctx, "whitelist", []string{a, b, c})
				require.NoError(t, err)
				require.Equal(t, []bool{true, false, true}, on)
				if pool {
					require.NoError(t, rdb.Del(ctx, key).Err())
					on, err = lists.HasMany(ctx, "whitelist", []string{c, b, a})
					require.NoError(t, err)
					require.Equal(t, []bool{true, false, true}, on, "reloaded from PostgreSQL")
				}
				on, err = lists.HasMany(ctx, "whitelist", nil)
				require.NoError(t, err)
				require.Empty(t, on)
				_, err = lists.HasMany(ctx, "nolist", []string{a})
				require.ErrorIs(t, err, store.ErrUnknownList)
				require.NoError(t, rdb.Del(ctx, key).Err())
			}
		})
	}
}
