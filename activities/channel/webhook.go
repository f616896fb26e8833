package channel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/omegareach/omega/activities/plugin"
)

func init() {
	builtin.MustRegister(Spec{
		Name:   "webhook",
		Doc:    `the "external call": POSTs the message as JSON to OMEGA_WEBHOOK_URL`,
		Fields: webhookFields,
		New:    func(s plugin.Values, _ Deps) (Channel, error) { return webhookFrom(s, "webhook") },
	})
}

// webhookFields configure the webhook channel, and every provider channel without its provider
// (push, SMS ... post to the webhook URL, where the local receiver stands in for them).
var webhookFields = []plugin.Field{
	{Env: "OMEGA_WEBHOOK_URL", Default: "http://127.0.0.1:8090/deliveries",
		Doc: "where the webhook channel posts (and push and sms without their providers)"},
	{Env: "OMEGA_WEBHOOK_SECRET", Secret: true, Doc: "signs each body (Omega-Signature); unsigned when empty"},
	{Env: "OMEGA_WEBHOOK_ALLOW", Check: plugin.Prefixes,
		Doc: "CIDRs the SSRF guard lets through although private (127.0.0.0/8 for the local receiver)"},
}

// webhookFrom is the webhook channel under name, from the webhook's settings.
func webhookFrom(s plugin.Values, name string) (*Webhook, error) {
	allow, err := plugin.ReadPrefixes(s.Get("OMEGA_WEBHOOK_ALLOW"))
	if err != nil {
		return nil, fmt.Errorf("OMEGA_WEBHOOK_ALLOW: %w", err)
	}
	return NewWebhook(WebhookConfig{Name: name, URL: s.Get("OMEGA_WEBHOOK_URL"), Secret: s.Get("OMEGA_WEBHOOK_SECRET"), Allow: allow})
}

// HeaderIdempotencyKey carries Message.IdempotencyKey to the provider.
const HeaderIdempotencyKey = "Idempotency-Key"

// maxResponse caps how much of a provider's answer is read.
const maxResponse = 64 << 10

// WebhookConfig configures the webhook ("external call") channel.
type WebhookConfig struct {
	// Name the channel registers under; "webhook" when empty.
	Name string
	// URL receives a POST of the message as JSON.
	URL string
	// Timeout of one call; 10s when zero.
	Timeout time.Duration
	// Client is http.DefaultClient's transport with Timeout and the SSRF guard when nil.
	Client *http.Client
	// Secret signs each body (HeaderSignature: HMAC-SHA256 over timestamp and body); unsigned
	// when empty.
	Secret string
	// Allow lists the networks a webhook may reach although private, loopback or link-local (the
	// SSRF guard refuses those otherwise), e.g. 127.0.0.0/8 for the local receiver.
	Allow []netip.Prefix
}

func (c *WebhookConfig) setDefaults() {
	if c.Name == "" {
		c.Name = "webhook"
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Client == nil {
		c.Client = GuardedClient(c.Timeout, c.Allow)
	}
}

// Validate reports a config the channel cannot work with.
func (c *WebhookConfig) Validate() error {
	if c.URL == "" {
		return errors.New("webhook: url is required")
	}
	return nil
}

// Webhook posts each message to a URL; the provider deduplicates on the Idempotency-Key header.
type Webhook struct {
	cfg WebhookConfig
}

// NewWebhook builds a webhook channel.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Webhook{cfg: cfg}, nil
}

// Name implements Channel.
func (w *Webhook) Name() string { return w.cfg.Name }

// Send implements Channel: the message as JSON, signed when a secret is set.
func (w *Webhook) Send(ctx context.Context, m Message) (Result, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return Result{}, &PermanentError{fmt.Errorf("encode message: %w", err)}
	}
	req, err := newRequest(ctx, w.cfg.URL, body, "application/json", m, w.cfg.Name)
	if err != nil {
		return Result{}, err
	}
	if w.cfg.Secret != "" {
		req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, time.Now(), body))
	}
	return post(w.cfg.Client, req)
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
