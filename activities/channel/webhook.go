package channel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

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
	// Client is http.DefaultClient's transport with Timeout when nil.
	Client *http.Client
}

func (c *WebhookConfig) setDefaults() {
	if c.Name == "" {
		c.Name = "webhook"
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: c.Timeout}
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

// Send implements Channel.
func (w *Webhook) Send(ctx context.Context, m Message) (Result, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return Result{}, &PermanentError{fmt.Errorf("encode message: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return Result{}, &PermanentError{fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, m.IdempotencyKey)
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return Result{}, &RetryableError{Err: fmt.Errorf("post to provider: %w", err)}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		var r Result
		_ = json.Unmarshal(answer, &r) // the body is optional
		r.Status = resp.StatusCode
		return r, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return Result{Status: resp.StatusCode}, &RetryableError{
			Err:        fmt.Errorf("provider answered %d: %s", resp.StatusCode, bytes.TrimSpace(answer)),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After")),
		}
	default:
		return Result{Status: resp.StatusCode}, &PermanentError{fmt.Errorf("provider answered %d: %s", resp.StatusCode, bytes.TrimSpace(answer))}
	}
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
