package cep

import (
	"context"
	"time"

	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// A batch's shared part (joins, rules not keyed on the user: sharedOf) is decided in Redis, and
// the partition's own matches never depend on it. So a claimed partition hands it to its shared
// sender and completes it with the batch's effects (effects.go): the partition computes and
// starts its next batches while Redis answers. A Redis slowed down (an AOF rewrite's fork: round
// trips of 60-200 ms for a second or more on a small host) then delays the shared matches by its
// round trips, not every event of the partition behind them; before, each batch waited for its
// shared part, and a partition fell seconds behind its stream. A commit still waits for every
// batch's effects (effects.go), so the shared writes of the batches it covers are in Redis, and
// their matches started, before it: a crash replays them to the same matches, as before.
//
// The sender keeps the partition's order: a batch's shared part is sent once the previous one's
// has been answered (an unfavourite after the favourite before it, a trigger after the links
// before it), and the parts that queued meanwhile go together in one pipeline: a slow Redis gets
// fewer, larger round trips rather than a queue of them.

// maxSharedGroup is the most shared items one pipeline carries when parts queued.
const maxSharedGroup = 4096

// sharedCall is one batch's shared part, sent by its partition's sender.
type sharedCall struct {
	items []sharedItem
	rules []compiledRule
	now   time.Time
	fresh []decoded // the batch's records, for the matches' Kafka times and traces (annotate)
	wm    int64     // the partition's watermark as the part was sent (markStale)
	done  chan struct{}
	// Set when done is closed: a group's matches (admitted) and fan-out jobs go to its last
	// call, so that they are started, and the jobs recorded, with the batch every earlier one
	// of the group precedes.
	ms   []workflows.Match
	jobs []fanJob
	err  error
}

// wait waits for c's answer (nil c: none).
func (c *sharedCall) wait(ctx context.Context) ([]workflows.Match, []fanJob, error) {
	if c == nil {
		return nil, nil, nil
	}
	select {
	case <-c.done:
		return c.ms, c.jobs, c.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// sharedSender sends a partition's shared parts in order, those that queued together.
type sharedSender struct {
	s *Stage
	q chan *sharedCall
}

// newSharedSender starts a partition's sender; it ends with ctx (the claim's), failing what it
// has not answered.
func (s *Stage) newSharedSender(ctx context.Context) *sharedSender {
	// Room for every batch whose effects may be waiting (maxInflight) and the next ones: the
	// partition does not wait to hand a part over.
	ss := &sharedSender{s: s, q: make(chan *sharedCall, 2*maxInflight)}
	go ss.run(ctx)
	return ss
}

// send queues a batch's shared part (nil: none) and returns the call its effects wait on.
func (ss *sharedSender) send(ctx context.Context, c *sharedCall) *sharedCall {
	if c == nil {
		return nil
	}
	c.done = make(chan struct{})
	select {
	case ss.q <- c:
	case <-ctx.Done():
		c.err = ctx.Err()
		close(c.done)
	}
	return c
}

func (ss *sharedSender) run(ctx context.Context) {
	var group []*sharedCall
	for {
		group = group[:0]
		select {
		case c := <-ss.q:
			group = append(group, c)
		case <-ctx.Done():
			for {
				select {
				case c := <-ss.q:
					c.err = ctx.Err()
					close(c.done)
				default:
					return
				}
			}
		}
		n := len(group[0].items)
	more:
		for n < maxSharedGroup {
			select {
			case c := <-ss.q:
				group = append(group, c)
				n += len(c.items)
			default:
				break more
			}
		}
		ms, jobs, err := ss.answer(ctx, group)
		last := group[len(group)-1]
		last.ms, last.jobs = ms, jobs
		for _, c := range group {
			c.err = err
			close(c.done)
		}
	}
}

// answer sends a group's shared parts in one pipeline, retried until Redis takes it or ctx ends,
// and admits its matches.
func (ss *sharedSender) answer(ctx context.Context, group []*sharedCall) ([]workflows.Match, []fanJob, error) {
	began := time.Now()
	last := group[len(group)-1]
	items := last.items
	if len(group) > 1 {
		items = make([]sharedItem, 0, maxSharedGroup)
		for _, c := range group {
			items = append(items, c.items...)
		}
	}
	var ms []workflows.Match
	var jobs []fanJob
	s := ss.s
	if err := retry(ctx, s.cfg.Log, "advance shared pattern state", func() (err error) {
		ms, jobs, err = s.engine.processShared(ctx, items, last.now)
		return err
	}); err != nil {
		return nil, nil, err
	}
	if len(ms) > 0 {
		for _, c := range group {
			annotate(c.fresh, ms)
		}
		s.markStale(ms, last.wm)
		var passed []workflows.Match
		if err := retry(ctx, s.cfg.Log, "apply re-entry to shared matches", func() (err error) {
			passed, err = admitShared(ctx, s.engine, last.rules, ms)
			return err
		}); err != nil {
			return nil, nil, err
		}
		ms = dedupeMatches(passed)
	}
	metrics.BatchSeconds.WithLabelValues("shared").Observe(time.Since(began).Seconds())
	return ms, jobs, nil
}
