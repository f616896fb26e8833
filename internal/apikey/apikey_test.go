package apikey_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/internal/testenv"
)

// Keys on the real PostgreSQL: only the hash is stored, a name has one live key, revoked keys stop
// authenticating and stay listed.
func TestStore(t *testing.T) {
	env := testenv.Require(t)
	pool := env.Audit(t).Pool()
	st := apikey.NewStore(pool)
	ctx := context.Background()
	name := testenv.Unique("svc-")

	_, _, err := st.Create(ctx, name, []string{"root"}, 0)
	require.ErrorContains(t, err, "scopes")
	_, _, err = st.Create(ctx, "", []string{"read"}, 0)
	require.ErrorContains(t, err, "name")

	k, secret, err := st.Create(ctx, name, []string{apikey.ScopeIngest, apikey.ScopeRead}, 5)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(secret, apikey.Prefix))
	var row string
	require.NoError(t, pool.QueryRow(ctx, `SELECT a::text FROM api_keys a WHERE id = $1`, k.ID).Scan(&row))
	require.NotContains(t, row, secret, "the row holds the key's hash, never the key")
	require.NotContains(t, row, strings.TrimPrefix(secret, apikey.Prefix))

	got, err := st.Lookup(ctx, secret)
	require.NoError(t, err)
	require.Equal(t, k.ID, got.ID)
	require.Equal(t, []string{"ingest", "read"}, got.Scopes)
	require.InDelta(t, 5, got.RateLimit, 0.001)
	_, err = st.Lookup(ctx, secret+"x")
	require.ErrorIs(t, err, apikey.ErrNotFound)
	_, err = st.Lookup(ctx, "not-even-prefixed")
	require.ErrorIs(t, err, apikey.ErrNotFound)

	_, _, err = st.Create(ctx, name, []string{"read"}, 0)
	require.ErrorIs(t, err, apikey.ErrNameTaken)

	rk, err := st.Revoke(ctx, name)
	require.NoError(t, err)
	require.Equal(t, k.ID, rk.ID)
	_, err = st.Lookup(ctx, secret)
	require.ErrorIs(t, err, apikey.ErrNotFound)
	_, err = st.Revoke(ctx, k.ID)
	require.ErrorIs(t, err, apikey.ErrNotFound, "already revoked")

	// The name is free again; the list keeps the revoked key.
	k2, _, err := st.Create(ctx, name, []string{"admin"}, 0)
	require.NoError(t, err)
	ks, err := st.List(ctx)
	require.NoError(t, err)
	var seen []string
	for _, x := range ks {
		if x.Name == name {
			seen = append(seen, x.ID)
			require.Equal(t, x.ID == k.ID, !x.RevokedAt.IsZero())
		}
	}
	require.ElementsMatch(t, []string{k.ID, k2.ID}, seen)
}
