package activities_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
)

// countingChannel counts the provider calls it gets; it fails them while fail is set.
type countingChannel struct {
	calls atomic.Int64
	fail  atomic.Bool
}

func (c *countingChannel) Name() string { return "push" }
func (c *countingChannel) Send(_ context.Context, m channel.Message) (channel.Result, error) {
	n := c.calls.Add(1)
	if c.fail.Load() {
		return channel.Result{}, &channel.RetryableError{Err: errors.New("provider unavailable")}
	}
	return channel.Result{ProviderMessageID: "pm-" + m.IdempotencyKey, Status: 200 + int(n) - 1}, nil
}

// A dispatch run again (its workflow task ran again after its process died past the send) finds
// the send in the ledger and calls no provider; a send that failed is not in it; a ledger that
// cannot be read sends nothing. On a single Redis and on the Cluster.
func TestDispatchSendsOnce(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			ctx := context.Background()
			ch := &countingChannel{}
			reg := channel.NewRegistry()
			require.NoError(t, reg.Register(ch))
			a := &activities.Activities{Profiles: profiles{}, Channels: reg, Redis: target.Client, KeyPrefix: testenv.Unique("sent")}
			in := func(key string) activities.DispatchInput {
				return activities.DispatchInput{Channel: "push", TemplateID: "t", Template: journey.Template{Body: "hello"},
					Message: channel.Message{IdempotencyKey: key, ReachID: "r1", UserID: "u1"}}
			}

			first, err := a.Dispatch(ctx, in("r1/send/push"))
			require.NoError(t, err)
			again, err := a.Dispatch(ctx, in("r1/send/push"))
			require.NoError(t, err)
			require.Equal(t, int64(1), ch.calls.Load(), "the second dispatch of a send calls no provider")
			require.Equal(t, first.ProviderMessageID, again.ProviderMessageID)
			require.Equal(t, first.Status, again.Status)
			require.True(t, again.Duplicate)

			ch.fail.Store(true)
			_, err = a.Dispatch(ctx, in("r1/retarget/push"))
			require.Error(t, err)
			ch.fail.Store(false)
			_, err = a.Dispatch(ctx, in("r1/retarget/push"))
			require.NoError(t, err)
			require.Equal(t, int64(3), ch.calls.Load(), "a failed send is tried again")

			down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
			t.Cleanup(func() { _ = down.Close() })
			a.Redis = down
			_, err = a.Dispatch(ctx, in("r1/other/push"))
			require.ErrorContains(t, err, "send ledger")
			require.Equal(t, int64(3), ch.calls.Load(), "nothing is sent while the ledger cannot be read")
		})
	}
}
