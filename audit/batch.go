package audit

import (
	"context"
	"sync"
	"sync/atomic"
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
	// Timeout bounds one statement. Keep it below the callers' own deadline (the workflow's local
	// activity timeout, 10 s), so a slow database fails a statement before its callers give up.
	Timeout time.Duration

	mu    sync.Mutex
	queue []*pending
	busy  bool
	// statements counts the statements written (tests read it).
	statements atomic.Int64
}

type pending struct {
	ctx  context.Context
	recs []Record
	done chan error
}

// NewBatcher returns a batcher over s with 1000 rows and 5 s per statement.
func NewBatcher(s *Store) *Batcher {
	return &Batcher{store: s, MaxRows: 1000, Timeout: 5 * time.Second}
}

// Append writes recs in the next shared statement and returns when it is durable. A caller whose
// context ends stops waiting; its records leave the queue if they were not taken yet (Append is
// idempotent: the caller's retry writes them once).
func (b *Batcher) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	p := &pending{ctx: ctx, recs: recs, done: make(chan error, 1)}
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

// Statements returns how many statements the batcher has written.
func (b *Batcher) Statements() int64 { return b.statements.Load() }

// drain writes the queue, statement by statement, until it is empty.
func (b *Batcher) drain() {
	for {
		b.mu.Lock()
		var batch []*pending
		rows := 0
		for len(b.queue) > 0 {
			p := b.queue[0]
			if p.ctx.Err() != nil { // its caller left
				b.queue = b.queue[1:]
				continue
			}
			if len(batch) > 0 && rows+len(p.recs) > b.MaxRows {
				break
			}
			batch = append(batch, p)
			rows += len(p.recs)
			b.queue = b.queue[1:]
		}
		if len(batch) == 0 {
			b.busy = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()

		recs := make([]Record, 0, rows)
		for _, p := range batch {
			recs = append(recs, p.recs...)
		}
		err := b.write(recs)
		if err != nil && len(batch) > 1 {
			// One caller's records must not fail everyone's: each goes again on its own.
			for _, p := range batch {
				p.done <- b.write(p.recs)
			}
			continue
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

func (b *Batcher) write(recs []Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	defer cancel()
	b.statements.Add(1)
	_, err := b.store.Append(ctx, recs...)
	return err
}
