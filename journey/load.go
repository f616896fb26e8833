package journey

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omegareach/omega/internal/spec"
	"github.com/omegareach/omega/internal/versioned"
)

//go:embed demo/*.yaml
var demoFS embed.FS

// Demo returns the journeys of the local stack (journey/demo), versions 1.
func Demo() []Journey {
	js, err := spec.LoadFS(demoFS, "demo", Parse, journeyID)
	if err != nil {
		panic(err) // embedded and tested: cannot happen
	}
	for i := range js {
		js[i].Version = 1
	}
	return js
}

// Load reads the journeys in path: one file or a directory of *.yaml, *.yml and *.json.
func Load(path string) ([]Journey, error) { return spec.Load(path, Parse, journeyID) }

func journeyID(j Journey) string { return j.ID }

// ErrNotFound is returned for an unknown or disabled journey.
var ErrNotFound = errors.New("journey not found")

// Source gives the active version of a journey: what a new run pins.
type Source interface {
	Active(ctx context.Context, id string) (Journey, error)
}

// Static is a fixed set of journeys (tests, and workers without a database of journeys).
type Static map[string]Journey

// NewStatic validates js against cat.
func NewStatic(cat Catalog, js ...Journey) (Static, error) {
	s := Static{}
	for _, j := range js {
		if err := Validate(j, cat); err != nil {
			return nil, err
		}
		if _, dup := s[j.ID]; dup {
			return nil, fmt.Errorf("journey %q defined twice", j.ID)
		}
		if j.Version == 0 {
			j.Version = 1
		}
		s[j.ID] = j
	}
	return s, nil
}

func (s Static) Active(_ context.Context, id string) (Journey, error) {
	j, ok := s[id]
	if !ok || j.Disabled {
		return Journey{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return j, nil
}

// Store keeps journey versions in PostgreSQL (schema from store.Migrate). Applying a changed
// journey creates the next version; new runs pin it, runs in flight keep the version they started
// with (it is in their history).
type Store struct {
	vs  *versioned.Store
	cat Catalog

	// A short cache keeps the hot path (one lookup per reach start) off the database.
	ttl   time.Duration
	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	j   Journey
	err error
	at  time.Time
}

// CacheTTL bounds how long a worker runs an old version after a new one is applied.
const CacheTTL = 2 * time.Second

// NewStore validates journeys against cat on every write.
func NewStore(pool *pgxpool.Pool, cat Catalog) *Store {
	return &Store{vs: versioned.New(pool, "journey"), cat: cat, ttl: CacheTTL, cache: map[string]cached{}}
}

// Applied says what Apply did.
type Applied = versioned.Applied

// Apply validates j and stores it as a new version unless it equals the active one.
func (s *Store) Apply(ctx context.Context, j Journey) (Applied, error) {
	j.Version = 0
	if err := Validate(j, s.cat); err != nil {
		return Applied{}, err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return Applied{}, fmt.Errorf("encode journey %s: %w", j.ID, err)
	}
	defer s.forget(j.ID)
	return s.vs.Apply(ctx, j.ID, b, j.Disabled)
}

// Draft validates j and stores it as the next version without activating it.
func (s *Store) Draft(ctx context.Context, j Journey) (Applied, error) {
	j.Version, j.Disabled = 0, false
	if err := Validate(j, s.cat); err != nil {
		return Applied{}, err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return Applied{}, fmt.Errorf("encode journey %s: %w", j.ID, err)
	}
	return s.vs.Draft(ctx, j.ID, b)
}

// Activate makes a stored version the one new runs take and enables the journey. A version that no
// longer validates against the catalog is refused with its *Error.
func (s *Store) Activate(ctx context.Context, id string, version int) error {
	err := s.vs.Activate(ctx, id, version, func(h versioned.Head) error {
		j, err := decode(h)
		if err != nil {
			return err
		}
		return Validate(j, s.cat)
	})
	if errors.Is(err, versioned.ErrNotFound) {
		return fmt.Errorf("%w: %q version %d", ErrNotFound, id, version)
	}
	s.forget(id)
	return err
}

// forget drops the cached copy of id: this process sees its own changes at once (others within
// CacheTTL).
func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}

// Version returns one stored version of a journey, active or not.
func (s *Store) Version(ctx context.Context, id string, version int) (Journey, error) {
	h, err := s.vs.Version(ctx, id, version)
	if errors.Is(err, versioned.ErrNotFound) {
		return Journey{}, fmt.Errorf("%w: %q version %d", ErrNotFound, id, version)
	}
	if err != nil {
		return Journey{}, err
	}
	return decode(h)
}

// Disable stops new runs of a journey; runs in flight go on.
func (s *Store) Disable(ctx context.Context, id string) error {
	defer s.forget(id)
	if err := s.vs.Disable(ctx, id); err != nil {
		if errors.Is(err, versioned.ErrNotFound) {
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		return err
	}
	return nil
}

// List returns every journey's active version, disabled ones included.
func (s *Store) List(ctx context.Context) ([]Journey, error) {
	hs, err := s.vs.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Journey, 0, len(hs))
	for _, h := range hs {
		j, err := decode(h)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// Get returns a journey's active version, disabled or not.
func (s *Store) Get(ctx context.Context, id string) (Journey, error) {
	h, err := s.vs.Get(ctx, id)
	if errors.Is(err, versioned.ErrNotFound) {
		return Journey{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return Journey{}, err
	}
	return decode(h)
}

// Active implements Source: the active version of an enabled journey.
func (s *Store) Active(ctx context.Context, id string) (Journey, error) {
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && time.Since(c.at) < s.ttl {
		return c.j, c.err
	}
	j, err := s.Get(ctx, id)
	if err == nil && j.Disabled {
		err = fmt.Errorf("%w: %q is disabled", ErrNotFound, id)
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Journey{}, err // a database error is not cached
	}
	s.mu.Lock()
	s.cache[id] = cached{j: j, err: err, at: time.Now()}
	s.mu.Unlock()
	return j, err
}

func decode(h versioned.Head) (Journey, error) {
	var j Journey
	if err := json.Unmarshal(h.Spec, &j); err != nil {
		return Journey{}, fmt.Errorf("decode stored journey %s: %w", h.ID, err)
	}
	j.Version, j.Disabled = h.Version, h.Disabled
	return j, nil
}

// Validate checks j against the store's catalog without storing it.
func (s *Store) Validate(j Journey) error { return Validate(j, s.cat) }
