package e2e_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// gateStarter holds one user's starts until released; the others pass through.
type gateStarter struct {
	cep.Starter
	user    string
	held    chan struct{} // closed when the user's start first arrives
	release chan struct{}
	once    sync.Once
}

func (g *gateStarter) Start(ctx context.Context, m workflows.Match) error {
	if m.UserID == g.user {
		g.once.Do(func() { close(g.held) })
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Starter.Start(ctx, m)
}

// TestSlowStartHoldsNoEvents: a reach whose start hangs (Temporal slow to answer) does not hold
// back the events behind it on its partition: the next user's reach is started and delivered
// meanwhile. Nothing of the partition is committed past the hanging match until its start is
// done, and once released both users are reached once.
func TestSlowStartHoldsNoEvents(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	slow := p.id + "-slow"
	fast := sharingPartition(t, slow, p.id+"-fast")
	gate := &gateStarter{Starter: p.starter(), user: slow, held: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	group := p.id + "-cep"
	p.startCEPConfig(group, p.prefix, []cep.Rule{demoRule(t, "cart-add")}, func(c *cep.Config) { c.Starter = gate })

	p.produceEvent(event.Event{EventID: slow + "-add", UserID: slow, Type: "cart_add", ItemID: "sku-1"})
	select {
	case <-gate.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow user's match never reached the starter")
	}
	p.produceEvent(event.Event{EventID: fast + "-add", UserID: fast, Type: "cart_add", ItemID: "sku-2"})
	require.Eventually(t, func() bool { return p.deliveriesByUser()[fast] == 1 }, 20*time.Second, 20*time.Millisecond,
		"the next user's reach waited for the hanging start")
	require.Zero(t, p.deliveriesByUser()[slow])
	// The slow user's cart_add is its partition's first record: no commit may cover it yet.
	time.Sleep(1500 * time.Millisecond) // past the commit interval and its longest put-off
	require.Zero(t, p.groupOffsets(group)[partitionOf(t, slow)], "the partition was committed past a match not yet started")

	close(gate.release)
	released = true
	p.waitDeliveries(2)
	p.waitCaughtUp(group)
	time.Sleep(500 * time.Millisecond) // a second delivery would show by now
	require.Equal(t, map[string]int{slow: 1, fast: 1}, p.deliveriesByUser())
}
