package versioned_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/internal/versioned"
)

// Versions on the real PostgreSQL: drafts are stored and not taken; applying a draft's content
// activates it rather than storing it twice; activation and rollback move the head; a failing check
// leaves the head where it was.
func TestDraftApplyActivate(t *testing.T) {
	st := versioned.New(testenv.Require(t).Audit(t).Pool(), "rule")
	ctx := context.Background()
	id := testenv.Unique("vr-")
	// The rule table is shared with running CEP stages: leave nothing active behind.
	t.Cleanup(func() { _ = st.Disable(context.Background(), id) })
	head := func() (int, bool) {
		t.Helper()
		h, err := st.Get(ctx, id)
		if errors.Is(err, versioned.ErrNotFound) {
			return 0, false
		}
		require.NoError(t, err)
		return h.Version, h.Disabled
	}
	step := func(a versioned.Applied, err error) versioned.Applied {
		t.Helper()
		require.NoError(t, err)
		return a
	}

	require.Equal(t, versioned.Applied{ID: id, Version: 1, Status: "draft"}, step(st.Draft(ctx, id, []byte(`{"a":1}`))))
	_, ok := head()
	require.False(t, ok, "a draft of a new ID is not active")
	require.Equal(t, versioned.Applied{ID: id, Version: 1, Status: "created"}, step(st.Apply(ctx, id, []byte(`{"a":1}`), false)),
		"applying the draft's content activates the draft")
	require.Equal(t, versioned.Applied{ID: id, Version: 1, Status: "unchanged"}, step(st.Apply(ctx, id, []byte(`{"a":1}`), false)))
	require.Equal(t, versioned.Applied{ID: id, Version: 2, Status: "updated"}, step(st.Apply(ctx, id, []byte(`{"a":2}`), false)))
	require.Equal(t, versioned.Applied{ID: id, Version: 2, Status: "unchanged"}, step(st.Draft(ctx, id, []byte(`{"a":2}`))))
	require.Equal(t, versioned.Applied{ID: id, Version: 3, Status: "draft"}, step(st.Draft(ctx, id, []byte(`{"a":3}`))))
	v, _ := head()
	require.Equal(t, 2, v)
	require.Equal(t, versioned.Applied{ID: id, Version: 3, Status: "updated"}, step(st.Apply(ctx, id, []byte(`{"a":3}`), false)))
	require.Equal(t, versioned.Applied{ID: id, Version: 4, Status: "updated"}, step(st.Apply(ctx, id, []byte(`{"a":1}`), false)),
		"old content again is a new version")

	require.NoError(t, st.Activate(ctx, id, 2, nil))
	v, _ = head()
	require.Equal(t, 2, v)
	refuse := errors.New("no longer valid")
	require.ErrorIs(t, st.Activate(ctx, id, 3, func(versioned.Head) error { return refuse }), refuse)
	v, _ = head()
	require.Equal(t, 2, v, "a refused activation leaves the head")
	require.ErrorIs(t, st.Activate(ctx, id, 9, nil), versioned.ErrNotFound)

	require.NoError(t, st.Disable(ctx, id))
	_, disabled := head()
	require.True(t, disabled)
	require.NoError(t, st.Activate(ctx, id, 2, nil))
	_, disabled = head()
	require.False(t, disabled, "activating enables")
	h, err := st.Version(ctx, id, 3)
	require.NoError(t, err)
	require.JSONEq(t, `{"a":3}`, string(h.Spec))
}
