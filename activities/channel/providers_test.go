package channel_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/profile"
)

func TestPushWithoutTokenIsPermanent(t *testing.T) {
	p, err := channel.NewPush(channel.PushConfig{FCMURL: "http://x", FCMProject: "p"})
	require.NoError(t, err)
	_, err = p.Send(context.Background(), testMessage())
	require.True(t, channel.IsPermanent(err), "%v", err)
	s, err := channel.NewSMS(channel.SMSConfig{URL: "http://x"})
	require.NoError(t, err)
	_, err = s.Send(context.Background(), testMessage())
	require.True(t, channel.IsPermanent(err), "%v", err)
}

func TestPushRequestShapes(t *testing.T) {
	seen := map[string]map[string]any{}
	headers := map[string]http.Header{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		seen[r.URL.Path], headers[r.URL.Path] = body, r.Header
		_, _ = io.WriteString(w, `{"name":"projects/p/messages/1"}`)
	}))
	t.Cleanup(srv.Close)
	p, err := channel.NewPush(channel.PushConfig{FCMURL: srv.URL, FCMProject: "p", FCMToken: "fcm-secret",
		APNsURL: srv.URL, APNsTopic: "com.example.app", APNsToken: "jwt"})
	require.NoError(t, err)
	m := testMessage()
	m.To.Push = []profile.PushToken{{Token: "a1", Platform: "android"}, {Token: "i1", Platform: "ios"}}
	_, err = p.Send(context.Background(), m)
	require.NoError(t, err)

	fcm := seen["/v1/projects/p/messages:send"]["message"].(map[string]any)
	require.Equal(t, "a1", fcm["token"])
	require.Equal(t, m.Title, fcm["notification"].(map[string]any)["title"])
	require.Equal(t, "Bearer fcm-secret", headers["/v1/projects/p/messages:send"].Get("Authorization"))
	apns := seen["/3/device/i1"]["aps"].(map[string]any)["alert"].(map[string]any)
	require.Equal(t, m.Body, apns["body"])
	h := headers["/3/device/i1"]
	require.Equal(t, "com.example.app", h.Get("apns-topic"))
	require.Len(t, h.Get("apns-id"), 36, "a UUID derived from the key")
	require.True(t, strings.HasPrefix(h.Get(channel.HeaderIdempotencyKey), m.IdempotencyKey+"/"))
	require.NotEqual(t, headers["/v1/projects/p/messages:send"].Get(channel.HeaderIdempotencyKey), h.Get(channel.HeaderIdempotencyKey), "one key per device")
}

func TestSMSSenderPerCountry(t *testing.T) {
	s, err := channel.NewSMS(channel.SMSConfig{URL: "http://x", DefaultSender: "Omega", Senders: map[string]string{"+1": "+15550100", "+44": "OmegaUK", "+4420": "OmegaLDN"}})
	require.NoError(t, err)
	require.Equal(t, "+15550100", s.Sender("+12125550123"))
	require.Equal(t, "OmegaLDN", s.Sender("+442071234567"), "the longest prefix wins")
	require.Equal(t, "OmegaUK", s.Sender("+447911123456"))
	require.Equal(t, "Omega", s.Sender("+4915112345678"))
}

func TestWebhookSignature(t *testing.T) {
	var sig, body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sig, body = r.Header.Get(channel.HeaderSignature), string(b)
	}))
	t.Cleanup(srv.Close)
	wh, err := channel.NewWebhook(channel.WebhookConfig{URL: srv.URL, Secret: "s3cret", Allow: loopback})
	require.NoError(t, err)
	_, err = wh.Send(context.Background(), testMessage())
	require.NoError(t, err)
	// A receiver recomputes it from the timestamp and the body.
	ts, mac, ok := strings.Cut(strings.TrimPrefix(sig, "t="), ",v1=")
	require.True(t, ok, sig)
	h := hmac.New(sha256.New, []byte("s3cret"))
	h.Write([]byte(ts + "." + body))
	require.Equal(t, hex.EncodeToString(h.Sum(nil)), mac)
	require.Equal(t, channel.Sign("s3cret", time.Unix(mustAtoi(t, ts), 0), []byte(body)), sig)
}

