package profile

import (
	"context"
	"sync"
)

type memoKey struct{}

type memo struct {
	mu sync.Mutex
	ps map[string]Profile
}

// WithMemo returns ctx carrying a memo for Memoized sources: every read of a user's profile
// under it after the first is served from memory (the filters of one chain check read it once).
func WithMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, &memo{ps: map[string]Profile{}})
}

// Memoized reads through Source, remembering what it read in the context's memo when there is
// one (WithMemo); without one it is Source.
type Memoized struct{ Source Source }

func (m Memoized) Get(ctx context.Context, userID string) (Profile, error) {
	mm, ok := ctx.Value(memoKey{}).(*memo)
	if !ok {
		return m.Source.Get(ctx, userID)
	}
	mm.mu.Lock()
	p, hit := mm.ps[userID]
	mm.mu.Unlock()
	if hit {
		return p, nil
	}
	p, err := m.Source.Get(ctx, userID)
	if err != nil {
		return Profile{}, err
	}
	mm.mu.Lock()
	mm.ps[userID] = p
	mm.mu.Unlock()
	return p, nil
}
