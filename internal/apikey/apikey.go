// Package apikey keeps the API's keys: each has scopes (ingest, trigger, read, admin) and a request
// rate. A key is 32 random bytes shown once at creation; PostgreSQL keeps only its SHA-256, which is
// enough for a secret of that entropy (no password stretching needed) and lets a lookup be one
// indexed read.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Scopes. Admin grants every other scope.
const (
	ScopeIngest  = "ingest"  // EventService.Ingest
	ScopeTrigger = "trigger" // start, cancel and signal reaches
	ScopeRead    = "read"    // read reaches, rules, journeys, templates, lists, profiles, inboxes
	ScopeAdmin   = "admin"   // change rules, journeys, lists and profiles
)

// Scopes lists every scope.
var Scopes = []string{ScopeIngest, ScopeTrigger, ScopeRead, ScopeAdmin}

// Prefix starts every key, so a leaked one is easy to recognise (and to scan for).
const Prefix = "omk_"

var (
	// ErrNotFound is an unknown, malformed or revoked key.
	ErrNotFound = errors.New("apikey: unknown or revoked key")
	// ErrNameTaken is a create with the name of a live key.
	ErrNameTaken = errors.New("apikey: a live key has this name")
)

// Key is a key's record; the secret itself is never stored.
type Key struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	RateLimit float64   `json:"rate_limit,omitempty"` // requests per second; 0 = the server's default
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Allows reports whether the key grants scope.
func (k Key) Allows(scope string) bool {
	return slices.Contains(k.Scopes, scope) || slices.Contains(k.Scopes, ScopeAdmin)
}

// CheckScopes refuses an empty or unknown scope list.
func CheckScopes(scopes []string) error {
	if len(scopes) == 0 {
		return fmt.Errorf("scopes: at least one of %s", strings.Join(Scopes, ", "))
	}
	for _, s := range scopes {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("scopes: unknown scope %q (want %s)", s, strings.Join(Scopes, ", "))
		}
	}
	return nil
}

// Hash is what the store keeps of a key.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Generate returns a new key and its ID.
func Generate() (id, secret string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret = Prefix + base64.RawURLEncoding.EncodeToString(b)
	h := Hash(secret)
	return hex.EncodeToString(h[:6]), secret
}

// Store keeps keys in the table api_keys (schema from store.Migrate).
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Create makes a key and returns its record and the secret, which is not kept anywhere.
func (s *Store) Create(ctx context.Context, name string, scopes []string, rate float64) (Key, string, error) {
	if name == "" {
		return Key{}, "", errors.New("name: required")
	}
	if err := CheckScopes(scopes); err != nil {
		return Key{}, "", err
	}
	if rate < 0 {
		return Key{}, "", errors.New("rate: must not be negative")
	}
	id, secret := Generate()
	k := Key{ID: id, Name: name, Scopes: slices.Clone(scopes), RateLimit: rate}
	err := s.pool.QueryRow(ctx, `INSERT INTO api_keys (id, name, hash, scopes, rate_limit) VALUES ($1, $2, $3, $4, $5)
		RETURNING created_at`, id, name, Hash(secret), scopes, rate).Scan(&k.CreatedAt)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return Key{}, "", fmt.Errorf("%w: %q", ErrNameTaken, name)
	}
	if err != nil {
		return Key{}, "", fmt.Errorf("create api key: %w", err)
	}
	return k, secret, nil
}

const cols = `id, name, scopes, rate_limit, created_at, coalesce(revoked_at, 'epoch'::timestamptz)`

func scan(row pgx.Row) (Key, error) {
	var k Key
	var rate float32
	err := row.Scan(&k.ID, &k.Name, &k.Scopes, &rate, &k.CreatedAt, &k.RevokedAt)
	k.RateLimit = float64(rate)
	if k.RevokedAt.Unix() == 0 {
		k.RevokedAt = time.Time{}
	}
	return k, err
}

// Lookup returns the live key whose secret this is.
func (s *Store) Lookup(ctx context.Context, secret string) (Key, error) {
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 100 {
		return Key{}, ErrNotFound
	}
	k, err := scan(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM api_keys WHERE hash = $1 AND revoked_at IS NULL`, Hash(secret)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, ErrNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("look up api key: %w", err)
	}
	return k, nil
}

// Revoke ends a live key by ID or, when no live key has that ID, by name (a name has at most one
// live key); servers stop accepting it within their cache time.
func (s *Store) Revoke(ctx context.Context, idOrName string) (Key, error) {
	for _, q := range []string{
		`UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING ` + cols,
		`UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING ` + cols,
	} {
		k, err := scan(s.pool.QueryRow(ctx, q, idOrName))
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return Key{}, fmt.Errorf("revoke api key: %w", err)
		}
		return k, nil
	}
	return Key{}, ErrNotFound
}

// List returns every key, revoked ones included, newest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+cols+` FROM api_keys ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scan(r) })
}

// Static is a fixed set of keys by secret, for tests and single-tenant setups without PostgreSQL.
type Static map[string]Key

// Lookup implements the API's key source.
func (s Static) Lookup(_ context.Context, secret string) (Key, error) {
	k, ok := s[secret]
	if !ok {
		return Key{}, ErrNotFound
	}
	return k, nil
}
