package main

import (
	"context"
	"sync/atomic"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
)

// naive is the obvious CEP a team writes first: decode each event and, for every rule that cares
// about its type, make one synchronous Redis call that updates and reads that rule's state.
type naive struct {
	rdb     *redis.Client
	prefix  string
	byType  map[string][]cep.Rule
	matches atomic.Int64
}

// stepScript adds the event to the rule's window for the key and returns the window's size.
var stepScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZCARD', KEYS[1])`)

func newNaive(rdb *redis.Client, prefix string, rules []cep.Rule) *naive {
	n := &naive{rdb: rdb, prefix: prefix, byType: map[string][]cep.Rule{}}
	for _, r := range rules {
		for _, s := range r.Steps {
			n.byType[s.Type] = append(n.byType[s.Type], r)
		}
	}
	return n
}

func (n *naive) handle(msgs []*sarama.ConsumerMessage) {
	ctx := context.Background()
	for _, m := range msgs {
		e, err := event.Decode(m.Value)
		if err != nil {
			continue
		}
		for _, r := range n.byType[e.Type] {
			w := r.Within.D().Milliseconds()
			if w == 0 {
				w = 3600_000
			}
			c, err := stepScript.Run(ctx, n.rdb, []string{n.prefix + ":{" + e.Key() + "}:" + r.ID},
				e.TS.UnixMilli(), e.EventID, w).Int()
			if err == nil && c >= max(r.Count, 1) {
				n.matches.Add(1)
			}
		}
	}
}
