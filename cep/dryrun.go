package cep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// DryRun plays events (in order, as one partition would) through rules and returns what would
// match, absence timers included (fired as if every window had passed). It keeps its state under a
// scratch prefix in Redis and deletes it at the end: it touches no real state and starts nothing.
func DryRun(ctx context.Context, rdb redis.UniversalClient, rules []Rule, evs []event.Event) ([]workflows.Match, error) {
	compiled := make([]compiledRule, 0, len(rules))
	for _, r := range rules {
		c, err := compile(r)
		if err != nil {
			return nil, err
		}
		compiled = append(compiled, c)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "omega-dryrun-" + hex.EncodeToString(b)
	eng := newEngine(rdb, prefix)
	defer deletePrefix(context.WithoutCancel(ctx), rdb, prefix)

	var out []workflows.Match
	var last time.Time
	for start := 0; start < len(evs); start += 500 {
		batch := evs[start:min(start+500, len(evs))]
		for _, e := range batch {
			if e.TS.After(last) {
				last = e.TS
			}
		}
		ms, err := eng.process(ctx, compiled, batch, batch[len(batch)-1].TS)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	far := last.Add(maxWindow + time.Hour)
	for {
		n, err := eng.fireDue(ctx, compiled, far, 500, func(_ context.Context, ms []workflows.Match) error {
			out = append(out, ms...)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n < 500 {
			break
		}
	}
	return out, nil
}

func deletePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+":*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 500 {
			rdb.Del(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
}
