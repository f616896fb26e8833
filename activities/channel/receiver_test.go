package channel_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/profile"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// post sends body to the receiver with the idempotency key (none when empty).
func post(t *testing.T, url, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(channel.HeaderIdempotencyKey, key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return v
}

func TestReceiverDeduplicates(t *testing.T) {
	rc := channel.NewReceiver(discardLogger())
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	body := `{"idempotency_key":"k1","user_id":"u1","title":"hi"}`

	resp := post(t, srv.URL, "k1", body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	first := decode[channel.Result](t, resp)
	require.False(t, first.Duplicate)
	require.NotEmpty(t, first.ProviderMessageID)

	resp = post(t, srv.URL, "k1", body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	second := decode[channel.Result](t, resp)
	require.True(t, second.Duplicate)
	require.Equal(t, first.ProviderMessageID, second.ProviderMessageID)

	// A different key is a different delivery.
	resp = post(t, srv.URL, "k2", `{"idempotency_key":"k2","user_id":"u2"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	third := decode[channel.Result](t, resp)
	require.False(t, third.Duplicate)
	require.NotEqual(t, first.ProviderMessageID, third.ProviderMessageID)

	ds := rc.Deliveries()
	require.Len(t, ds, 2)
	require.Equal(t, "k1", ds[0].IdempotencyKey)
	require.Equal(t, 2, ds[0].Attempts)
	require.Equal(t, "u1", ds[0].Message.UserID)
	require.Equal(t, "k2", ds[1].IdempotencyKey)
	require.Equal(t, 1, ds[1].Attempts)

	// GET lists the same deliveries.
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	listed := decode[[]channel.Delivery](t, resp)
	require.Len(t, listed, 2)
	require.Equal(t, "k1", listed[0].IdempotencyKey)
	require.Equal(t, 2, listed[0].Attempts)
	require.Equal(t, first.ProviderMessageID, listed[0].ProviderID)
	require.Equal(t, "k2", listed[1].IdempotencyKey)
}

func TestReceiverRefuses(t *testing.T) {
	tests := []struct {
		name   string
		method string
		key    string
		body   string
		want   int
	}{
		{name: "no idempotency key", method: http.MethodPost, body: `{"user_id":"u1"}`, want: http.StatusBadRequest},
		{name: "body is not a message", method: http.MethodPost, key: "k1", body: `not json`, want: http.StatusBadRequest},
		{name: "other method", method: http.MethodDelete, key: "k1", want: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := channel.NewReceiver(discardLogger())
			srv := httptest.NewServer(rc)
			t.Cleanup(srv.Close)

			req, err := http.NewRequest(tt.method, srv.URL, strings.NewReader(tt.body))
			require.NoError(t, err)
			if tt.key != "" {
				req.Header.Set(channel.HeaderIdempotencyKey, tt.key)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			t.Cleanup(func() { _ = resp.Body.Close() })
			require.Equal(t, tt.want, resp.StatusCode)
			require.Empty(t, rc.Deliveries())
		})
	}
}

// The receiver stands in for every provider: it reads push and SMS bodies too, and can be told
// to fail.
func TestReceiverProviderFormatsAndFailures(t *testing.T) {
	rc := channel.NewReceiver(slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	push, err := channel.NewPush(channel.PushConfig{FCMURL: srv.URL, FCMProject: "p", APNsURL: srv.URL})
	require.NoError(t, err)
	sms, err := channel.NewSMS(channel.SMSConfig{URL: srv.URL, Form: true})
	require.NoError(t, err)
	m := testMessage()
	m.To = profile.Addresses{Phone: "+4915112345678", Push: []profile.PushToken{{Token: "a", Platform: "android"}, {Token: "i", Platform: "ios"}}}

	resp, err := http.Post(srv.URL+"/control?status=503&times=1&retry_after=2", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	_, err = sms.Send(context.Background(), m)
	var re *channel.RetryableError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 2*time.Second, re.RetryAfter)

	_, err = sms.Send(context.Background(), m)
	require.NoError(t, err)
	_, err = push.Send(context.Background(), m)
	require.NoError(t, err)
	ds := rc.Deliveries()
	require.Len(t, ds, 3)
	for _, d := range ds {
		require.Equal(t, m.ReachID, d.Message.ReachID)
		require.Equal(t, "u1", d.Message.UserID)
	}
	require.Equal(t, "sms", ds[0].Message.Channel)
	require.Equal(t, m.Title+": "+m.Body, ds[0].Message.Body)
	require.Equal(t, "push", ds[1].Message.Channel)
	require.Equal(t, m.Body, ds[1].Message.Body)
	require.Equal(t, m.Title, ds[2].Message.Title)
}
