package cep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RuleStore keeps rule versions in PostgreSQL (schema from audit.Migrate). Applying a rule that
// differs from its latest version creates the next version and makes it active; applying the same
// rule again changes nothing, so `omega rules apply` is idempotent. Running CEP replicas poll
// ActiveRules and pick a change up within their reload interval.
//
// A new version starts with fresh pattern state: state keys carry the version, so instances in
// flight under the old version are dropped (their keys expire by TTL, their timers are discarded
// when due). Disabling a rule stops it the same way.
type RuleStore struct {
	pool *pgxpool.Pool
	cat  Catalog
}

// NewRuleStore validates rules against cat on every write.
func NewRuleStore(pool *pgxpool.Pool, cat Catalog) *RuleStore {
	return &RuleStore{pool: pool, cat: cat}
}

// ErrRuleNotFound is returned for an unknown rule ID.
var ErrRuleNotFound = errors.New("rule not found")

// Applied says what Apply did.
type Applied struct {
	ID      string
	Version int
	// Status is created, updated or unchanged.
	Status string
}

// Apply validates r and stores it as a new version unless it equals the active one.
func (s *RuleStore) Apply(ctx context.Context, r Rule) (Applied, error) {
	r.Version = 0
	if err := Validate(r, s.cat); err != nil {
		return Applied{}, err
	}
	spec, err := json.Marshal(r)
	if err != nil {
		return Applied{}, fmt.Errorf("encode rule %s: %w", r.ID, err)
	}
	sum := sha256.Sum256(spec)
	checksum := hex.EncodeToString(sum[:])
	var out Applied
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialise writers of one rule.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('rule:' || $1))`, r.ID); err != nil {
			return err
		}
		var latest int
		var latestSum string
		var disabled bool
		err := tx.QueryRow(ctx, `SELECT h.active_version, v.checksum, h.disabled FROM rule_heads h
			JOIN rule_versions v ON v.rule_id = h.rule_id AND v.version = h.active_version WHERE h.rule_id = $1`, r.ID).
			Scan(&latest, &latestSum, &disabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			out = Applied{ID: r.ID, Version: 1, Status: "created"}
		case err != nil:
			return err
		case latestSum == checksum && disabled == r.Disabled:
			out = Applied{ID: r.ID, Version: latest, Status: "unchanged"}
			return nil
		default:
			if err := tx.QueryRow(ctx, `SELECT max(version) FROM rule_versions WHERE rule_id = $1`, r.ID).Scan(&latest); err != nil {
				return err
			}
			out = Applied{ID: r.ID, Version: latest + 1, Status: "updated"}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rule_versions (rule_id, version, spec, checksum) VALUES ($1, $2, $3, $4)`,
			r.ID, out.Version, spec, checksum); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO rule_heads (rule_id, active_version, disabled) VALUES ($1, $2, $3)
			ON CONFLICT (rule_id) DO UPDATE SET active_version = $2, disabled = $3, updated_at = now()`,
			r.ID, out.Version, r.Disabled)
		return err
	})
	if err != nil {
		return Applied{}, fmt.Errorf("apply rule %s: %w", r.ID, err)
	}
	return out, nil
}

// Disable stops a rule; applying it again (without disabled) re-enables it.
func (s *RuleStore) Disable(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE rule_heads SET disabled = true, updated_at = now() WHERE rule_id = $1`, id)
	if err != nil {
		return fmt.Errorf("disable rule %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrRuleNotFound
	}
	return nil
}

// List returns every rule's active version, disabled ones included, by ID.
func (s *RuleStore) List(ctx context.Context) ([]Rule, error) {
	return s.query(ctx, `SELECT v.spec, v.version, h.disabled FROM rule_heads h
		JOIN rule_versions v ON v.rule_id = h.rule_id AND v.version = h.active_version ORDER BY h.rule_id`)
}

// Get returns one rule's active version.
func (s *RuleStore) Get(ctx context.Context, id string) (Rule, error) {
	rs, err := s.query(ctx, `SELECT v.spec, v.version, h.disabled FROM rule_heads h
		JOIN rule_versions v ON v.rule_id = h.rule_id AND v.version = h.active_version WHERE h.rule_id = $1`, id)
	if err != nil {
		return Rule{}, err
	}
	if len(rs) == 0 {
		return Rule{}, ErrRuleNotFound
	}
	return rs[0], nil
}

// ActiveRules implements RuleSource: the enabled rules' active versions.
func (s *RuleStore) ActiveRules(ctx context.Context) ([]Rule, error) {
	rs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	out := rs[:0]
	for _, r := range rs {
		if !r.Disabled {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *RuleStore) query(ctx context.Context, q string, args ...any) ([]Rule, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Rule, error) {
		var spec []byte
		var r Rule
		var version int
		var disabled bool
		if err := row.Scan(&spec, &version, &disabled); err != nil {
			return Rule{}, err
		}
		if err := json.Unmarshal(spec, &r); err != nil {
			return Rule{}, fmt.Errorf("decode stored rule: %w", err)
		}
		r.Version, r.Disabled = version, disabled
		return r, nil
	})
}
