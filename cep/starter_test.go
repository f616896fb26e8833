package cep

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	temporalmocks "go.temporal.io/sdk/mocks"

	"github.com/omegareach/omega/workflows"
)

// A start Temporal refuses for good is reported permanent; one it cannot take now is not.
func TestStartRefusedForGoodIsPermanent(t *testing.T) {
	tc := &temporalmocks.Client{}
	tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything).
		Return(nil, serviceerror.NewInvalidArgument("WorkflowId exceeds length limit.")).Once()
	tc.On("ExecuteWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything).
		Return(nil, serviceerror.NewUnavailable("frontend down")).Once()
	st := &TemporalStarter{Client: tc, TaskQueue: "q"}
	m := workflows.Match{RuleID: "r", UserID: "u", MatchKey: "e1", EventIDs: []string{"e1"}}
	require.ErrorIs(t, st.Start(context.Background(), m), ErrPermanent)
	err := st.Start(context.Background(), m)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrPermanent, "unavailable is retried")
}

// countingStarter refuses its first match for good and fails the next start once.
type countingStarter struct{ calls atomic.Int32 }

func (c *countingStarter) Start(_ context.Context, m workflows.Match) error {
	n := c.calls.Add(1)
	switch {
	case m.MatchKey == "refused":
		return ErrPermanent
	case n <= 2:
		return errors.New("unavailable")
	}
	return nil
}

// The batch skips a refused match (the partition goes on) and retries the others until they start.
func TestStartAllSkipsRefused(t *testing.T) {
	st := &countingStarter{}
	s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		Starter: st, StartConcurrency: 1})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.startAll(ctx, []workflows.Match{{MatchKey: "refused"}, {MatchKey: "ok"}}))
	require.Equal(t, int32(3), st.calls.Load(), "the refused match once, the other until it started")
}

// A stage started while no broker answers waits in Run and is not connected (its process not
// ready) until one does; it stops with its context.
func TestRunWaitsForKafka(t *testing.T) {
	s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		Starter: &countingStarter{}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Connected():
		t.Fatal("connected without a broker")
	case err := <-done:
		require.Error(t, err, "Run ends with its context")
		require.Error(t, ctx.Err(), "Run waited for a broker until its context ended")
	}
}
