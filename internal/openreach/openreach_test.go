package openreach_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/openreach"
	"github.com/omegareach/omega/internal/testenv"
)

func TestRegisterBoundsOpenRunsPerRule(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			prefix := testenv.Unique("open")
			now := time.Now()
			reg := func(reach, rule string, maxOpen int) bool {
				ok, err := openreach.Register(ctx, rdb, prefix, "u1", reach, openreach.Entry{RuleID: rule, Events: []string{"push_open"}}, maxOpen, now)
				require.NoError(t, err)
				return ok
			}
			require.True(t, reg("r1", "cart", 2))
			require.True(t, reg("r2", "cart", 2))
			require.False(t, reg("r3", "cart", 2), "a third open run of the rule is refused")
			require.True(t, reg("r2", "cart", 2), "registering again (a retry, a continue-as-new) is not a new run")
			require.True(t, reg("o1", "other", 2), "other rules are counted apart")
			require.True(t, reg("r4", "cart", 0), "no bound")

			require.NoError(t, openreach.Unregister(ctx, rdb, prefix, "u1", "r1"))
			require.True(t, reg("r5", "cart", 3))

			ttl, err := rdb.TTL(ctx, openreach.Key(prefix, "u1")).Result()
			require.NoError(t, err)
			require.Greater(t, ttl, 24*time.Hour, "the index expires, long after its runs")

			// A stale entry (a run that died without unregistering) does not count against the bound.
			_, err = openreach.Register(ctx, rdb, prefix, "u2", "old", openreach.Entry{RuleID: "cart", Until: now.Add(-time.Minute).Unix()}, 0, now)
			require.NoError(t, err)
			ok, err := openreach.Register(ctx, rdb, prefix, "u2", "new", openreach.Entry{RuleID: "cart"}, 1, now)
			require.NoError(t, err)
			require.True(t, ok)
			n, err := rdb.HLen(ctx, openreach.Key(prefix, "u2")).Result()
			require.NoError(t, err)
			require.EqualValues(t, 1, n, "the stale entry was dropped")
		})
	}
}

func TestWaiting(t *testing.T) {
	now := time.Unix(1000, 0)
	all := map[string]string{
		"a": `{"rule":"r","events":["push_open","order_paid"],"until":2000}`,
		"b": `{"rule":"r","events":["chat_started"],"until":2000}`,
		"c": `{"rule":"r","events":["push_open"],"until":500}`,
		"d": `not json`,
		"e": `{"rule":"r","events":["push_open"],"until":2000}`,
	}
	require.Equal(t, []string{"a", "e"}, openreach.Waiting(all, "push_open", now))
	require.Equal(t, []string{"b"}, openreach.Waiting(all, "chat_started", now))
	require.Empty(t, openreach.Waiting(all, "view", now))
}
