package cep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omegareach/omega/internal/versioned"
)

// RuleStore keeps rule versions in PostgreSQL (schema from store.Migrate). Applying a rule that
// differs from its latest version creates the next version and makes it active; applying the same
// rule again changes nothing, so `omega rules apply` is idempotent. Running CEP replicas poll
// ActiveRules and pick a change up within their reload interval.
//
// A new version starts with fresh pattern state: state keys carry the version, so instances in
// flight under the old version are dropped (their keys expire by TTL, their timers are discarded
// when due). Disabling a rule stops it the same way.
type RuleStore struct {
	vs  *versioned.Store
	cat Catalog
}

// NewRuleStore validates rules against cat on every write.
func NewRuleStore(pool *pgxpool.Pool, cat Catalog) *RuleStore {
	return &RuleStore{vs: versioned.New(pool, "rule"), cat: cat}
}

// ErrRuleNotFound is returned for an unknown rule ID.
var ErrRuleNotFound = versioned.ErrNotFound

// Applied says what Apply did.
type Applied = versioned.Applied

// Apply validates r and stores it as a new version unless it equals the active one.
func (s *RuleStore) Apply(ctx context.Context, r Rule) (Applied, error) {
	r.Version = 0
	if err := Validate(r, s.cat); err != nil {
		return Applied{}, err
	}
	if err := s.continueState(ctx, &r); err != nil {
		return Applied{}, err
	}
	spec, err := json.Marshal(r)
	if err != nil {
		return Applied{}, fmt.Errorf("encode rule %s: %w", r.ID, err)
	}
	return s.vs.Apply(ctx, r.ID, spec, r.Disabled)
}

// Draft validates r and stores it as the next version without activating it.
func (s *RuleStore) Draft(ctx context.Context, r Rule) (Applied, error) {
	r.Version, r.Disabled = 0, false
	if err := Validate(r, s.cat); err != nil {
		return Applied{}, err
	}
	if err := s.continueState(ctx, &r); err != nil {
		return Applied{}, err
	}
	spec, err := json.Marshal(r)
	if err != nil {
		return Applied{}, fmt.Errorf("encode rule %s: %w", r.ID, err)
	}
	return s.vs.Draft(ctx, r.ID, spec)
}

// continueState sets r's StateVersion from the rule's active version (ContinuedState): a new
// version that keeps the pattern keeps its open windows. A StateVersion in r itself is ignored.
func (s *RuleStore) continueState(ctx context.Context, r *Rule) error {
	r.StateVersion = 0
	prev, err := s.Get(ctx, r.ID)
	switch {
	case errors.Is(err, ErrRuleNotFound):
		return nil
	case err != nil:
		return err
	}
	r.StateVersion = ContinuedState(prev, *r)
	return nil
}

// Activate makes a stored version of a rule the active one and enables the rule. A version that no
// longer validates against the catalog is refused with its *RuleError.
func (s *RuleStore) Activate(ctx context.Context, id string, version int) error {
	return s.vs.Activate(ctx, id, version, func(h versioned.Head) error {
		r, err := decodeRule(h)
		if err != nil {
			return err
		}
		return Validate(r, s.cat)
	})
}

// Version returns one stored version of a rule, active or not.
func (s *RuleStore) Version(ctx context.Context, id string, version int) (Rule, error) {
	h, err := s.vs.Version(ctx, id, version)
	if err != nil {
		return Rule{}, err
	}
	return decodeRule(h)
}

// Disable stops a rule; applying it again (without disabled) re-enables it.
func (s *RuleStore) Disable(ctx context.Context, id string) error {
	return s.vs.Disable(ctx, id)
}

// List returns every rule's active version, disabled ones included, by ID.
func (s *RuleStore) List(ctx context.Context) ([]Rule, error) {
	hs, err := s.vs.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(hs))
	for _, h := range hs {
		r, err := decodeRule(h)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Get returns one rule's active version.
func (s *RuleStore) Get(ctx context.Context, id string) (Rule, error) {
	h, err := s.vs.Get(ctx, id)
	if err != nil {
		return Rule{}, err
	}
	return decodeRule(h)
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

func decodeRule(h versioned.Head) (Rule, error) {
	var r Rule
	if err := json.Unmarshal(h.Spec, &r); err != nil {
		return Rule{}, fmt.Errorf("decode stored rule %s: %w", h.ID, err)
	}
	r.Version, r.Disabled = h.Version, h.Disabled
	return r, nil
}

// Validate checks r against the store's catalog without storing it.
func (s *RuleStore) Validate(r Rule) error { return Validate(r, s.cat) }
