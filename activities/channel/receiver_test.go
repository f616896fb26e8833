package channel_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
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
