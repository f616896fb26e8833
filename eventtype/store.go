// Package eventtype keeps the event catalogue as data: each event type a growth team declares
// (scope, attribute schema, what it may be used as) is stored as versions in PostgreSQL, like
// rules and journeys. The effective catalogue is the default one (event.Default, the demo types)
// with the stored types applied over it: a stored type replaces the default of its name, a
// disabled one removes it. The API validates rules, journeys and ingested events against it; CEP
// replicas poll it with the rules.
package eventtype

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/versioned"
)

// ErrNotFound is returned for an unknown event type.
var ErrNotFound = versioned.ErrNotFound

// Applied says what Apply did.
type Applied = versioned.Applied

// CacheTTL bounds how long Current works with a catalogue older than the store's.
const CacheTTL = 2 * time.Second

// Store keeps event type versions in PostgreSQL (tables event_type_versions and event_type_heads,
// schema from store.Migrate). Applying a type that differs from its active version creates the
// next version; applying the same again changes nothing.
type Store struct {
	vs *versioned.Store

	// InUse (nil: not checked) says why what is active would stop validating under cand, the
	// catalogue with the type name applied or activated ("" when nothing would), and the type's
	// field at fault: uses (a rule whose step needs the type a trigger, a journey whose wait needs
	// it a response) or attrs (a rule keyed on an attribute, or whose journey's templates read
	// one, the type no longer declares). Disabling a type is not checked: it is the catalogue's
	// kill switch (its events are skipped until it is applied again).
	InUse func(ctx context.Context, cand *event.Catalog, name string) (field, reason string)

	// A short cache keeps Current's hot paths (every ingest call, every rule validation) off the
	// database.
	ttl    time.Duration
	mu     sync.Mutex
	cached *event.Catalog // nil: read again
	at     time.Time
	last   *event.Catalog // the last one read, for Current while the database is away
	failed time.Time      // when Current last failed to read
}

// NewStore returns the store over pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{vs: versioned.New(pool, "event_type"), ttl: CacheTTL}
}

// Validate checks t; the error is an *event.TypeError naming the field.
func (s *Store) Validate(t event.Type) error { return t.ValidateNew() }

// Apply validates t and stores it as a new version unless it equals the active one.
func (s *Store) Apply(ctx context.Context, t event.Type) (Applied, error) {
	t.Version = 0
	if err := t.ValidateNew(); err != nil {
		return Applied{}, err
	}
	if !t.Disabled {
		if err := s.checkInUse(ctx, t); err != nil {
			return Applied{}, err
		}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return Applied{}, fmt.Errorf("encode event type %s: %w", t.Name, err)
	}
	defer s.forget()
	return s.vs.Apply(ctx, t.Name, b, t.Disabled)
}

// checkInUse refuses t (an *event.TypeError at uses or attrs) when what is active would stop
// validating with it in the catalogue (InUse).
func (s *Store) checkInUse(ctx context.Context, t event.Type) error {
	if s.InUse == nil {
		return nil
	}
	hs, err := s.vs.List(ctx)
	if err != nil {
		return err
	}
	ts := []event.Type{t}
	for _, h := range hs {
		old, err := decode(h)
		if err != nil {
			return err
		}
		if old.Name != t.Name {
			ts = append(ts, old)
		}
	}
	if field, reason := s.InUse(ctx, event.Overlay(event.Default(), ts), t.Name); reason != "" {
		return &event.TypeError{Name: t.Name, Field: field, Reason: reason}
	}
	return nil
}

// Draft validates t and stores it as the next version without activating it.
func (s *Store) Draft(ctx context.Context, t event.Type) (Applied, error) {
	t.Version, t.Disabled = 0, false
	if err := t.ValidateNew(); err != nil {
		return Applied{}, err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return Applied{}, fmt.Errorf("encode event type %s: %w", t.Name, err)
	}
	return s.vs.Draft(ctx, t.Name, b)
}

