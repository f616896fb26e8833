package audit

import (
	"context"
	"sync"
	"time"
)

// Batcher writes the records of concurrent callers in shared statements (group commit): while
// one statement is in flight, the records that arrive queue up, and the next statement takes them
// all (up to MaxRows). Nothing waits for company: a lone caller's records go at once, and under
// load the statements grow instead of queueing one round trip per reach step.
type Batcher struct {
	store *Store
	// MaxRows bounds one statement.
	MaxRows int
	// Timeout bounds one statement; a caller whose context ends stops waiting (its records may
	// still be written: Append is idempotent, so the caller's retry is a no-op).
	Timeout time.Duration

	mu    sync.Mutex
	queue []*pending
	busy  bool
}

type pending struct {
	recs []Record
	done chan error
}

// NewBatcher returns a batcher over s with 1000 rows and 10 s per statement.
func NewBatcher(s *Store) *Batcher {
	return &Batcher{store: s, MaxRows: 1000, Timeout: 10 * time.Second}
}

// Append writes recs in the next shared statement and returns when it is durable.
func (b *Batcher) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	p := &pending{recs: recs, done: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if !b.busy {
		b.busy = true
		go b.drain()
	}
	b.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain writes the queue, statement by statement, until it is empty.
func (b *Batcher) drain() {
	for {
		b.mu.Lock()
		n, rows := 0, 0
		for n < len(b.queue) && (n == 0 || rows+len(b.queue[n].recs) <= b.MaxRows) {
			rows += len(b.queue[n].recs)
			n++
		}
		if n == 0 {
			b.busy = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()

		recs := make([]Record, 0, rows)
		for _, p := range batch {
			recs = append(recs, p.recs...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
		_, err := b.store.Append(ctx, recs...)
		if err != nil && len(batch) > 1 {
			// One caller's records must not fail everyone's: each goes again on its own.
			for _, p := range batch {
				_, e := b.store.Append(ctx, p.recs...)
				p.done <- e
			}
			cancel()
			continue
		}
		cancel()
		for _, p := range batch {
			p.done <- err
		}
	}
}
