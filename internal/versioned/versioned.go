// Package versioned keeps data that growth teams change without a deploy (rules, journeys) as
// versions in PostgreSQL: every applied version is kept, a head row says which one is active.
// Applying what is already active changes nothing, so applying a directory twice is idempotent.
package versioned

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned for an unknown ID.
var ErrNotFound = errors.New("not found")

// Applied says what Apply did.
type Applied struct {
	ID      string
	Version int
	// Status is created, updated or unchanged.
	Status string
}

// Head is one ID's active version.
type Head struct {
	ID       string
	Version  int
	Disabled bool
	Spec     []byte
}

// Store reads and writes the tables <kind>_versions and <kind>_heads (schema from store.Migrate).
type Store struct {
	pool *pgxpool.Pool
	kind string
	q    queries
}

type queries struct {
	lock, active, latest, insert, upsertHead, disable, list, get, version string
}

// New returns the store of one kind ("rule", "journey"); kind names the tables, never user input.
func New(pool *pgxpool.Pool, kind string) *Store {
	v, h, id := kind+"_versions", kind+"_heads", kind+"_id"
	sel := fmt.Sprintf(`SELECT h.%[3]s, v.spec, v.version, h.disabled FROM %[2]s h
		JOIN %[1]s v ON v.%[3]s = h.%[3]s AND v.version = h.active_version`, v, h, id)
	return &Store{pool: pool, kind: kind, q: queries{
		lock: `SELECT pg_advisory_xact_lock(hashtext($1))`,
		active: fmt.Sprintf(`SELECT h.active_version, v.checksum, h.disabled FROM %[2]s h
			JOIN %[1]s v ON v.%[3]s = h.%[3]s AND v.version = h.active_version WHERE h.%[3]s = $1`, v, h, id),
		latest: fmt.Sprintf(`SELECT version, checksum FROM %s WHERE %s = $1 ORDER BY version DESC LIMIT 1`, v, id),
		insert: fmt.Sprintf(`INSERT INTO %s (%s, version, spec, checksum) VALUES ($1, $2, $3, $4)`, v, id),
		upsertHead: fmt.Sprintf(`INSERT INTO %[1]s (%[2]s, active_version, disabled) VALUES ($1, $2, $3)
			ON CONFLICT (%[2]s) DO UPDATE SET active_version = $2, disabled = $3, updated_at = now()`, h, id),
		disable: fmt.Sprintf(`UPDATE %s SET disabled = true, updated_at = now() WHERE %s = $1`, h, id),
		list:    sel + fmt.Sprintf(` ORDER BY h.%s`, id),
		get:     sel + fmt.Sprintf(` WHERE h.%s = $1`, id),
		version: fmt.Sprintf(`SELECT %[2]s, spec, version, false FROM %[1]s WHERE %[2]s = $1 AND version = $2`, v, id),
	}}
}

// locked runs fn in a transaction that holds id's lock: writers of one ID are serialised.
func (s *Store) locked(ctx context.Context, id string, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.q.lock, s.kind+":"+id); err != nil {
			return err
		}
		return fn(tx)
	})
}

func sum(spec []byte) string {
	h := sha256.Sum256(spec)
	return hex.EncodeToString(h[:])
}

// Apply stores spec as the next version of id and makes it active, unless it equals the active
// version (and its disabled flag).
func (s *Store) Apply(ctx context.Context, id string, spec []byte, disabled bool) (Applied, error) {
	checksum := sum(spec)
	var out Applied
	err := s.locked(ctx, id, func(tx pgx.Tx) error {
		var latest int
		var latestSum string
		var wasDisabled bool
		err := tx.QueryRow(ctx, s.q.active, id).Scan(&latest, &latestSum, &wasDisabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			out = Applied{ID: id, Status: "created"} // drafts may exist: the version comes next
		case err != nil:
			return err
		case latestSum == checksum && wasDisabled == disabled:
			out = Applied{ID: id, Version: latest, Status: "unchanged"}
			return nil
		default:
			out = Applied{ID: id, Status: "updated"}
		}
		// The newest stored version (a draft, say) with the same content is activated as is;
		// otherwise the content becomes the next version.
		var newest int
		var newestSum string
		err = tx.QueryRow(ctx, s.q.latest, id).Scan(&newest, &newestSum)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		out.Version = newest + 1
		if newest > 0 && newestSum == checksum {
			out.Version = newest
		} else if _, err := tx.Exec(ctx, s.q.insert, id, out.Version, spec, checksum); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.q.upsertHead, id, out.Version, disabled)
		return err
	})
	if err != nil {
		return Applied{}, fmt.Errorf("apply %s %s: %w", s.kind, id, err)
	}
	return out, nil
}

// Draft stores spec as the next version of id without activating it, unless it equals the latest
// stored version (then that version is returned, unchanged).
func (s *Store) Draft(ctx context.Context, id string, spec []byte) (Applied, error) {
	checksum := sum(spec)
	var out Applied
	err := s.locked(ctx, id, func(tx pgx.Tx) error {
		var latest int
		var latestSum string
		err := tx.QueryRow(ctx, s.q.latest, id).Scan(&latest, &latestSum)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case latestSum == checksum:
			out = Applied{ID: id, Version: latest, Status: "unchanged"}
			return nil
		}
		out = Applied{ID: id, Version: latest + 1, Status: "draft"}
		_, err = tx.Exec(ctx, s.q.insert, id, out.Version, spec, checksum)
		return err
	})
	if err != nil {
		return Applied{}, fmt.Errorf("draft %s %s: %w", s.kind, id, err)
	}
	return out, nil
}

// Activate makes a stored version of id the active one and enables id. check, when set, vets the
// version's spec first (against what runs now); its error is returned as is.
func (s *Store) Activate(ctx context.Context, id string, version int, check func(Head) error) error {
	err := s.locked(ctx, id, func(tx pgx.Tx) error {
		var h Head
		err := tx.QueryRow(ctx, s.q.version, id, version).Scan(&h.ID, &h.Spec, &h.Version, &h.Disabled)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(h); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, s.q.upsertHead, id, version, false)
		return err
	})
	if err != nil {
		return fmt.Errorf("activate %s %s version %d: %w", s.kind, id, version, err)
	}
	return nil
}

// Disable stops id; applying it again (not disabled) re-enables it.
func (s *Store) Disable(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, s.q.disable, id)
	if err != nil {
		return fmt.Errorf("disable %s %s: %w", s.kind, id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// List returns every ID's active version, disabled ones included, by ID.
func (s *Store) List(ctx context.Context) ([]Head, error) {
	return s.query(ctx, s.q.list)
}

// Get returns one ID's active version.
func (s *Store) Get(ctx context.Context, id string) (Head, error) {
	return s.one(ctx, s.q.get, id)
}

// Version returns one stored version of id, active or not.
func (s *Store) Version(ctx context.Context, id string, version int) (Head, error) {
	return s.one(ctx, s.q.version, id, version)
}

func (s *Store) one(ctx context.Context, q string, args ...any) (Head, error) {
	hs, err := s.query(ctx, q, args...)
	if err != nil {
		return Head{}, err
	}
	if len(hs) == 0 {
		return Head{}, ErrNotFound
	}
	return hs[0], nil
}

func (s *Store) query(ctx context.Context, q string, args ...any) ([]Head, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read %ss: %w", s.kind, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Head, error) {
		var h Head
		err := row.Scan(&h.ID, &h.Spec, &h.Version, &h.Disabled)
		return h, err
	})
}
