package channel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/omegareach/omega/internal/tracing"
)

// Headers every HTTP channel sends besides the provider's own, so a provider (or the local
// receiver) can deduplicate and attribute.
const (
	HeaderReachID   = "Omega-Reach-Id"
	HeaderUserID    = "Omega-User-Id"
	HeaderChannel   = "Omega-Channel"
	HeaderTemplate  = "Omega-Template"
	HeaderSignature = "Omega-Signature"
)

// post sends req and classifies the answer: 2xx is a result; 429, 5xx and transport errors
// (timeouts included) are retryable, with the provider's Retry-After; any other status is
// permanent.
func post(client *http.Client, req *http.Request) (Result, error) {
	resp, err := client.Do(req)
	if err != nil {
		var refused *refusedError
		if errors.As(err, &refused) {
			return Result{}, &PermanentError{refused}
		}
		return Result{}, &RetryableError{Err: fmt.Errorf("call provider: %w", err)}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		var r Result
		_ = json.Unmarshal(answer, &r) // the body is optional
		if r.ProviderMessageID == "" {
			var fcm struct{ Name string }
			if json.Unmarshal(answer, &fcm) == nil && fcm.Name != "" {
				r.ProviderMessageID = fcm.Name
			} else if id := resp.Header.Get("apns-id"); id != "" {
				r.ProviderMessageID = id
			}
		}
		r.Status = resp.StatusCode
		return r, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return Result{Status: resp.StatusCode}, &RetryableError{
			Err:        fmt.Errorf("provider answered %d: %s", resp.StatusCode, snippet(answer)),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After")),
		}
	default:
		return Result{Status: resp.StatusCode}, &PermanentError{fmt.Errorf("provider answered %d: %s", resp.StatusCode, snippet(answer))}
	}
}

// maxSnippet bounds how much of a refusal is kept: the error travels into workflow history and
// the audit trail.
const maxSnippet = 512

func snippet(answer []byte) string {
	a := bytes.TrimSpace(answer)
	if len(a) <= maxSnippet {
		return string(a)
	}
	return strings.ToValidUTF8(string(a[:maxSnippet]), "") + fmt.Sprintf("… (%d bytes)", len(a))
}

// newRequest builds a provider call carrying the message's idempotency key and attribution.
func newRequest(ctx context.Context, url string, body []byte, contentType string, m Message, channel string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, &PermanentError{fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(HeaderIdempotencyKey, m.IdempotencyKey)
	req.Header.Set(HeaderReachID, m.ReachID)
	req.Header.Set(HeaderUserID, m.UserID)
	req.Header.Set(HeaderChannel, channel)
	req.Header.Set(HeaderTemplate, m.Template)
	// The activity's span when traces are exported, else the reach's trace ID: the provider's
	// logs join the reach's trail. A span of another trace (the run was started by a process
	// that exports no spans, so the worker's interceptor began a new one) gives way to the
	// reach's, which every record carries.
	tctx := ctx
	if id := tracing.ID(ctx); m.TraceID != "" && id != m.TraceID {
		tctx = tracing.Ensure(context.Background(), m.TraceID)
	}
	tracing.Inject(tracing.Ensure(tctx, m.TraceID), propagation.HeaderCarrier(req.Header))
	return req, nil
}

// Sign is the webhook signature of body at t: "t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<unix seconds>.<body>" under secret>". Receivers recompute it and refuse stale timestamps.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// refusedError is the SSRF guard refusing an address.
type refusedError struct{ addr netip.Addr }

func (e *refusedError) Error() string {
	return fmt.Sprintf("address %s is private, loopback or link-local and not allowed", e.addr)
}

// GuardedClient is an HTTP client that refuses to connect to private, loopback, link-local,
// unspecified and multicast addresses (IPv4-mapped IPv6 included) unless allow holds them. The
// check runs on the address actually dialled, after DNS, for every connection: redirects and DNS
// names that resolve inward are refused too.
func GuardedClient(timeout time.Duration, allow []netip.Prefix) *http.Client {
	d := &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		if a := ap.Addr().Unmap(); !Allowed(a, allow) {
			return &refusedError{a}
		}
		return nil
	}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	tr.Proxy = nil // a proxy would dial for us, past the guard
	return &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: func(_ *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("too many redirects")
		}
		return nil
	}}
}

// Allowed reports whether the SSRF guard lets a connect to a through.
func Allowed(a netip.Addr, allow []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range allow {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range inward {
		if p.Contains(a) {
			return false
		}
	}
	return !(a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast())
}

// inward are ranges netip does not call private but that reach inside a network: carrier-grade
// NAT (cloud metadata lives there on some clouds), benchmarking and IETF ranges, and the IPv6
// translation prefixes that embed an IPv4 address (NAT64, 6to4).
var inward = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
}
