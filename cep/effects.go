package cep

import (
	"context"
	"time"

	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// A batch's effects (step 3: its reaches started, its responses signalled, its conversions and
// receipts tracked) run beside the partition's next batches, so a start that takes a Temporal
// round trip (tens of milliseconds on a busy host) does not hold back the events behind it: they
// are computed and their own reaches started meanwhile. What a commit makes durable is the
// machine as of the last batch computed, so a commit waits until every batch computed has its
// effects done (and none failed): the state that produced a match is still never durable before
// the match's start. A due commit is put off while effects run (the partition goes on), at most
// Config.CommitDelay past its interval, then waits for them.
//
// Starts are independent (each reach has its own workflow ID), so a batch's start does not wait
// for the batches before it; responses and tracking keep the partition's order (a response
// signalled before the one that preceded it could take a journey down another branch).

// maxInflight bounds a partition's batches whose effects run at once; maxPutOffChanges how many
// changed instances a commit put off for effects still running, or behind the last commit still
// in flight (Config.CommitDelay), may hold: past that, the partition reads no more records until
// its effects and that commit land and it commits. Under a
// steady stream some batch's effects are always running, so without the bound every commit
// waited the full delay and carried a second of changes (megabytes a partition, in buffers as
// large); with it a put-off commit carries about this many (some 80 bytes each).
const (
	maxInflight      = 8
	maxPutOffChanges = 8192
)

// effects tracks a partition's batches whose effects run.
type effects struct {
	m        *machine           // the partition's: a batch's fan-out jobs are recorded in it as it lands
	done     chan effectsResult // one result per batch launched
	inflight int                // batches launched whose result is not read yet
	tail     chan struct{}      // closed when the last batch launched has signalled and tracked
}

// effectsResult is a batch's effects' outcome: the fan-out jobs of its shared part (to record in
// the machine before a commit covers the batch), or why they failed.
type effectsResult struct {
	jobs []fanJob
	err  error
}

func newEffects(m *machine) *effects {
	tail := make(chan struct{})
	close(tail)
	return &effects{m: m, done: make(chan effectsResult, maxInflight), tail: tail}
}

// launch runs a batch's effects in the background; its result comes on done (read it with
// landed). At most maxInflight run: launch first waits for one of them to end when that many do,
// and returns its failure.
func (e *effects) launch(ctx context.Context, s *Stage, out batchOut) error {
	if e.inflight >= maxInflight {
		if err := e.landed(<-e.done); err != nil {
			return err
		}
	}
	prev, tail := e.tail, make(chan struct{})
	e.tail = tail
	e.inflight++
	go func() { e.done <- s.runEffects(ctx, prev, tail, out) }()
	return nil
}

// landed counts one batch's result, read from done, records its fan-out jobs and returns its
// failure: the session ends or a start was refused for good. It runs on the partition's loop.
func (e *effects) landed(res effectsResult) error {
	e.inflight--
	if res.err == nil {
		e.m.addJobs(res.jobs)
	}
	return res.err
}

// wait reads every running batch's result and returns the first failure.
func (e *effects) wait() error {
	var first error
	for e.inflight > 0 {
		if err := e.landed(<-e.done); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runEffects starts a batch's reaches (its shared part's once Redis has answered it) and, once the
// batch before it has (prev closed), signals its responses and tracks its conversions and
// receipts, then closes tail.
func (s *Stage) runEffects(ctx context.Context, prev, tail chan struct{}, out batchOut) effectsResult {
	type startResult struct {
		n    int // matches started
		jobs []fanJob
		err  error
	}
	started := make(chan startResult, 1)
	go func() {
		began := time.Now()
		err := s.dispatch(ctx, out.matches)
		n := len(out.matches)
		var jobs []fanJob
		if err == nil && out.shared != nil {
			var ms []workflows.Match
			if ms, jobs, err = out.shared.wait(ctx); err == nil {
				crash(PointComputed, len(ms))
				err = s.dispatch(ctx, ms)
				n += len(ms)
			}
		}
		if err == nil {
			metrics.BatchSeconds.WithLabelValues("start").Observe(time.Since(began).Seconds())
		}
		started <- startResult{n, jobs, err}
	}()
	err := func() error {
		defer close(tail)
		select {
		case <-prev:
		case <-ctx.Done():
			return ctx.Err()
		}
		began := time.Now()
		if err := s.routeResponses(ctx, out.evs); err != nil {
			return err
		}
		metrics.BatchSeconds.WithLabelValues("respond").Observe(time.Since(began).Seconds())
		began = time.Now()
		if err := s.track(ctx, out.evs); err != nil {
			return err
		}
		metrics.BatchSeconds.WithLabelValues("track").Observe(time.Since(began).Seconds())
		return nil
	}()
	st := <-started
	if err == nil {
		err = st.err
	}
	if err == nil {
		crash(PointStarted, st.n)
	}
	return effectsResult{jobs: st.jobs, err: err}
}
