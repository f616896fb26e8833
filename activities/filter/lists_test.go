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
