// Package channel holds the plug-in channels a reach dispatches on (webhook, push, SMS and in-app
// inbox, each a provider behind the same contract) and the registry the worker builds them into.
// Each channel's file declares it (Spec: name, settings, constructor) into Builtin; the worker
// builds what is declared (Build) and the usage text lists it, so a new channel is one file plus
// its row in the conformance test.
//
// The contract every channel keeps: the message's IdempotencyKey reaches the provider, so a retried
// dispatch is delivered once; a failure the provider will never accept is a *PermanentError, and
// anything else (timeouts, 429, 5xx) is retryable, optionally with a RetryAfter hint.
package channel

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/omegareach/omega/profile"
)

// Message is what a channel delivers.
type Message struct {
	// IdempotencyKey is <reach id>/<step>/<channel>; providers deduplicate on it.
	IdempotencyKey string `json:"idempotency_key"`
	ReachID        string `json:"reach_id"`
	UserID         string `json:"user_id"`
	// TraceID is the reach's trace: the provider call carries it in its traceparent header.
	TraceID string `json:"trace_id,omitempty"`
	// Channel is the channel the message goes out on (push, sms, webhook...).
	Channel  string            `json:"channel,omitempty"`
	Template string            `json:"template"`
	Title    string            `json:"title"`
	Body     string            `json:"body"`
	Data     map[string]string `json:"data,omitempty"`
	// To is where the user is reached (push tokens, phone), read from the profile at send time;
	// the webhook channel needs none.
	To profile.Addresses `json:"to,omitzero"`
}

// Result is the provider's acknowledgement.
type Result struct {
	ProviderMessageID string `json:"provider_message_id,omitempty"`
	Status            int    `json:"status"`
	// Duplicate is true when the provider had already accepted this idempotency key.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Channel delivers messages to one kind of provider.
type Channel interface {
	Name() string
	Send(ctx context.Context, m Message) (Result, error)
}

// PermanentError is a failure that retrying cannot fix (a 4xx other than 429, an invalid address).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// RetryableError is a failure worth retrying, after RetryAfter when the provider said so.
type RetryableError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *RetryableError) Error() string { return "retryable: " + e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// IsPermanent reports whether err must not be retried.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Registry maps channel names to channels. The zero value is not usable; use NewRegistry.
type Registry struct {
	channels map[string]Channel
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{channels: map[string]Channel{}} }

// Register adds a channel under its name and refuses a second channel with the same name.
func (r *Registry) Register(c Channel) error {
	if _, ok := r.channels[c.Name()]; ok {
		return fmt.Errorf("channel %q registered twice", c.Name())
	}
	r.channels[c.Name()] = c
	return nil
}

// Get returns the channel registered under name.
func (r *Registry) Get(name string) (Channel, bool) {
	c, ok := r.channels[name]
	return c, ok
}

// Names lists the registered channels in order.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.channels))
	for n := range r.channels {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
