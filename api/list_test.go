package api_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/internal/testenv"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/store"
)

// ListService changes what the blacklist filter sees at its next check.
func TestListService(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			bl := testenv.Unique("test:bl:")
			srv := serve(t, api.Config{Audit: env.Audit(t), Lists: store.NewLists(nil, rdb, map[string]string{"blacklist": bl, "whitelist": bl + "w"})})
			c := omegav1connect.NewListServiceClient(keyed(srv, adminKey), srv.URL)
			ctx := context.Background()

			var users []string
			for i := range 2500 {
				users = append(users, fmt.Sprintf("u%d", i))
			}
			add, err := c.AddMembers(ctx, connect.NewRequest(&omegav1.AddMembersRequest{List: "blacklist", UserIds: users}))
			require.NoError(t, err)
			require.EqualValues(t, 2500, add.Msg.GetAdded())
			add, err = c.AddMembers(ctx, connect.NewRequest(&omegav1.AddMembersRequest{List: "blacklist", UserIds: users[:10]}))
			require.NoError(t, err)
			require.Zero(t, add.Msg.GetAdded(), "adding again changes nothing")

			v, err := filter.NewBlacklist(store.NewLists(nil, rdb, map[string]string{"blacklist": bl})).Check(ctx, filter.Request{UserID: "u7"})
			require.NoError(t, err)
			require.Equal(t, filter.Drop, v.Outcome)

			seen := map[string]bool{}
			token := ""
			for {
				page, err := c.ListMembers(ctx, connect.NewRequest(&omegav1.ListMembersRequest{List: "blacklist", PageSize: 500, PageToken: token}))
				require.NoError(t, err)
				for _, u := range page.Msg.GetUserIds() {
					seen[u] = true
				}
				if token = page.Msg.GetNextPageToken(); token == "" {
					break
				}
			}
			require.Len(t, seen, 2500)

			rm, err := c.RemoveMembers(ctx, connect.NewRequest(&omegav1.RemoveMembersRequest{List: "blacklist", UserIds: []string{"u7", "nobody"}}))
			require.NoError(t, err)
			require.EqualValues(t, 1, rm.Msg.GetRemoved())
			ck, err := c.CheckMember(ctx, connect.NewRequest(&omegav1.CheckMemberRequest{List: "blacklist", UserId: "u7"}))
			require.NoError(t, err)
			require.False(t, ck.Msg.GetMember())

			_, err = c.AddMembers(ctx, connect.NewRequest(&omegav1.AddMembersRequest{List: "greylist", UserIds: []string{"u1"}}))
			requireInvalid(t, err, "list")
			_, err = c.AddMembers(ctx, connect.NewRequest(&omegav1.AddMembersRequest{List: "blacklist", UserIds: []string{"ok", ""}}))
			requireInvalid(t, err, "user_ids[1]")
			_, err = c.AddMembers(ctx, connect.NewRequest(&omegav1.AddMembersRequest{List: "blacklist"}))
			requireInvalid(t, err, "user_ids")
		})
	}
}

// With the durable store, the lists live in PostgreSQL: a Redis that lost its copy answers again
// after reloading it.
func TestListServiceDurable(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			trail := env.Audit(t)
			bl := testenv.Unique("test:bl:")
			srv := serve(t, api.Config{Audit: trail, Lists: store.NewLists(trail.Pool(), rdb, map[string]string{"blacklist": bl})})
			c := omegav1connect.NewListServiceClient(keyed(srv, adminKey), srv.URL)
			ctx := context.Background()
			user := testenv.Unique("dl-")
			add, err := c.AddMembers(ctx, connect.NewRequest(&omegav1.AddMembersRequest{List: "blacklist", UserIds: []string{user}}))
			require.NoError(t, err)
			require.EqualValues(t, 1, add.Msg.GetAdded())
			require.NoError(t, rdb.Del(ctx, bl).Err()) // Redis restarted without persistence
			in, err := c.CheckMember(ctx, connect.NewRequest(&omegav1.CheckMemberRequest{List: "blacklist", UserId: user}))
			require.NoError(t, err)
			require.True(t, in.Msg.GetMember())
			rm, err := c.RemoveMembers(ctx, connect.NewRequest(&omegav1.RemoveMembersRequest{List: "blacklist", UserIds: []string{user}}))
			require.NoError(t, err)
			require.EqualValues(t, 1, rm.Msg.GetRemoved())
			require.NoError(t, rdb.Del(ctx, bl).Err())
			in, err = c.CheckMember(ctx, connect.NewRequest(&omegav1.CheckMemberRequest{List: "blacklist", UserId: user}))
			require.NoError(t, err)
			require.False(t, in.Msg.GetMember())
		})
	}
}
