package api_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/profile"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// ProfileService on the real PostgreSQL and Redis: upsert, get, bulk import with per-item errors.
func TestProfileService(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			store := env.Audit(t)
			profiles := &profile.Cached{Store: profile.NewStore(store.Pool()), Redis: target.Client}
			srv := serve(t, api.Config{Audit: store, Profiles: profiles})
			c := omegav1connect.NewProfileServiceClient(keyed(srv, ingestKey), srv.URL)
			ctx := context.Background()
			u := testenv.Unique("pu-")

			_, err := c.GetProfile(ctx, connect.NewRequest(&omegav1.GetProfileRequest{UserId: u}))
			require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "an ingest key may not read: %v", err)
			rc := omegav1connect.NewProfileServiceClient(keyed(srv, readKey), srv.URL)
			_, err = rc.GetProfile(ctx, connect.NewRequest(&omegav1.GetProfileRequest{UserId: u}))
			require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)

			for _, tt := range []struct {
				p     *omegav1.Profile
				field string
			}{
				{nil, "profile"},
				{&omegav1.Profile{}, "profile.user_id"},
				{&omegav1.Profile{UserId: u, TimeZone: "Mars/Olympus"}, "profile.time_zone"},
				{&omegav1.Profile{UserId: u, Addresses: &omegav1.Addresses{Phone: "0151"}}, "profile.addresses.phone"},
				{&omegav1.Profile{UserId: u, Addresses: &omegav1.Addresses{Push: []*omegav1.PushToken{{Token: "t", Platform: "fax"}}}}, "profile.addresses.push[0].platform"},
			} {
				_, err := c.UpsertProfile(ctx, connect.NewRequest(&omegav1.UpsertProfileRequest{Profile: tt.p}))
				requireInvalid(t, err, tt.field)
			}

			want := &omegav1.Profile{UserId: u, TimeZone: "Europe/Berlin", Locale: "de", Attrs: mustStruct(t, map[string]any{"tier": "gold"}),
				Consent: map[string]bool{"sms": false}, Addresses: &omegav1.Addresses{Phone: "+4915112345678",
					Push: []*omegav1.PushToken{{Token: "tok", Platform: "ios", Device: "phone"}}}}
			_, err = c.UpsertProfile(ctx, connect.NewRequest(&omegav1.UpsertProfileRequest{Profile: want}))
			require.NoError(t, err)
			got, err := rc.GetProfile(ctx, connect.NewRequest(&omegav1.GetProfileRequest{UserId: u}))
			require.NoError(t, err)
			require.Equal(t, want.String(), got.Msg.GetProfile().String())
			// The cache the filters read has the new profile (write-through).
			cached, err := profiles.Get(ctx, u)
			require.NoError(t, err)
			require.False(t, cached.Consent["sms"])
			require.Equal(t, "gold", cached.Attrs["tier"])

			res, err := c.ImportProfiles(ctx, connect.NewRequest(&omegav1.ImportProfilesRequest{Profiles: []*omegav1.Profile{
				{UserId: u + "a", Locale: "fr"},
				{UserId: u + "b", Addresses: &omegav1.Addresses{Phone: "nope"}},
				{UserId: u + "c"},
				{UserId: u + "a"},
			}}))
			require.NoError(t, err)
			require.EqualValues(t, 2, res.Msg.GetStored())
			require.Len(t, res.Msg.GetErrors(), 2)
			require.Contains(t, res.Msg.GetErrors()[0], "profiles[1].addresses.phone")
			require.Contains(t, res.Msg.GetErrors()[1], "profiles[3].user_id")
			got, err = rc.GetProfile(ctx, connect.NewRequest(&omegav1.GetProfileRequest{UserId: u + "a"}))
			require.NoError(t, err)
			require.Equal(t, "fr", got.Msg.GetProfile().GetLocale())

			_, err = c.ImportProfiles(ctx, connect.NewRequest(&omegav1.ImportProfilesRequest{}))
			requireInvalid(t, err, "profiles")
			_, err = c.ImportProfiles(ctx, connect.NewRequest(&omegav1.ImportProfilesRequest{Profiles: []*omegav1.Profile{{UserId: ""}}}))
			requireInvalid(t, err, "profiles")
			require.Contains(t, err.Error(), "profiles[0].user_id")
		})
	}
}
