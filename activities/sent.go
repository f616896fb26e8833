package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/activities/channel"
)

// The send ledger. A send the provider accepted is written down in Redis, under its idempotency
// key, for sentTTL; a dispatch looks there first and returns what it finds instead of sending
// again. A workflow task runs its dispatch again when its process died after the send and before
// Temporal recorded it: a crash (kill -9, OOM, a node lost), or a stop while a dependency was down
// and the task's later steps waited on it. Providers that deduplicate on the idempotency key
// (the webhook contract asks it) would absorb the second send; most push and SMS gateways do not,
// and the user would get the message twice.
//
// What is left: a process that dies between the provider's answer and the ledger's write (one
// Redis round trip) sends again. A ledger Redis cannot be read sends nothing (the step is retried);
// one it cannot be written to is logged, and the send counts as made.

// sentTTL is how long the ledger remembers a send: far past the minutes a workflow task takes to
// run again on another worker.
const sentTTL = 24 * time.Hour

// sentKey is where the ledger keeps a send: under the user's hash tag, as the user's other keys.
func (a *Activities) sentKey(m channel.Message) string {
	return a.KeyPrefix + ":{" + m.UserID + "}:sent:" + m.IdempotencyKey
}

// alreadySent returns the recorded result of m's send, if the ledger has it.
func (a *Activities) alreadySent(ctx context.Context, m channel.Message) (channel.Result, bool, error) {
	if a.Redis == nil || m.IdempotencyKey == "" {
		return channel.Result{}, false, nil
	}
	raw, err := a.Redis.Get(ctx, a.sentKey(m)).Bytes()
	if errors.Is(err, redis.Nil) {
		return channel.Result{}, false, nil
	}
	if err != nil {
		return channel.Result{}, false, fmt.Errorf("read the send ledger: %w", err)
	}
	var res channel.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return channel.Result{}, false, fmt.Errorf("read the send ledger: %s: %w", a.sentKey(m), err)
	}
	res.Duplicate = true
	return res, true, nil
}

// recordSent writes m's accepted send into the ledger.
func (a *Activities) recordSent(ctx context.Context, m channel.Message, res channel.Result) {
	if a.Redis == nil || m.IdempotencyKey == "" {
		return
	}
	b, err := json.Marshal(res)
	if err == nil {
		err = a.Redis.Set(ctx, a.sentKey(m), b, sentTTL).Err()
	}
	if err != nil && a.Log != nil {
		a.Log.Warn("send not written to the ledger: a crash before Temporal records it would send it again",
			"idempotency_key", m.IdempotencyKey, "err", err)
	}
}