// Activate makes a stored version the active one and enables the type.
func (s *Store) Activate(ctx context.Context, name string, version int) error {
	defer s.forget()
	return s.vs.Activate(ctx, name, version, func(h versioned.Head) error {
		t, err := decode(h)
		if err != nil {
			return err
		}
		if err := t.ValidateNew(); err != nil {
			return err
		}
		return s.checkInUse(ctx, t)
	})
}

// Disable removes a type from the catalogue (a default type too); applying it again brings it
// back.
func (s *Store) Disable(ctx context.Context, name string) error {
	defer s.forget()
	err := s.vs.Disable(ctx, name)
	if errors.Is(err, versioned.ErrNotFound) {
		if t, ok := event.Default().Lookup(name); ok {
			// A default type never stored: store it disabled.
			t.Disabled = true
			_, err = s.Apply(ctx, t)
		}
	}
	return err
}

// Get returns a type's active version: the stored one, else the default one (version 0).
func (s *Store) Get(ctx context.Context, name string) (event.Type, error) {
	h, err := s.vs.Get(ctx, name)
	if errors.Is(err, versioned.ErrNotFound) {
		if t, ok := event.Default().Lookup(name); ok {
			t.Version = 0
			return t, nil
		}
	}
	if err != nil {
		return event.Type{}, err
	}
	return decode(h)
}

// Version returns one stored version of a type, active or not.
func (s *Store) Version(ctx context.Context, name string, version int) (event.Type, error) {
	h, err := s.vs.Version(ctx, name, version)
	if err != nil {
		return event.Type{}, err
	}
	return decode(h)
}

// List returns every type of the catalogue by name: the stored ones' active versions, disabled
// ones included, and the default types never stored (version 0).
func (s *Store) List(ctx context.Context) ([]event.Type, error) {
	hs, err := s.vs.List(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]event.Type{}
	for _, t := range event.Default().Types() {
		t.Version = 0
		byName[t.Name] = t
	}
	for _, h := range hs {
		t, err := decode(h)
		if err != nil {
			return nil, err
		}
		byName[t.Name] = t
	}
	out := make([]event.Type, 0, len(byName))
	for _, t := range byName {
		out = append(out, t)
	}
	sortTypes(out)
	return out, nil
}

// EventTypes reads the effective catalogue (cep.EventTypeSource): one small query, made by each
// CEP replica every reload interval, so a change applies there within it.
func (s *Store) EventTypes(ctx context.Context) (*event.Catalog, error) {
	hs, err := s.vs.List(ctx)
	if err != nil {
		return nil, err
	}
	ts := make([]event.Type, 0, len(hs))
	for _, h := range hs {
		t, err := decode(h)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	c := event.Overlay(event.Default(), ts)
	s.mu.Lock()
	s.cached, s.at, s.last = c, time.Now(), c
	s.mu.Unlock()
	return c, nil
}

// Current returns the effective catalogue for paths that must not fail with the database: the
// API's ingest, and validation hooks without a context. When the database does not answer, it is
// the last catalogue read (the default one before any), and the database is tried again after
// CacheTTL, so ingestion keeps going at Kafka's pace while PostgreSQL is away.
func (s *Store) Current() *event.Catalog {
	s.mu.Lock()
	c, at, last, failed := s.cached, s.at, s.last, s.failed
	s.mu.Unlock()
	if c != nil && time.Since(at) < s.ttl {
		return c
	}
	if time.Since(failed) < s.ttl {
		return last // nil: the default catalogue
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := s.EventTypes(ctx)
	if err == nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = time.Now()
	return s.last
}

// forget drops the cached catalogue: this process sees its own changes at once, others within
// CacheTTL.
func (s *Store) forget() {
	s.mu.Lock()
	s.cached = nil
	s.mu.Unlock()
}

func decode(h versioned.Head) (event.Type, error) {
	var t event.Type
	if err := json.Unmarshal(h.Spec, &t); err != nil {
		return event.Type{}, fmt.Errorf("decode stored event type %s: %w", h.ID, err)
	}
	t.Version, t.Disabled = h.Version, h.Disabled
	return t, nil
}

func sortTypes(ts []event.Type) {
	slices.SortFunc(ts, func(a, b event.Type) int { return strings.Compare(a.Name, b.Name) })
}
