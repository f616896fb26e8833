// Package profile is what Omega Reach knows about a user beyond their events: time zone and locale
// (when a journey may wait until, which words to use) and free attributes from offline jobs
// (segments, scores) that branch conditions and templates read.
package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Profile is one user's profile. A user without one reads as the zero profile (UTC, no attrs).
type Profile struct {
	UserID   string         `json:"user_id"`
	TimeZone string         `json:"time_zone,omitempty"`
	Locale   string         `json:"locale,omitempty"`
	Attrs    map[string]any `json:"attrs,omitempty"`
	// Consent maps "channel", "channel:category" or "*:category" to granted (true) or refused.
	Consent map[string]bool `json:"consent,omitempty"`
	// Addresses are where channels reach the user.
	Addresses Addresses `json:"addresses,omitzero"`
}

// Addresses are a user's channel addresses.
type Addresses struct {
	Push  []PushToken `json:"push,omitempty"`
	Phone string      `json:"phone,omitempty"` // E.164, +4915112345678
	Email string      `json:"email,omitempty"`
}

// PushToken is one device's push registration.
type PushToken struct {
	Token    string `json:"token"`
	Platform string `json:"platform"` // android, ios or web
	Device   string `json:"device,omitempty"`
}

// Location is the user's time zone (UTC when unset or unknown).
func (p Profile) Location() *time.Location {
	if p.TimeZone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Vars is the profile as CEL conditions and templates read it.
func (p Profile) Vars() map[string]any {
	attrs := p.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	return map[string]any{"time_zone": p.TimeZone, "locale": p.Locale, "attrs": attrs}
}

// Validate refuses a profile the journeys could not use.
func (p Profile) Validate() error {
	if p.UserID == "" {
		return errors.New("user_id: is required")
	}
	if p.TimeZone != "" {
		if _, err := time.LoadLocation(p.TimeZone); err != nil {
			return fmt.Errorf("time_zone: unknown time zone %q", p.TimeZone)
		}
	}
	if p.Locale != "" && !isLocale(p.Locale) {
		return fmt.Errorf("locale: %q is not a BCP 47 language tag (de, pt-BR): templates pick their wording by it", p.Locale)
	}
	if ph := p.Addresses.Phone; ph != "" && !isE164(ph) {
		return fmt.Errorf("addresses.phone: %q is not an E.164 number (+4915112345678)", ph)
	}
	for i, t := range p.Addresses.Push {
		if t.Token == "" {
			return fmt.Errorf("addresses.push[%d].token: required", i)
		}
		switch t.Platform {
		case "android", "ios", "web":
		default:
			return fmt.Errorf("addresses.push[%d].platform: %q: want android, ios or web", i, t.Platform)
		}
	}
	return nil
}

// Source reads profiles.
type Source interface {
	Get(ctx context.Context, userID string) (Profile, error)
}

// Store keeps profiles in PostgreSQL (schema from store.Migrate).
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Get returns userID's profile, or the zero profile when there is none.
func (s *Store) Get(ctx context.Context, userID string) (Profile, error) {
	ps, err := s.GetMany(ctx, []string{userID})
	if err != nil {
		return Profile{}, err
	}
	if p, ok := ps[userID]; ok {
		return p, nil
	}
	return Profile{UserID: userID}, nil
}

// GetMany returns the stored profiles of userIDs (users without one are absent).
func (s *Store) GetMany(ctx context.Context, userIDs []string) (map[string]Profile, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, time_zone, locale, attrs, consent, addresses FROM profiles WHERE user_id = ANY($1)`, userIDs)
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	out := map[string]Profile{}
	err = scanProfiles(rows, func(p Profile) { out[p.UserID] = p })
	return out, err
}

// Page returns at most limit profiles whose user IDs sort after after, in user ID order: a scan
// of every profile a page at a time (an audience's broadcast), never the whole table in memory.
func (s *Store) Page(ctx context.Context, after string, limit int) ([]Profile, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, time_zone, locale, attrs, consent, addresses FROM profiles
		WHERE user_id > $1 ORDER BY user_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read profiles after %q: %w", after, err)
	}
	var out []Profile
	err = scanProfiles(rows, func(p Profile) { out = append(out, p) })
	return out, err
}

func scanProfiles(rows pgx.Rows, each func(Profile)) error {
	defer rows.Close()
	for rows.Next() {
		var p Profile
		var attrs, consent, addrs []byte
		if err := rows.Scan(&p.UserID, &p.TimeZone, &p.Locale, &attrs, &consent, &addrs); err != nil {
			return err
		}
		for _, x := range []struct {
			b []byte
			v any
		}{{attrs, &p.Attrs}, {consent, &p.Consent}, {addrs, &p.Addresses}} {
			if err := json.Unmarshal(x.b, x.v); err != nil {
				return fmt.Errorf("decode profile %s: %w", p.UserID, err)
			}
		}
		each(p)
	}
	return rows.Err()
}

// Upsert writes a profile whole.
func (s *Store) Upsert(ctx context.Context, p Profile) error {
	return s.UpsertMany(ctx, []Profile{p})
}

// UpsertMany writes profiles whole in one statement; each must be valid.
func (s *Store) UpsertMany(ctx context.Context, ps []Profile) error {
	if len(ps) == 0 {
		return nil
	}
	cols := make([][]any, 6)
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("profile %s: %w", p.UserID, err)
		}
		vals := []any{p.UserID, p.TimeZone, p.Locale}
		for _, v := range []any{orEmpty(p.Attrs), orEmptyBool(p.Consent), p.Addresses} {
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode profile %s: %w", p.UserID, err)
			}
			vals = append(vals, string(b))
		}
		for i, v := range vals {
			cols[i] = append(cols[i], v)
		}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO profiles (user_id, time_zone, locale, attrs, consent, addresses)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::jsonb[])
		ON CONFLICT (user_id) DO UPDATE SET time_zone = excluded.time_zone, locale = excluded.locale,
			attrs = excluded.attrs, consent = excluded.consent, addresses = excluded.addresses, updated_at = now()`,
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5])
	if err != nil {
		return fmt.Errorf("write %d profiles: %w", len(ps), err)
	}
	return nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func orEmptyBool(m map[string]bool) map[string]bool {
	if m == nil {
		return map[string]bool{}
	}
	return m
}

// isLocale reports whether s has the shape of a BCP 47 language tag: a language of 2 or 3
// letters, then subtags of 1 to 8 letters or digits after hyphens (journey.Template.For falls back
// from pt-BR to pt at the hyphen).
func isLocale(s string) bool {
	for i, sub := range strings.Split(s, "-") {
		if n := len(sub); (i == 0 && (n < 2 || n > 3)) || n < 1 || n > 8 {
			return false
		}
		for _, c := range sub {
			letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if !letter && (i == 0 || c < '0' || c > '9') {
				return false
			}
		}
	}
	return true
}

func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Static is a fixed set of profiles (tests).
type Static map[string]Profile

func (s Static) Get(_ context.Context, userID string) (Profile, error) {
	p, ok := s[userID]
	if !ok {
		return Profile{UserID: userID}, nil
	}
	return p, nil
}
