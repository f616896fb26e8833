package eventtype_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/internal/testenv"
)

// The catalogue on the real PostgreSQL: an applied type is a version, applying it again changes
// nothing, a change is the next version; the effective catalogue holds it over the defaults and
// loses it when disabled; List shows the defaults never stored as version 0. The table is shared
// with running tests: types here have unique names, and no default type is disabled.
func TestStore(t *testing.T) {
	pool := testenv.Require(t).Audit(t).Pool()
	st := eventtype.NewStore(pool)
	ctx := context.Background()
	name := testenv.Unique("coupon_")
	t.Cleanup(func() { _ = st.Disable(context.Background(), name) })
	typ := event.Type{Name: name, Uses: []string{event.UseTrigger}, Attrs: []event.Attr{{Name: "coupon_id", Type: event.AttrString, Required: true}}}

	a, err := st.Apply(ctx, typ)
	require.NoError(t, err)
	require.Equal(t, eventtype.Applied{ID: name, Version: 1, Status: "created"}, a)
	a, err = st.Apply(ctx, typ)
	require.NoError(t, err)
	require.Equal(t, "unchanged", a.Status)
	c, err := st.EventTypes(ctx)
	require.NoError(t, err)
	require.True(t, c.Can(name, event.UseTrigger))
	require.False(t, c.Routed(name))
	require.True(t, c.Routed("push_open"), "the defaults are beneath")
	require.True(t, st.Current().Has(name))

	typ.Uses = []string{event.UseTrigger, event.UseResponse}
	a, err = st.Apply(ctx, typ)
	require.NoError(t, err)
	require.Equal(t, eventtype.Applied{ID: name, Version: 2, Status: "updated"}, a)
	require.True(t, st.Current().Routed(name), "this process sees its own change at once")
	got, err := st.Get(ctx, name)
	require.NoError(t, err)
	require.Equal(t, 2, got.Version)
	v1, err := st.Version(ctx, name, 1)
	require.NoError(t, err)
	require.Equal(t, []string{event.UseTrigger}, v1.Uses)

	// A rollback is the activation of an older version.
	require.NoError(t, st.Activate(ctx, name, 1))
	require.False(t, st.Current().Routed(name))
	require.NoError(t, st.Activate(ctx, name, 2))
	require.True(t, st.Current().Routed(name))
	require.True(t, errors.Is(st.Activate(ctx, name, 9), eventtype.ErrNotFound))

	bad := typ
	bad.Scope = "shop"
	_, err = st.Apply(ctx, bad)
	var te *event.TypeError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "scope", te.Field)

	list, err := st.List(ctx)
	require.NoError(t, err)
	byName := map[string]event.Type{}
	for _, ty := range list {
		byName[ty.Name] = ty
	}
	require.Equal(t, 2, byName[name].Version)
	require.Contains(t, byName, "view")

	def, err := st.Get(ctx, "chat_started")
	require.NoError(t, err, "a default type is there, stored or not")
	require.True(t, def.Can(event.UseGoal))
	_, err = st.Get(ctx, testenv.Unique("nope_"))
	require.True(t, errors.Is(err, eventtype.ErrNotFound))

	require.NoError(t, st.Disable(ctx, name))
	require.False(t, st.Current().Has(name))
	c, err = st.EventTypes(ctx)
	require.NoError(t, err)
	require.False(t, c.Has(name))
	require.True(t, errors.Is(st.Disable(ctx, testenv.Unique("nope_")), eventtype.ErrNotFound))
}
