package channel_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
)

// loopback lets the SSRF guard through to httptest servers.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func testMessage() channel.Message {
	return channel.Message{
		IdempotencyKey: "reach/cart-add/u1/e1/send/webhook", ReachID: "reach/cart-add/u1/e1", UserID: "u1",
		Template: "cart_reminder_v1", Title: "Still thinking about it?", Body: "The item i1 is waiting in your cart.",
		Data: map[string]string{"item_id": "i1"},
	}
}

func newWebhook(t *testing.T, url string, timeout time.Duration) *channel.Webhook {
	t.Helper()
	wh, err := channel.NewWebhook(channel.WebhookConfig{URL: url, Timeout: timeout, Allow: loopback})
	require.NoError(t, err)
	return wh
}

func TestWebhookSendsMessage(t *testing.T) {
	type seen struct {
		method, key, contentType string
		msg                      channel.Message
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m channel.Message
		err := json.NewDecoder(r.Body).Decode(&m)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- seen{method: r.Method, key: r.Header.Get(channel.HeaderIdempotencyKey), contentType: r.Header.Get("Content-Type"), msg: m}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"provider_message_id":"pm-42"}`)
	}))
	t.Cleanup(srv.Close)

	wh := newWebhook(t, srv.URL, time.Second)
	require.Equal(t, "webhook", wh.Name())
	res, err := wh.Send(context.Background(), testMessage())
	require.NoError(t, err)
	require.Equal(t, channel.Result{ProviderMessageID: "pm-42", Status: http.StatusOK}, res)

	s := <-got
	require.Equal(t, http.MethodPost, s.method)
	require.Equal(t, testMessage().IdempotencyKey, s.key)
	require.Equal(t, "application/json", s.contentType)
	require.Equal(t, testMessage(), s.msg)
}

func TestWebhookClassifiesFailures(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		delay      time.Duration // longer than the webhook's timeout: the call times out

		wantPermanent  bool
		wantRetryAfter time.Duration
		wantStatus     int
	}{
		{name: "bad request is permanent", status: http.StatusBadRequest, wantPermanent: true, wantStatus: 400},
		{name: "not found is permanent", status: http.StatusNotFound, wantPermanent: true, wantStatus: 404},
		{name: "too many requests with retry-after", status: http.StatusTooManyRequests, retryAfter: "7", wantRetryAfter: 7 * time.Second, wantStatus: 429},
		{name: "too many requests without retry-after", status: http.StatusTooManyRequests, wantStatus: 429},
		{name: "unavailable is retryable", status: http.StatusServiceUnavailable, wantStatus: 503},
		{name: "internal error is retryable", status: http.StatusInternalServerError, wantStatus: 500},
		{name: "timeout is retryable", status: http.StatusOK, delay: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Reading the body lets the server notice the client hanging up.
				_, _ = io.Copy(io.Discard, r.Body)
				if tt.delay > 0 {
					select {
					case <-time.After(tt.delay):
					case <-r.Context().Done():
						return
					}
				}
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				http.Error(w, http.StatusText(tt.status), tt.status)
			}))
			t.Cleanup(srv.Close)

			wh := newWebhook(t, srv.URL, 100*time.Millisecond)
			start := time.Now()
			res, err := wh.Send(context.Background(), testMessage())
			require.Error(t, err)
			require.Equal(t, tt.wantStatus, res.Status)
			require.Equal(t, tt.wantPermanent, channel.IsPermanent(err), "IsPermanent(%v)", err)
			if tt.wantPermanent {
				return
			}
			var re *channel.RetryableError
			require.True(t, errors.As(err, &re), "want a *RetryableError, got %T: %v", err, err)
			require.Equal(t, tt.wantRetryAfter, re.RetryAfter)
			if tt.delay > 0 {
				require.Less(t, time.Since(start), tt.delay, "the call must give up at the webhook's timeout")
			}
		})
	}
}

// The caller's context bounds the call too: an activity whose deadline passed stops waiting.
func TestWebhookHonoursContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice the client hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)

	wh := newWebhook(t, srv.URL, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := wh.Send(ctx, testMessage())
	require.Error(t, err)
	require.False(t, channel.IsPermanent(err))
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestNewWebhookValidates(t *testing.T) {
	tests := []struct {
		name     string
		cfg      channel.WebhookConfig
		wantErr  bool
		wantName string
	}{
		{name: "empty url", cfg: channel.WebhookConfig{}, wantErr: true},
		{name: "defaults", cfg: channel.WebhookConfig{URL: "http://127.0.0.1:1/x"}, wantName: "webhook"},
		{name: "named", cfg: channel.WebhookConfig{Name: "crm", URL: "http://127.0.0.1:1/x"}, wantName: "crm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wh, err := channel.NewWebhook(tt.cfg)
			if tt.wantErr {
				require.Error(t, err)
				require.Nil(t, wh)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantName, wh.Name())
		})
	}
}

// Webhook and Receiver together keep the channel contract: a retried send is delivered once and
// the provider says the retry was a duplicate.
func TestWebhookToReceiverIsIdempotent(t *testing.T) {
	rc := channel.NewReceiver(discardLogger())
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	wh := newWebhook(t, srv.URL, time.Second)

	first, err := wh.Send(context.Background(), testMessage())
	require.NoError(t, err)
	require.False(t, first.Duplicate)
	second, err := wh.Send(context.Background(), testMessage())
	require.NoError(t, err)
	require.True(t, second.Duplicate)
	require.Equal(t, first.ProviderMessageID, second.ProviderMessageID)

	ds := rc.Deliveries()
	require.Len(t, ds, 1)
	require.Equal(t, 2, ds[0].Attempts)
	require.Equal(t, testMessage(), ds[0].Message)
}
