package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/store"
)

// awaitDependency calls connect until it succeeds, ctx ends or it fails for a reason waiting
// cannot mend (permanent: bad credentials, a bad address, a schema PostgreSQL refuses). A process
// started while a dependency is down (a restart during an outage, a deploy during a failover, a
// replica replacing one that died in it) waits for the dependency, as a running process rides out
// the same outage, instead of exiting with nothing to start it again. Its readiness stays false
// meanwhile, and each attempt is logged.
func awaitDependency[T any](ctx context.Context, log *slog.Logger, name string, connect func() (T, error),
	permanent func(error) bool) (T, error) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := connect()
		if err == nil {
			if attempt > 1 {
				log.Info("dependency up", "dependency", name, "attempts", attempt)
			}
			return v, nil
		}
		if permanent(err) || ctx.Err() != nil {
			return v, err
		}
		log.Warn("waiting for dependency", "dependency", name, "attempt", attempt, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// openStore migrates PostgreSQL's schema and opens a pool, waiting for PostgreSQL to answer.
func openStore(ctx context.Context, log *slog.Logger, dsn string) (*pgxpool.Pool, error) {
	if _, err := pgxpool.ParseConfig(dsn); err != nil {
		return nil, err // a bad OMEGA_PG_URL is not mended by waiting
	}
	return awaitDependency(ctx, log, "postgresql", func() (*pgxpool.Pool, error) { return store.Open(ctx, dsn) }, pgPermanent)
}

// pgPermanent: PostgreSQL refused for a reason other than being unreachable, starting, shutting
// down or out of connections (SQLSTATE classes 08, 53 and 57). The SQLSTATE is read from the
// message too, where a library flattened the error.
func pgPermanent(err error) bool {
	var dirty migrate.ErrDirty
	if errors.As(err, &dirty) {
		return true
	}
	code := ""
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		code = pe.Code
	} else if msg := err.Error(); strings.Contains(msg, "(SQLSTATE ") {
		code, _, _ = strings.Cut(msg[strings.LastIndex(msg, "(SQLSTATE ")+len("(SQLSTATE "):], ")")
	}
	if len(code) < 2 {
		return false // no answer from PostgreSQL: refused, reset, timed out
	}
	switch code[:2] {
	case "08", "53", "57":
		return false
	}
	return true
}

// dialTemporalWhenUp dials Temporal, waiting for its frontend to answer.
func dialTemporalWhenUp(ctx context.Context, log *slog.Logger, cfg config) (client.Client, error) {
	return awaitDependency(ctx, log, "temporal", func() (client.Client, error) { return dialTemporal(ctx, log, cfg) }, temporalPermanent)
}

// temporalPermanent: Temporal answered and refused (credentials, a bad request), or the options
// themselves are wrong; unreachable or unavailable frontends are waited for.
func temporalPermanent(err error) bool {
	var se interface{ Status() *status.Status }
	if !errors.As(err, &se) {
		var gs interface{ GRPCStatus() *status.Status }
		if !errors.As(err, &gs) {
			return !strings.Contains(err.Error(), "failed reaching server") // options refused before any dial
		}
		return permanentCode(gs.GRPCStatus().Code())
	}
	return permanentCode(se.Status().Code())
}

func permanentCode(c codes.Code) bool {
	switch c {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.NotFound:
		return true
	}
	return false
}

// kafkaPermanent: sarama refused its configuration; no broker reachable is waited for.
func kafkaPermanent(err error) bool { return cep.IsKafkaConfigError(err) }
