package channel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
)

type namedChannel string

func (c namedChannel) Name() string { return string(c) }
func (c namedChannel) Send(context.Context, channel.Message) (channel.Result, error) {
	return channel.Result{}, nil
}

func TestRegistry(t *testing.T) {
	r := channel.NewRegistry()
	require.NoError(t, r.Register(namedChannel("webhook")))
	require.NoError(t, r.Register(namedChannel("push")))

	err := r.Register(namedChannel("webhook"))
	require.Error(t, err)
	require.Contains(t, err.Error(), `"webhook"`)

	got, ok := r.Get("webhook")
	require.True(t, ok)
	require.Equal(t, "webhook", got.Name())
	_, ok = r.Get("sms")
	require.False(t, ok)
	require.Equal(t, []string{"push", "webhook"}, r.Names())
}

func TestErrorClassification(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name          string
		err           error
		wantPermanent bool
	}{
		{name: "permanent", err: &channel.PermanentError{Err: base}, wantPermanent: true},
		{name: "wrapped permanent", err: fmt.Errorf("send: %w", &channel.PermanentError{Err: base}), wantPermanent: true},
		{name: "retryable", err: &channel.RetryableError{Err: base, RetryAfter: time.Second}},
		{name: "plain", err: base},
		{name: "nil", err: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.wantPermanent, channel.IsPermanent(tt.err))
			if tt.err != nil && tt.err != base {
				require.ErrorIs(t, tt.err, base, "the cause stays reachable")
			}
		})
	}
}
