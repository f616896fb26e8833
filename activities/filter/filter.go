// Package filter is the reach center's chain of responsibility: before a send, each filter in the
// chain looks at the request and passes it on, drops it with a reason, or defers it to a later time.
// The first verdict that is not a pass ends the chain; the verdict is audited and shown in the
// Temporal UI as the filter activity's result, so "why was this user not messaged" has an answer.
package filter

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Outcomes of a verdict.
const (
	Pass  = "pass"
	Drop  = "drop"
	Defer = "defer"
)

// Request is one intended send.
type Request struct {
	ReachID   string `json:"reach_id"`
	UserID    string `json:"user_id"`
	RuleID    string `json:"rule_id"`
	JourneyID string `json:"journey_id"`
	Channel   string `json:"channel"`
	// DispatchKey is the idempotency key of the send; reservations are made under it so a retried
	// check reserves nothing twice.
	DispatchKey string    `json:"dispatch_key"`
	Now         time.Time `json:"now"`
	// Chain names the chain to run (DefaultChain when empty).
	Chain string `json:"chain,omitempty"`
	// Category of the message (marketing when empty): consent and quiet hours read it.
	Category string `json:"category,omitempty"`
	// Priority of the journey: the fatigue filter keeps the last slot of a cap for the highest.
	Priority int `json:"priority,omitempty"`
	// Rollout is the rule's gray rollout percentage (1-100; 0 means everyone).
	Rollout int `json:"rollout,omitempty"`
}

// Categories of messages.
const (
	CategoryMarketing     = "marketing"
	CategoryTransactional = "transactional"
)

// category is r's category, marketing when unset.
func (r Request) category() string {
	if r.Category == "" {
		return CategoryMarketing
	}
	return r.Category
}

// Verdict is a filter's decision.
type Verdict struct {
	Outcome string    `json:"outcome"`
	Filter  string    `json:"filter,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Until   time.Time `json:"until,omitzero"`
}

// String reads well in the Temporal UI and in logs.
func (v Verdict) String() string {
	if v.Outcome == Pass {
		return "pass"
	}
	return fmt.Sprintf("%s by %s: %s", v.Outcome, v.Filter, v.Reason)
}

// Filter decides on one request. An error means the filter could not decide (its store is down)
// and the check should be retried; it is never a verdict.
type Filter interface {
	Name() string
	Check(ctx context.Context, r Request) (Verdict, error)
}

// Releaser is a filter that reserves something on pass (a fatigue slot) and can give it back when
// the send fails for good.
type Releaser interface {
	Release(ctx context.Context, r Request) error
}

// Chain runs filters in order.
type Chain []Filter

// Check returns the first verdict that is not a pass, or a pass. When a filter drops or defers
// after an earlier one reserved something on its pass, that reservation is given back: only a
// send that will happen holds a slot.
func (c Chain) Check(ctx context.Context, r Request) (Verdict, error) {
	for i, f := range c {
		v, err := f.Check(ctx, r)
		if err != nil {
			return Verdict{}, fmt.Errorf("filter %s: %w", f.Name(), err)
		}
		if v.Outcome != Pass {
			v.Filter = f.Name()
			if err := c[:i].Release(ctx, r); err != nil {
				return Verdict{}, err
			}
			return v, nil
		}
	}
	return Verdict{Outcome: Pass}, nil
}

// Release gives back what the chain's filters reserved for r.
func (c Chain) Release(ctx context.Context, r Request) error {
	for _, f := range c {
		if rel, ok := f.(Releaser); ok {
			if err := rel.Release(ctx, r); err != nil {
				return fmt.Errorf("release %s: %w", f.Name(), err)
			}
		}
	}
	return nil
}

// DefaultChain is the chain a send runs when its journey names none.
const DefaultChain = "default"

// Registry holds the filters by name and the chains built from them.
type Registry struct {
	filters map[string]Filter
	chains  map[string]Chain
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{filters: map[string]Filter{}, chains: map[string]Chain{}}
}

// Register adds filters; a second filter of the same name is refused.
func (g *Registry) Register(fs ...Filter) error {
	for _, f := range fs {
		if _, dup := g.filters[f.Name()]; dup {
			return fmt.Errorf("filter %q registered twice", f.Name())
		}
		g.filters[f.Name()] = f
	}
	return nil
}

// Define names a chain of registered filters, run in the order given.
func (g *Registry) Define(name string, filters ...string) error {
	if _, dup := g.chains[name]; dup {
		return fmt.Errorf("chain %q defined twice", name)
	}
	c := make(Chain, 0, len(filters))
	for _, n := range filters {
		f, ok := g.filters[n]
		if !ok {
			return fmt.Errorf("chain %q: no filter %q", name, n)
		}
		c = append(c, f)
	}
	g.chains[name] = c
	return nil
}

// Chain returns the named chain (DefaultChain when name is empty).
func (g *Registry) Chain(name string) (Chain, bool) {
	if name == "" {
		name = DefaultChain
	}
	c, ok := g.chains[name]
	return c, ok
}

// Chains lists the defined chains' names.
func (g *Registry) Chains() []string {
	out := make([]string, 0, len(g.chains))
	for n := range g.chains {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
