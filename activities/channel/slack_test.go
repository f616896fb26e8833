package channel_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/plugin"
)

// What Slack gets: one text in its markup, escaped, naming the user and the send; and what
// Slack answers (a bare "ok", no message ID) still gives the send a reference.
func TestSlackMessage(t *testing.T) {
	var got struct{ Text string }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		require.NoError(t, json.Unmarshal(b, &got))
		require.Equal(t, "reach/r/u1/k/send/slack", r.Header.Get(channel.HeaderIdempotencyKey))
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	reg, err := channel.Build(channel.Builtin(), plugin.Values{"OMEGA_SLACK_URL": srv.URL}, channel.Deps{Inbox: nopInbox{}}, nil)
	require.NoError(t, err)
	ch, ok := reg.Get("slack")
	require.True(t, ok)
	res, err := ch.Send(context.Background(), channel.Message{IdempotencyKey: "reach/r/u1/k/send/slack", UserID: "u1",
		Title: "Big cart left", Body: "u1 left 3 items (<€2,000 & more>) in the cart"})
	require.NoError(t, err)
	require.Equal(t, "*Big cart left*\nu1 left 3 items (&lt;€2,000 &amp; more&gt;) in the cart\n_user u1 · reach/r/u1/k/send/slack_", got.Text)
	require.Equal(t, "slack-reach/r/u1/k/send/slack", res.ProviderMessageID)
}
