package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// keySource is a key store whose keys the test revokes, counting lookups.
type keySource struct {
	mu      sync.Mutex
	keys    map[string]apikey.Key
	lookups int
	down    bool // the store cannot be read
}

func (s *keySource) Lookup(_ context.Context, secret string) (apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	if s.down {
		return apikey.Key{}, errors.New("connection refused")
	}
	k, ok := s.keys[secret]
	if !ok {
		return apikey.Key{}, apikey.ErrNotFound
	}
	return k, nil
}

func bearer(key string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+key)
	return h
}

// A revoked key keeps working for at most the cache time, then is refused.
func TestRevokedKeyStopsWithinTheCacheTime(t *testing.T) {
	src := &keySource{keys: map[string]apikey.Key{"omk_a": {Name: "a", Scopes: []string{apikey.ScopeRead}}}}
	a := newAuthenticator(src, 1000, time.Second, func(string, error) error { return errors.New("backend") })
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	proc := omegav1connect.ReachServiceGetProcedure
	err := a.check(context.Background(), proc, bearer("omk_a"))
	require.NoError(t, err)

	src.mu.Lock()
	delete(src.keys, "omk_a")
	src.mu.Unlock()
	now = now.Add(keyCacheTTL - time.Second)
	err = a.check(context.Background(), proc, bearer("omk_a"))
	require.NoError(t, err, "still cached")
	now = now.Add(2 * time.Second)
	err = a.check(context.Background(), proc, bearer("omk_a"))
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "refused once the cache time passed: %v", err)
}

// While the key store cannot be read, a key known live keeps working (for at most keyStaleMax);
// one never seen is refused as unavailable, not as unauthenticated; once the store is back, a key
// revoked meanwhile is refused.
func TestKnownKeyWorksWhileTheStoreIsDown(t *testing.T) {
	src := &keySource{keys: map[string]apikey.Key{"omk_a": {Name: "a", Scopes: []string{apikey.ScopeIngest}},
		"omk_b": {Name: "b", Scopes: []string{apikey.ScopeIngest}}}}
	a := newAuthenticator(src, 1000, time.Second, func(string, error) error { return connect.NewError(connect.CodeUnavailable, errors.New("backend")) })
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	proc := omegav1connect.EventServiceIngestProcedure
	require.NoError(t, a.check(context.Background(), proc, bearer("omk_a")))

	src.mu.Lock()
	src.down = true
	delete(src.keys, "omk_a") // revoked while the store is away: not seen until it is back
	src.mu.Unlock()
	for _, after := range []time.Duration{keyCacheTTL + time.Second, 30 * time.Minute, keyStaleMax - time.Second} {
		now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(after)
		require.NoError(t, a.check(context.Background(), proc, bearer("omk_a")), "%v after its last lookup", after)
	}
	err := a.check(context.Background(), proc, bearer("omk_b"))
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "a key never seen cannot be checked: %v", err)
	now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(keyStaleMax + time.Second)
	err = a.check(context.Background(), proc, bearer("omk_a"))
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "past keyStaleMax: %v", err)

	src.mu.Lock()
	src.down = false
	src.mu.Unlock()
	err = a.check(context.Background(), proc, bearer("omk_a"))
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "revoked, and the store says so: %v", err)
}

// A flood of made-up keys is looked up at a bounded rate, and a live key keeps working through it.
func TestUnknownKeyFlood(t *testing.T) {
	src := &keySource{keys: map[string]apikey.Key{"omk_live": {Name: "live", Scopes: []string{apikey.ScopeRead}}}}
	a := newAuthenticator(src, 1e6, time.Second, func(string, error) error { return errors.New("backend") })
	proc := omegav1connect.ReachServiceGetProcedure
	err := a.check(context.Background(), proc, bearer("omk_live"))
	require.NoError(t, err)
	var exhausted int
	for i := range 3000 {
		err := a.check(context.Background(), proc, bearer(fmt.Sprintf("omk_junk%d", i)))
		switch connect.CodeOf(err) {
		case connect.CodeUnauthenticated:
		case connect.CodeResourceExhausted:
			exhausted++
		default:
			t.Fatalf("junk key %d: %v", i, err)
		}
		if i%500 == 0 {
			err := a.check(context.Background(), proc, bearer("omk_live"))
			require.NoError(t, err, "the live key during the flood")
		}
	}
	require.Greater(t, exhausted, 2000)
	src.mu.Lock()
	defer src.mu.Unlock()
	require.Less(t, src.lookups, 700, "lookups reached the store")
	require.LessOrEqual(t, len(a.unknown), maxUnknown)
}
