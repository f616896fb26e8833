// Package profile is what Omega Reach knows about a user beyond their events: time zone and locale
// (when a journey may wait until, which words to use) and free attributes from offline jobs
// (segments, scores) that branch conditions and templates read.
package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	return nil
}

// Source reads profiles.
type Source interface {
	Get(ctx context.Context, userID string) (Profile, error)
}

// Store keeps profiles in PostgreSQL (schema from audit.Migrate).
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Get returns userID's profile, or the zero profile when there is none.
func (s *Store) Get(ctx context.Context, userID string) (Profile, error) {
	p := Profile{UserID: userID}
	var attrs, consent []byte
	err := s.pool.QueryRow(ctx, `SELECT time_zone, locale, attrs, consent FROM profiles WHERE user_id = $1`, userID).
		Scan(&p.TimeZone, &p.Locale, &attrs, &consent)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return Profile{}, fmt.Errorf("read profile %s: %w", userID, err)
	}
	if err := json.Unmarshal(attrs, &p.Attrs); err != nil {
		return Profile{}, fmt.Errorf("decode profile %s: %w", userID, err)
	}
	if err := json.Unmarshal(consent, &p.Consent); err != nil {
		return Profile{}, fmt.Errorf("decode profile %s consent: %w", userID, err)
	}
	return p, nil
}

// Upsert writes a profile whole.
func (s *Store) Upsert(ctx context.Context, p Profile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.Attrs == nil {
		p.Attrs = map[string]any{}
	}
	if p.Consent == nil {
		p.Consent = map[string]bool{}
	}
	attrs, err := json.Marshal(p.Attrs)
	if err != nil {
		return fmt.Errorf("encode profile %s: %w", p.UserID, err)
	}
	consent, err := json.Marshal(p.Consent)
	if err != nil {
		return fmt.Errorf("encode profile %s: %w", p.UserID, err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO profiles (user_id, time_zone, locale, attrs, consent) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE SET time_zone = $2, locale = $3, attrs = $4, consent = $5, updated_at = now()`,
		p.UserID, p.TimeZone, p.Locale, attrs, consent)
	if err != nil {
		return fmt.Errorf("write profile %s: %w", p.UserID, err)
	}
	return nil
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
