// Package baseline is the CEP engine Omega ran before the partition-owned state engine (issue 15),
// kept as the benchmark's baseline: the code of cep/engine.go, cep/join.go and the batch path of
// cep/stage.go (processBatch, dropSeen, markSeen) as of commit 5874283, trimmed to a batch handler.
// Per batch: decode and validate every record; an EXISTS per event for de-duplication; one Lua
// script per event and rule, pipelined; the join fan-out read; the re-entry scripts of the matches;
// then a 24-hour SET per event. Absence timers go to one sorted set, as they did (they are not
// fired here: the benchmark's absences are due after it ends). Matches are counted, not started.
package baseline

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/bench/cep/compiled"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// DedupeTTL is how long an event ID was remembered.
const DedupeTTL = 24 * time.Hour

// Engine is the previous engine's batch path.
type Engine struct {
	rdb    redis.UniversalClient
	prefix string
	rules  []compiled.Rule
	byID   map[string]*compiled.Rule

	matches, shadow, duplicates, dead atomic.Int64
}

// New keeps state under prefix.
func New(rdb redis.UniversalClient, prefix string, rules []cep.Rule) (*Engine, error) {
	cs, err := compiled.Compile(rules)
	if err != nil {
		return nil, err
	}
	e := &Engine{rdb: rdb, prefix: prefix, rules: cs, byID: map[string]*compiled.Rule{}}
	for i := range e.rules {
		e.byID[e.rules[i].ID] = &e.rules[i]
	}
	return e, nil
}

// Matches is how many live matches would have started a reach; Shadow those of shadow rules.
func (e *Engine) Matches() int64 { return e.matches.Load() }
func (e *Engine) Shadow() int64  { return e.shadow.Load() }

// Handle processes one partition's batch as the previous stage did (safe for concurrent
// partitions).
func (e *Engine) Handle(msgs []*sarama.ConsumerMessage) error {
	ctx := context.Background()
	good := make([]event.Event, 0, len(msgs))
	for _, m := range msgs {
		ev, err := event.Decode(m.Value)
		if err != nil {
			e.dead.Add(1) // the stage wrote these to the dead-letter topic
			continue
		}
		good = append(good, ev)
	}
	if len(good) == 0 {
		return nil
	}
	fresh, err := e.dropSeen(ctx, good)
	if err != nil {
		return fmt.Errorf("read dedupe marks: %w", err)
	}
	e.duplicates.Add(int64(len(good) - len(fresh)))
	matches, err := e.process(ctx, fresh, time.Now().UTC())
	if err != nil {
		return err
	}
	e.dispatch(matches)
	if err := e.markSeen(ctx, fresh); err != nil {
		return fmt.Errorf("write dedupe marks: %w", err)
	}
	return nil
}

// dispatch counts what the stage would have started (live) or recorded (shadow).
func (e *Engine) dispatch(ms []workflows.Match) {
	for _, m := range ms {
		if m.Shadow {
			e.shadow.Add(1)
		} else {
			e.matches.Add(1)
		}
	}
}

// The hash tag keeps a user's keys on one Redis Cluster slot.
func (e *Engine) seenKey(ev *event.Event) string {
	return e.prefix + ":{" + ev.Key() + "}:ev:" + ev.EventID
}

// dropSeen removes events whose ID was processed before, and repeats within the batch.
func (e *Engine) dropSeen(ctx context.Context, evs []event.Event) ([]event.Event, error) {
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(evs))
	for i := range evs {
		cmds[i] = pipe.Exists(ctx, e.seenKey(&evs[i]))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	inBatch := make(map[string]bool, len(evs))
	out := evs[:0:0]
	for i := range evs {
		k := e.seenKey(&evs[i])
		if cmds[i].Val() > 0 || inBatch[k] {
			continue
		}
		inBatch[k] = true
		out = append(out, evs[i])
	}
	return out, nil
}

func (e *Engine) markSeen(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	pipe := e.rdb.Pipeline()
	for i := range evs {
		pipe.Set(ctx, e.seenKey(&evs[i]), 1, DedupeTTL)
	}
	_, err := pipe.Exec(ctx)
	return err
}
