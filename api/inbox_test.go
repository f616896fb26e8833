package api_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/internal/testenv"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/store"
)

// The in-app channel stores each message once; the app pages through it and marks it read.
func TestInbox(t *testing.T) {
	env := testenv.Require(t)
	trail := env.Audit(t)
	box := store.NewInbox(trail.Pool())
	inbox := channel.NewInbox(box)
	srv := serve(t, api.Config{Audit: trail, Inbox: box})
	c := omegav1connect.NewInboxServiceClient(keyed(srv, adminKey), srv.URL)
	ctx := context.Background()
	user, other := testenv.Unique("u"), testenv.Unique("u")

	for i := range 5 {
		m := channel.Message{IdempotencyKey: fmt.Sprintf("reach/r/%s/k%d/send/inapp", user, i), ReachID: "reach/r/" + user, UserID: user,
			Template: "t", Title: fmt.Sprintf("hello %d", i), Body: "b", Data: map[string]string{"i": fmt.Sprint(i)}}
		res, err := inbox.Send(ctx, m)
		require.NoError(t, err)
		require.False(t, res.Duplicate)
		again, err := inbox.Send(ctx, m) // a retried dispatch
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		require.Equal(t, res.ProviderMessageID, again.ProviderMessageID)
	}
	otherRes, err := inbox.Send(ctx, channel.Message{IdempotencyKey: other + "/k", ReachID: "r", UserID: other, Body: "theirs"})
	require.NoError(t, err)

	page, err := c.ListInbox(ctx, connect.NewRequest(&omegav1.ListInboxRequest{UserId: user, PageSize: 3}))
	require.NoError(t, err)
	require.Len(t, page.Msg.GetMessages(), 3)
	require.Equal(t, "hello 4", page.Msg.GetMessages()[0].GetTitle(), "newest first")
	require.NotEmpty(t, page.Msg.GetNextPageToken())
	rest, err := c.ListInbox(ctx, connect.NewRequest(&omegav1.ListInboxRequest{UserId: user, PageSize: 3, PageToken: page.Msg.GetNextPageToken()}))
	require.NoError(t, err)
	require.Len(t, rest.Msg.GetMessages(), 2)
	require.Empty(t, rest.Msg.GetNextPageToken())
	require.Equal(t, "0", rest.Msg.GetMessages()[1].GetData()["i"])

	var otherID int64
	_, scanErr := fmt.Sscanf(otherRes.ProviderMessageID, "inbox-%d", &otherID)
	require.NoError(t, scanErr)
	ids := []int64{page.Msg.GetMessages()[0].GetId(), page.Msg.GetMessages()[1].GetId(), otherID}
	marked, err := c.MarkRead(ctx, connect.NewRequest(&omegav1.MarkReadRequest{UserId: user, Ids: ids}))
	require.NoError(t, err)
	require.EqualValues(t, 2, marked.Msg.GetMarked(), "another user's message is not touched")
	unread, err := c.ListInbox(ctx, connect.NewRequest(&omegav1.ListInboxRequest{UserId: user, UnreadOnly: true}))
	require.NoError(t, err)
	require.Len(t, unread.Msg.GetMessages(), 3)
	theirs, err := c.ListInbox(ctx, connect.NewRequest(&omegav1.ListInboxRequest{UserId: other, UnreadOnly: true}))
	require.NoError(t, err)
	require.Len(t, theirs.Msg.GetMessages(), 1)

	_, err = c.ListInbox(ctx, connect.NewRequest(&omegav1.ListInboxRequest{UserId: user, PageSize: 500}))
	requireInvalid(t, err, "page_size")
	_, err = c.ListInbox(ctx, connect.NewRequest(&omegav1.ListInboxRequest{UserId: user, PageToken: "x"}))
	requireInvalid(t, err, "page_token")
	_, err = c.MarkRead(ctx, connect.NewRequest(&omegav1.MarkReadRequest{UserId: user}))
	requireInvalid(t, err, "ids")
	_, err = c.ListInbox(ctx, connect.NewRequest(&omegav1.ListInboxRequest{}))
	requireInvalid(t, err, "user_id")
}
