package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/internal/openreach"
	"github.com/omegareach/omega/internal/testenv"
)

// OMEGA_REDIS_ADDR with several addresses runs every process on a Redis Cluster: the client is a
// cluster client, and what the worker does with it (a fatigue reservation, the open-reach index)
// works there.
func TestRedisAddrSeedsACluster(t *testing.T) {
	env := testenv.Require(t)
	ctx := context.Background()

	t.Setenv("OMEGA_REDIS_ADDR", env.RedisAddr)
	single := configFromEnv().newRedis()
	t.Cleanup(func() { _ = single.Close() })
	require.IsType(t, &redis.Client{}, single, "one address is one server")

	t.Setenv("OMEGA_REDIS_ADDR", strings.Join(env.RedisClusterAddrs, ","))
	rdb := configFromEnv().newRedis()
	t.Cleanup(func() { _ = rdb.Close() })
	require.IsType(t, &redis.ClusterClient{}, rdb, "several addresses are a cluster's seeds")
	require.NoError(t, rdb.Ping(ctx).Err())

	prefix := testenv.Unique("seed")
	f := filter.NewFatigue(rdb, prefix, 1, map[string]int{"push": 1})
	for i := range 20 { // users on every node
		user := fmt.Sprintf("u%d", i)
		v, err := f.Check(ctx, filter.Request{UserID: user, DispatchKey: "k", Channel: "push", Now: time.Now()})
		require.NoError(t, err)
		require.Equal(t, filter.Pass, v.Outcome)
		ok, err := openreach.Register(ctx, rdb, prefix, user, "r", openreach.Entry{RuleID: "rule"}, 1, time.Now())
		require.NoError(t, err)
		require.True(t, ok)
	}
}
