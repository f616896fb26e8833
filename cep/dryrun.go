package cep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// DryRun plays events (in order, as one partition's machine would, in memory) through rules and returns what would
// match, absence timers included (fired as if every window had passed). It keeps shared state (joins) under a
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
	// Shared join keys expire by event time: sample events older than a day still join (the
	// scratch state is deleted below).
	for _, e := range evs {
		eng.grace = max(eng.grace, time.Since(e.TS)+DefaultSharedGrace)
	}
	defer deletePrefix(context.WithoutCancel(ctx), rdb, prefix)

	// One partition's machine, in memory only; shared state (joins) under the scratch prefix.
	p := &partition{m: newMachine(0), next: -1}
	var out []workflows.Match
	for start := 0; start < len(evs); start += 500 {
		batch := evs[start:min(start+500, len(evs))]
		now := batch[len(batch)-1].TS
		ms, err := p.process(ctx, eng, compiled, batch, nil, nil, now)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
		if err := p.fanOut(ctx, eng, compiled, time.Now().Add(time.Hour), now, func(_ context.Context, ms []workflows.Match) error {
			out = append(out, ms...)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	// Every window passes: the absences still waiting fire, on the machine and in shared state.
	far := p.m.wm + msd(maxWindow+time.Hour)
	for _, e := range evs {
		far = max(far, ms(e.TS)+msd(maxWindow+time.Hour))
	}
	p.m.advance(far)
	fired, err := p.complete(ctx, eng, compiled, p.m.fire(rulesByID(compiled), time.UnixMilli(far).UTC(), -1), nil, time.UnixMilli(far).UTC(), nil)
	if err != nil {
		return nil, err
	}
	out = append(out, fired...)
	for {
		n, err := eng.fireDue(ctx, compiled, time.UnixMilli(far).UTC(), time.UnixMilli(far).UTC(), 500, func(_ context.Context, ms []workflows.Match) error {
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
	// What would start: a match the rule's re-entry policy suppresses starts nothing.
	return slices.DeleteFunc(out, func(m workflows.Match) bool { return m.Suppressed != "" }), nil
}

// deletePrefix deletes a dry run's scratch keys, node by node on a cluster (SCAN covers one node),
// one key per DEL (the keys live on many slots).
func deletePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	del := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, prefix+":*", 500).Iterator()
		pipe := rdb.Pipeline()
		for iter.Next(ctx) {
			pipe.Del(ctx, iter.Val())
			if pipe.Len() == 500 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		_ = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return del(ctx, node) })
		return
	}
	_ = del(ctx, rdb)
}
