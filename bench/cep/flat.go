package main

import (
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/cep"
)

// flatPass is the new stage's Redis footprint after one stream over a fixed user set.
type flatPass struct {
	s      stream
	span   time.Duration
	memory int64 // used_memory grown by the pass
	// The partition state: instances, their encoded bytes, the store's bytes in Redis (with the
	// log), and the log's.
	instances, stateEncoded, stateBytes, logBytes int64
	shared                                        shared
	keys                                          int64
	matches, shadow                               int64
	elapsed                                       time.Duration
}

// flatRun answers "is Redis memory flat in the number of events for a fixed set of users?": the
// new stage consumes a stream of n events over users users spread over span of event time, then
// (from empty state) a stream twice as long (2n events over 2 x span, the same event rate and the
// same users). Both spans should exceed the life of every key the stage keeps, in event time (the
// rule set's: a 24h sequence window and the hour of lateness for instances, 30 days and a day's
// grace for join links), so both passes end in steady state: memory should track the users and
// the event rate, not the number of events.
func flatRun(brokers []string, rdb *redis.Client, rules []cep.Rule, log *slog.Logger, run string, users, items, n int,
	span time.Duration) [2]flatPass {
	var out [2]flatPass
	for i := range out {
		k := i + 1
		topic := run + ".flat" + string(rune('0'+k))
		createTopic(brokers, topic)
		g := newGenerator(users, items, uint64(10+k))
		events := n * k
		step := span / time.Duration(n)
		from := time.Now().Add(-time.Duration(events) * step)
		progress("memory-flat pass %d: %d events over %d users, %s of event time", k, events, users, time.Duration(events)*step)
		s := produce(brokers, topic, events, g, func(j int) time.Time { return from.Add(time.Duration(j) * step) })
		hw, total := highWater(brokers, topic)
		parts := make([]int32, 0, len(hw))
		for p := range hw {
			parts = append(parts, p)
		}
		prefix := run + "-flat" + string(rune('0'+k))
		before := snapRedis(rdb)
		began := time.Now()
		sr := startStage(brokers, rdb, rules, log, prefix, prefix, topic, parts, false)
		for sr.committed() < total {
			time.Sleep(5 * time.Millisecond)
		}
		el := time.Since(began)
		sr.stop()
		p := flatPass{s: s, span: time.Duration(events) * step, memory: snapRedis(rdb).since(before).memory, elapsed: el,
			matches: sr.starter.reaches(), shadow: sr.shadow.n.Load()}
		st := stateStats(rdb, prefix)
		p.instances, p.stateEncoded, p.stateBytes, p.logBytes = st.Instances, st.Encoded, st.Stored, st.Log
		p.shared = sharedStats(rdb, prefix)
		p.keys = countKeys(rdb, prefix)
		deleteKeys(rdb, prefix)
		deleteTopic(brokers, topic)
		out[i] = p
	}
	return out
}
