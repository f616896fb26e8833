package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omegareach/omega/audit"
)

// Open migrates the schema at dsn and returns a pool on it; the caller closes the pool.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	if err := Migrate(dsn); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	return pool, nil
}

// IsDataError reports whether PostgreSQL refused err's rows for what they hold (SQLSTATE class 22,
// data exception, or 23, integrity constraint violation): the same rows will be refused every
// time, so retrying cannot help. Outages, timeouts and the like are not data errors.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// Tracker writes the tracking records the CEP stage sees first: conversions attributed after a
// run and delivery receipts. Both are idempotent: a replayed batch writes nothing new.
// *audit.Store implements it.
type Tracker interface {
	Attribute(ctx context.Context, goals []audit.Goal) (int64, error)
	Receipts(ctx context.Context, rs []audit.Receipt) (int64, error)
}

var _ Tracker = (*audit.Store)(nil)
