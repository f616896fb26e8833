package api_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/profile"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	omegastore "github.com/omegareach/omega/store"
)

// A dry run counts an audience over every profile, a page at a time, and samples its members;
// bad audiences and broadcasts are refused naming the field.
func TestCountAudience(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	pages := profile.NewStore(store.Pool())
	prefix := testenv.Unique("aud-")
	var ps []profile.Profile
	for i := range 2500 { // more than two of the count's pages
		tz := "UTC"
		if i%5 == 0 {
			tz = "Europe/Berlin"
		}
		ps = append(ps, profile.Profile{UserID: fmt.Sprintf("%s-%05d", prefix, i), TimeZone: tz, Attrs: map[string]any{"n": i}})
	}
	ctx := context.Background()
	require.NoError(t, pages.UpsertMany(ctx, ps))
	env := testenv.Require(t)
	rdb := env.Redis(t)
	wl := prefix + ":whitelist"
	lists := omegastore.NewLists(store.Pool(), rdb, map[string]string{"whitelist": wl, "blacklist": prefix + ":blacklist"})
	_, err := lists.Add(ctx, "whitelist", []string{prefix + "-00005", prefix + "-00007", prefix + "-00010"})
	require.NoError(t, err)
	srv := serve(t, api.Config{Audit: store, Pages: pages, Lists: lists})
	c := omegav1connect.NewAudienceServiceClient(keyed(srv, readKey), srv.URL)
	resp, err := c.CountAudience(ctx, connect.NewRequest(&omegav1.CountAudienceRequest{Sample: 3, Audience: &omegav1.Audience{Id: "berliners",
		When: fmt.Sprintf(`profile.user_id.startsWith(%q) && profile.time_zone == "Europe/Berlin"`, prefix)}}))
	require.NoError(t, err)
	require.EqualValues(t, 500, resp.Msg.GetMembers())
	require.GreaterOrEqual(t, resp.Msg.GetScanned(), int64(2500))
	require.Equal(t, []string{prefix + "-00000", prefix + "-00005", prefix + "-00010"}, resp.Msg.GetSample())
	resp, err = c.CountAudience(ctx, connect.NewRequest(&omegav1.CountAudienceRequest{Audience: &omegav1.Audience{Id: "berliners-wl",
		When: fmt.Sprintf(`profile.user_id.startsWith(%q) && profile.time_zone == "Europe/Berlin"`, prefix), Lists: []string{"whitelist"}}}))
	require.NoError(t, err)
	require.Equal(t, []string{prefix + "-00005", prefix + "-00010"}, resp.Msg.GetSample(), "berliners on the whitelist (00007 is not in Berlin)")

	for field, req := range map[string]*omegav1.CountAudienceRequest{
		"audience":          {},
		"audience.id":       {Audience: &omegav1.Audience{Id: "Not An ID"}},
		"audience.when":     {Audience: &omegav1.Audience{Id: "a", When: "profile.attrs.n +"}},
		"sample":            {Audience: &omegav1.Audience{Id: "a"}, Sample: 1000},
		"audience.lists[1]": {Audience: &omegav1.Audience{Id: "a", Lists: []string{"whitelist", "vip"}}},
	} {
		_, err := c.CountAudience(ctx, connect.NewRequest(req))
		requireInvalid(t, err, field)
	}
	admin := omegav1connect.NewAudienceServiceClient(keyed(srv, adminKey), srv.URL)
	_, err = admin.StartBroadcast(ctx, connect.NewRequest(&omegav1.StartBroadcastRequest{Audience: &omegav1.Audience{Id: "a", When: `"x"`}}))
	requireInvalid(t, err, "audience.when")
	_, err = admin.GetBroadcast(ctx, connect.NewRequest(&omegav1.GetBroadcastRequest{AudienceId: "a"}))
	requireInvalid(t, err, "run")
}
