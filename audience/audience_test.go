package audience_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/profile"
)

func TestCondition(t *testing.T) {
	c, err := audience.Audience{ID: "gold-berlin", When: `profile.attrs.tier == "gold" && profile.time_zone == "Europe/Berlin" && !("push:marketing" in profile.consent && !profile.consent["push:marketing"])`}.Compile()
	require.NoError(t, err)
	gold := profile.Profile{UserID: "a", TimeZone: "Europe/Berlin", Attrs: map[string]any{"tier": "gold"}}
	require.True(t, c.Holds(gold))
	refused := gold
	refused.Consent = map[string]bool{"push:marketing": false}
	require.False(t, c.Holds(refused))
	require.False(t, c.Holds(profile.Profile{UserID: "b", TimeZone: "Europe/Berlin"}), "no tier attribute: not in the audience")
	require.False(t, c.Holds(profile.Profile{UserID: "c", Attrs: map[string]any{"tier": "gold"}}))

	all, err := audience.Audience{ID: "everyone"}.Compile()
	require.NoError(t, err)
	require.True(t, all.Holds(profile.Profile{UserID: "x"}))

	for _, bad := range []struct {
		a     audience.Audience
		field string
	}{
		{audience.Audience{ID: "Bad ID"}, "id"},
		{audience.Audience{ID: "a", When: "profile.attrs.tier =="}, "when"},
		{audience.Audience{ID: "a", When: `"gold"`}, "when"},
	} {
		_, err := bad.a.Compile()
		var fe *audience.FieldError
		require.ErrorAs(t, err, &fe, bad.a.When)
		require.Equal(t, bad.field, fe.Field)
	}
}
