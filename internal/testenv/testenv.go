// Package testenv connects integration tests to the real servers that deploy/local/test.sh starts
// (`make test`). Under -short they skip; without the stack they fail and say how to get one, so an
// integration test can never pass by not running.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/audit"
)

// Env is where the stack's servers listen.
type Env struct {
	Brokers      []string
	RedisAddr    string
	PGURL        string
	TemporalAddr string
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
	return Env{
		Brokers:      strings.Split(os.Getenv("OMEGA_KAFKA_BROKERS"), ","),
		RedisAddr:    os.Getenv("OMEGA_REDIS_ADDR"),
		PGURL:        os.Getenv("OMEGA_PG_URL"),
		TemporalAddr: os.Getenv("OMEGA_TEMPORAL_ADDR"),
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

// Audit returns an audit store on a migrated database, closed at cleanup.
func (e Env) Audit(t testing.TB) *audit.Store {
	t.Helper()
	require.NoError(t, audit.Migrate(e.PGURL))
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
	require.NoError(t, audit.Migrate(u))
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
