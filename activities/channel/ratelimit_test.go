package channel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/internal/testenv"
)

type okChannel struct{ sent *int }

func (okChannel) Name() string { return "ok" }
func (c okChannel) Send(context.Context, channel.Message) (channel.Result, error) {
	*c.sent++
	return channel.Result{Status: 200}, nil
}

// Two workers share one bucket: together they never exceed the rate.
func TestRateLimitSharedAcrossWorkers(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			key := testenv.Unique("rl:")
			now := time.Unix(1_800_000_000, 0)
			a := &channel.Limiter{Redis: rdb, Key: key, Rate: 5, Burst: 5}
			b := &channel.Limiter{Redis: rdb, Key: key, Rate: 5, Burst: 5}
			took := 0
			var waits []time.Duration
			for i := range 8 {
				l := a
				if i%2 == 1 {
					l = b
				}
				w, err := l.Take(context.Background(), now)
				require.NoError(t, err)
				if w == 0 {
					took++
				} else {
					waits = append(waits, w)
				}
			}
			require.Equal(t, 5, took, "the burst, shared")
			require.Len(t, waits, 3)
			for i, w := range waits {
				// Each its own slot behind the ones told to wait before: they do not all come back
				// at the next token.
				require.InDelta(t, time.Duration(i+1)*200*time.Millisecond, w, float64(5*time.Millisecond))
			}
			w, err := a.Take(context.Background(), now.Add(200*time.Millisecond))
			require.NoError(t, err)
			require.Zero(t, w, "one token refilled after 1/rate")

			// A worker whose clock lags does not refill the bucket: the tokens are spent.
			lag := &channel.Limiter{Redis: rdb, Key: testenv.Unique("rl:"), Rate: 1, Burst: 1}
			w, err = lag.Take(context.Background(), now)
			require.NoError(t, err)
			require.Zero(t, w)
			for i := range 3 {
				w, err = lag.Take(context.Background(), now.Add(-time.Duration(i+1)*time.Second))
				require.NoError(t, err)
				require.Positive(t, w, "a lagging clock must not refill")
			}

			sent := 0
			rl := &channel.RateLimited{Channel: okChannel{&sent}, Limiter: &channel.Limiter{Redis: rdb, Key: testenv.Unique("rl:"), Rate: 1, Burst: 1}}
			_, err = rl.Send(context.Background(), testMessage())
			require.NoError(t, err)
			_, err = rl.Send(context.Background(), testMessage())
			var re *channel.RetryableError
			require.True(t, errors.As(err, &re), "%v", err)
			require.Greater(t, re.RetryAfter, 500*time.Millisecond)
			require.Equal(t, 1, sent)
		})
	}
}
