// Package testenv connects integration tests to the real servers that deploy/local/test.sh starts
// (`make test`). Under -short they skip; without the stack they fail and say how to get one, so an
// integration test can never pass by not running.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/store"
)

// Env is where the stack's servers listen.
type Env struct {
	Brokers           []string
	RedisAddr         string
	RedisClusterAddrs []string // the nodes of the stack's three-node Redis Cluster
	PGURL             string
	TemporalAddr      string
}

// Require returns the stack's addresses, skipping under -short.
func Require(t testing.TB) Env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the stack (skipped under -short)")
	}
	if os.Getenv("OMEGA_TEST_STACK") == "" {
		t.Fatal("integration test needs the real servers: run `make test` (it starts them), or `go test -short` for unit tests only")
	}
	cluster := os.Getenv("OMEGA_REDIS_CLUSTER_ADDRS")
	if cluster == "" {
		t.Fatal("integration test needs the stack's Redis Cluster (OMEGA_REDIS_CLUSTER_ADDRS): run `make test`, or deploy/local/test.sh (it starts one)")
	}
	return Env{
		Brokers:           strings.Split(os.Getenv("OMEGA_KAFKA_BROKERS"), ","),
		RedisAddr:         os.Getenv("OMEGA_REDIS_ADDR"),
		RedisClusterAddrs: strings.Split(cluster, ","),
		PGURL:             os.Getenv("OMEGA_PG_URL"),
		TemporalAddr:      os.Getenv("OMEGA_TEMPORAL_ADDR"),
	}
}

// Unique returns prefix plus a random suffix, for keys, topics, task queues and users that must
// not collide with other tests or earlier runs.
func Unique(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Redis returns a client closed at cleanup.
func (e Env) Redis(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.RedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.Ping(context.Background()).Err(), "redis at %s", e.RedisAddr)
	return rdb
}

// RedisCluster returns a client of the stack's Redis Cluster, closed at cleanup, once every slot is
// served (a cluster just created or restarted may still be settling).
func (e Env) RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: e.RedisClusterAddrs})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	require.NoError(t, rdb.Ping(ctx).Err(), "redis cluster at %v", e.RedisClusterAddrs)
	deadline := time.Now().Add(30 * time.Second)
	for {
		served, err := servedSlots(ctx, rdb)
		if err == nil && served == clusterSlots {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis cluster at %v serves %d of %d slots after 30s (err: %v)", e.RedisClusterAddrs, served, clusterSlots, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return rdb
}

const clusterSlots = 16384

// servedSlots counts the slots that have a node, and fails unless every node says the cluster is ok.
func servedSlots(ctx context.Context, rdb *redis.ClusterClient) (int, error) {
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range shards {
		if len(s.Nodes) == 0 {
			continue
		}
		for _, r := range s.Slots {
			n += int(r.End - r.Start + 1)
		}
	}
	err = rdb.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", c.Options().Addr)
		}
		return nil
	})
	return n, err
}

// RedisTarget is one kind of Redis deployment a test runs against.
type RedisTarget struct {
	Name   string // "single" or "cluster": a subtest's name
	Client redis.UniversalClient
}

// Redises returns the stack's single Redis and its Redis Cluster, for tests of Redis users that
// must hold on both (t.Run(target.Name, ...)): a multi-key operation whose keys are not under one
// hash tag passes on the single node and fails with CROSSSLOT on the cluster.
func (e Env) Redises(t testing.TB) []RedisTarget {
	t.Helper()
	return []RedisTarget{{Name: "single", Client: e.Redis(t)}, {Name: "cluster", Client: e.RedisCluster(t)}}
}

// Audit returns an audit store on a migrated database, closed at cleanup.
func (e Env) Audit(t testing.TB) *audit.Store {
	t.Helper()
	require.NoError(t, store.Migrate(e.PGURL))
	pool, err := pgxpool.New(context.Background(), e.PGURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return audit.NewStore(pool)
}

// FreshAudit returns an audit store on a database of its own, migrated, dropped at cleanup: for
// tests that change the audit table's shape (partitions) under other tests' feet otherwise.
func (e Env) FreshAudit(t testing.TB) *audit.Store {
	t.Helper()
	u := e.FreshDB(t)
	require.NoError(t, store.Migrate(u))
	pool, err := pgxpool.New(context.Background(), u)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return audit.NewStore(pool)
}

// FreshDB creates an empty database, dropped at cleanup, and returns its URL.
func (e Env) FreshDB(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, e.PGURL)
	require.NoError(t, err)
	defer admin.Close()
	name := Unique("omega_test_")
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	u, err := url.Parse(e.PGURL)
	require.NoError(t, err)
	u.Path = "/" + name
	t.Cleanup(func() {
		if a, err := pgxpool.New(ctx, e.PGURL); err == nil {
			_, _ = a.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			a.Close()
		}
	})
	return u.String()
}

// Temporal returns a client of the default namespace, closed at cleanup.
func (e Env) Temporal(t testing.TB) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: e.TemporalAddr})
	require.NoError(t, err, "temporal at %s", e.TemporalAddr)
	t.Cleanup(c.Close)
	return c
}
