package store

import (
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate brings Omega Reach's PostgreSQL schema at dsn (postgres://...) up to date: every
// table of every package (audit records, rule, journey and event type versions, profiles, the
// inbox, API keys, list members). Concurrent callers are safe: the library holds an advisory lock
// while it migrates. The files keep the names and numbers they had under audit/, so a database
// migrated before the move carries on from its version in schema_migrations.
func Migrate(dsn string) error { return migrateTo(dsn, 0) }

// MigrateTo brings the schema to version (a migration's number), up or down: for rolling back a
// release, and for testing a migration on data written by the one before.
func MigrateTo(dsn string, version uint) error {
	if version == 0 {
		return errors.New("migrate to version 0 would drop everything; refused")
	}
	return migrateTo(dsn, version)
}

func migrateTo(dsn string, version uint) error {
	src, err := iofs.New(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("open embedded migrations: %w", err)
	}
	u := dsn
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		if rest, ok := strings.CutPrefix(dsn, scheme); ok {
			u = "pgx5://" + rest
		}
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, u)
	if err != nil {
		return fmt.Errorf("connect for migration: %w", err)
	}
	defer m.Close()
	if version > 0 {
		err = m.Migrate(version)
	} else {
		err = m.Up()
	}
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate audit schema: %w", err)
	}
	return nil
}
