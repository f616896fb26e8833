// Package channeltest is the conformance suite every channel passes: the idempotency key reaches
// the provider; 4xx (but 429) is permanent; 429, 5xx and timeouts are retried, Retry-After
// honoured; a retried send is delivered once.
package channeltest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
)

// Answer is a failure the fake provider gives instead of accepting.
type Answer struct {
	Status     int
	RetryAfter string
}

// Provider is a fake provider: it accepts each idempotency key once (a second request with the
// same key is acknowledged as a duplicate, not delivered again), counts deliveries per key, and
// can be told to fail or hang.
type Provider struct {
	srv *httptest.Server

	mu         sync.Mutex
	deliveries map[string]int
	requests   int
	fail       []Answer
	always     *Answer
	hang       time.Duration
}

// NewProvider starts a fake provider closed at cleanup.
func NewProvider(t testing.TB) *Provider {
	p := &Provider{deliveries: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// URL is the provider's base URL.
func (p *Provider) URL() string { return p.srv.URL }

// FailNext makes the next requests fail with as, in order.
func (p *Provider) FailNext(as ...Answer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = append(p.fail, as...)
}

// FailAlways makes every request fail with a until Heal.
func (p *Provider) FailAlways(a Answer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.always = &a
}

// Heal ends FailAlways.
func (p *Provider) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.always = nil
}

// Hang makes every request wait d before answering.
func (p *Provider) Hang(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hang = d
}

// Delivered returns the deliveries per idempotency key.
func (p *Provider) Delivered() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.deliveries))
	for k, v := range p.deliveries {
		out[k] = v
	}
	return out
}

func (p *Provider) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests++
	hang := p.hang
	var a *Answer
	if len(p.fail) > 0 {
		a = &p.fail[0]
		p.fail = p.fail[1:]
	} else if p.always != nil {
		a = p.always
	}
	p.mu.Unlock()
	if hang > 0 {
		select {
		case <-time.After(hang):
		case <-r.Context().Done():
			return
		}
	}
	if a != nil {
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		http.Error(w, "injected failure", a.Status)
		return
	}
	key := r.Header.Get(channel.HeaderIdempotencyKey)
	if key == "" {
		http.Error(w, "missing idempotency key", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	dup := p.deliveries[key] > 0
	if !dup {
		p.deliveries[key] = 1
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(channel.Result{ProviderMessageID: "pm-" + key, Duplicate: dup})
}

// Run checks newChannel's channels against the contract. newChannel builds the channel for a
// provider at url, with a call timeout of timeout; msg must be deliverable by it.
func Run(t *testing.T, newChannel func(t *testing.T, url string, timeout time.Duration) channel.Channel, msg channel.Message) {
	ctx := context.Background()
	fresh := func(t *testing.T) (*Provider, channel.Channel) {
		p := NewProvider(t)
		return p, newChannel(t, p.URL(), 300*time.Millisecond)
	}
	keysOf := func(t *testing.T, p *Provider) int {
		n := 0
		for k, c := range p.Delivered() {
			require.True(t, strings.HasPrefix(k, msg.IdempotencyKey), "key %q does not carry the message's key %q", k, msg.IdempotencyKey)
			require.Equal(t, 1, c, "key %q delivered %d times", k, c)
			n++
		}
		return n
	}

	t.Run("accepted once, with the idempotency key", func(t *testing.T) {
		p, ch := fresh(t)
		res, err := ch.Send(ctx, msg)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.Status)
		require.NotEmpty(t, res.ProviderMessageID)
		n := keysOf(t, p)
		require.Positive(t, n)
		// The same message again (a retried activity) delivers nothing new.
		_, err = ch.Send(ctx, msg)
		require.NoError(t, err)
		require.Equal(t, n, keysOf(t, p))
	})
	t.Run("4xx is permanent", func(t *testing.T) {
		p, ch := fresh(t)
		p.FailNext(Answer{Status: http.StatusBadRequest}, Answer{Status: http.StatusBadRequest}, Answer{Status: http.StatusBadRequest})
		_, err := ch.Send(ctx, msg)
		require.Error(t, err)
		require.True(t, channel.IsPermanent(err), "%v", err)
	})
	t.Run("429 is retried after Retry-After", func(t *testing.T) {
		p, ch := fresh(t)
		p.FailNext(Answer{Status: http.StatusTooManyRequests, RetryAfter: "7"}, Answer{Status: http.StatusTooManyRequests, RetryAfter: "7"})
		_, err := ch.Send(ctx, msg)
		require.Error(t, err)
		require.False(t, channel.IsPermanent(err), "%v", err)
		var re *channel.RetryableError
		require.True(t, errors.As(err, &re), "%v", err)
		require.Equal(t, 7*time.Second, re.RetryAfter, "the provider's Retry-After reaches the retry")
	})
	t.Run("5xx is retried, and the retry delivers once", func(t *testing.T) {
		p, ch := fresh(t)
		p.FailAlways(Answer{Status: http.StatusServiceUnavailable})
		_, err := ch.Send(ctx, msg)
		require.Error(t, err)
		require.False(t, channel.IsPermanent(err), "%v", err)
		p.Heal()
		_, err = ch.Send(ctx, msg)
		require.NoError(t, err)
		keysOf(t, p)
	})
	t.Run("a timeout is retried", func(t *testing.T) {
		p, ch := fresh(t)
		p.Hang(time.Second)
		_, err := ch.Send(ctx, msg)
		require.Error(t, err)
		require.False(t, channel.IsPermanent(err), "%v", err)
	})
}
