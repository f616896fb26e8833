package channel

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter is a token bucket in Redis, shared by every worker that uses the same key: Rate sends
// per second on average, Burst at once.
type Limiter struct {
	Redis redis.Scripter
	Key   string
	Rate  float64
	Burst int
}

// takeScript: KEYS[1] the bucket. ARGV: rate per ms, burst, now ms. Returns 0 when a token was
// taken, else the ms until the caller should try again.
//
// A caller that finds no token is told to come back behind the callers already told to wait (q,
// a queue that drains at the rate), not when the next token comes: ten thousand reaches of a
// fan-out that hit the limit at once come back spread over the time the rate needs for them,
// instead of all at the next token and again and again until their attempts run out.
var takeScript = redis.NewScript(`
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'q')
local tokens, ts, q = tonumber(b[1]), tonumber(b[2]), tonumber(b[3]) or 0
if tokens == nil then tokens, ts = burst, now end
now = math.max(now, ts) -- a worker whose clock lags must not refill the bucket again
local elapsed = now - ts
tokens = math.min(burst, tokens + elapsed * rate)
q = math.max(0, q - elapsed * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens + q) / rate)
  q = q + 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now, 'q', tostring(q))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst + q) / rate) + 1000)
return wait`)

// Take takes a token, or says how long to wait for one.
func (l *Limiter) Take(ctx context.Context, now time.Time) (time.Duration, error) {
	ms, err := takeScript.Run(ctx, l.Redis, []string{l.Key}, l.Rate/1000, max(l.Burst, 1), now.UnixMilli()).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", l.Key, err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// RateLimited wraps a channel so its provider sees at most the limiter's rate across all workers;
// a send over the rate is retried after the wait (a RetryableError with RetryAfter).
type RateLimited struct {
	Channel
	Limiter *Limiter
}

func (r *RateLimited) Send(ctx context.Context, m Message) (Result, error) {
	wait, err := r.Limiter.Take(ctx, time.Now())
	if err != nil {
		return Result{}, &RetryableError{Err: err}
	}
	if wait > 0 {
		return Result{}, &RetryableError{Err: fmt.Errorf("%s: provider rate limit of %g/s reached", r.Name(), r.Limiter.Rate), RetryAfter: wait}
	}
	return r.Channel.Send(ctx, m)
}
