package profile_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/profile"
)

type countingSource struct{ n int }

func (c *countingSource) Get(_ context.Context, userID string) (profile.Profile, error) {
	c.n++
	return profile.Profile{UserID: userID, Locale: "de"}, nil
}

func TestMemoized(t *testing.T) {
	src := &countingSource{}
	m := profile.Memoized{Source: src}
	ctx := profile.WithMemo(context.Background())
	for range 3 {
		p, err := m.Get(ctx, "u1")
		require.NoError(t, err)
		require.Equal(t, "de", p.Locale)
	}
	_, err := m.Get(ctx, "u2")
	require.NoError(t, err)
	require.Equal(t, 2, src.n, "one read per user under one memo")
	_, err = m.Get(context.Background(), "u1")
	require.NoError(t, err)
	require.Equal(t, 3, src.n, "no memo, no remembering")
}