func mustAtoi(t *testing.T, s string) int64 {
	var n int64
	require.NoError(t, json.Unmarshal([]byte(s), &n))
	return n
}

func TestSSRFGuard(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
		"::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1"} {
		require.False(t, channel.Allowed(netip.MustParseAddr(a), nil), a)
	}
	for _, a := range []string{"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"} {
		require.True(t, channel.Allowed(netip.MustParseAddr(a), nil), a)
	}
	require.True(t, channel.Allowed(netip.MustParseAddr("10.1.2.3"), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}))

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	for _, url := range []string{srv.URL, "http://localhost" + port} { // a name that resolves inward too
		wh, err := channel.NewWebhook(channel.WebhookConfig{URL: url})
		require.NoError(t, err)
		_, err = wh.Send(context.Background(), testMessage())
		require.True(t, channel.IsPermanent(err), "%s: %v", url, err)
		require.Contains(t, err.Error(), "not allowed")
	}
}

// Once any device has the message it counts as sent: a retry would post again to that device.
func TestPushPartialFailureIsSent(t *testing.T) {
	var posts int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts++
		if strings.Contains(r.URL.Path, "/3/device/") {
			http.Error(w, "BadDeviceToken", http.StatusGone)
			return
		}
		_, _ = io.WriteString(w, `{"name":"m1"}`)
	}))
	t.Cleanup(srv.Close)
	p, err := channel.NewPush(channel.PushConfig{FCMURL: srv.URL, FCMProject: "p", APNsURL: srv.URL})
	require.NoError(t, err)
	m := testMessage()
	m.To.Push = []profile.PushToken{{Token: "a", Platform: "android"}, {Token: "i", Platform: "ios"}}
	res, err := p.Send(context.Background(), m)
	require.NoError(t, err)
	require.Equal(t, "m1", res.ProviderMessageID)
	require.Equal(t, 2, posts)
}

func TestSSRFGuardInwardRanges(t *testing.T) {
	for _, a := range []string{"100.100.100.200", "100.64.0.1", "198.18.0.1", "64:ff9b::a00:1", "2002:a00:1::1"} {
		require.False(t, channel.Allowed(netip.MustParseAddr(a), nil), a)
	}
}

// A redirect to an address the guard refuses is refused like a direct call: the check runs on
// every connection, not on the first URL.
func TestSSRFGuardRechecksRedirects(t *testing.T) {
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(inner.Close)
	port := inner.URL[strings.LastIndex(inner.URL, ":")+1:]
	for _, target := range []string{"http://127.0.0.2:" + port + "/meta", "http://[::1]:" + port + "/", "http://169.254.169.254/latest/meta-data/"} {
		outer := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
		t.Cleanup(outer.Close)
		c := channel.GuardedClient(2*time.Second, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
		resp, err := c.Get(outer.URL)
		if err == nil {
			resp.Body.Close()
		}
		require.Error(t, err, target)
		require.Contains(t, err.Error(), "not allowed", target)
	}
}

// A provider that answers a refusal with a megabyte keeps a bounded snippet in the error (which
// goes into workflow history and the audit trail).
func TestProviderAnswerIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, strings.Repeat("x", 1<<20))
	}))
	t.Cleanup(srv.Close)
	wh, err := channel.NewWebhook(channel.WebhookConfig{URL: srv.URL, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	require.NoError(t, err)
	_, err = wh.Send(context.Background(), testMessage())
	require.True(t, channel.IsPermanent(err))
	require.Less(t, len(err.Error()), 700)
	require.Contains(t, err.Error(), "bytes)")
}
