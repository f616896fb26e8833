package e2e_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/omegareach/omega/activities/plugin"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// recordingStarter records when each match's reach was started (with no Starter inside, it only
// records).
type recordingStarter struct {
	cep.Starter
	mu sync.Mutex
	at map[string]time.Time // user -> first start
}

func (r *recordingStarter) Start(ctx context.Context, m workflows.Match) error {
	if r.Starter != nil {
		if err := r.Starter.Start(ctx, m); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.at[m.UserID]; !ok {
		r.at[m.UserID] = time.Now()
	}
	return nil
}

// users is how many users' reaches were started.
func (r *recordingStarter) users() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.at)
}

// TestFanOut: a price drop of an item N users favourited (OMEGA_FANOUT_USERS, 100 by default;
// docs/benchmarks.md quotes a 10,000-user run) reaches every one of them once, in slices that do
// not hold the item's partition: an event produced on that partition right after the drop is
// matched while the fan-out is still starting reaches. OMEGA_FANOUT_RATE sets the webhook's rate
// limit (sends/s, off by default), OMEGA_FANOUT_SLICE the fan-out slice (1ms). Logs the start rate
// and the times to the last start and the last delivery.
func TestFanOut(t *testing.T) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("OMEGA_FANOUT_USERS")); err == nil && v > 0 {
		n = v
	}
	rate, _ := strconv.ParseFloat(os.Getenv("OMEGA_FANOUT_RATE"), 64)
	// Slices of one page (100 users) by default, so the neighbour's batch comes between two of
	// them; OMEGA_FANOUT_SLICE=500ms measures as omega cep runs (cep.Config.FanOutSlice's default).
	slice := time.Millisecond
	if v, err := time.ParseDuration(os.Getenv("OMEGA_FANOUT_SLICE")); err == nil {
		slice = v
	}
	p := newPipeline(t)
	p.startWorkerConfig(func(c *worker.Config) {
		c.Settings = c.Settings.With(plugin.Values{"OMEGA_DAILY_CAP": "100"})
		if rate > 0 {
			c.RateLimits = map[string]float64{"webhook": rate}
		}
	})
	item := p.id + "-item"
	favAt := time.Now().UTC().Add(-time.Hour)
	for i := range n {
		u := fmt.Sprintf("%s-fan%05d", p.id, i)
		p.produceEvent(event.Event{EventID: u + "-fav", UserID: u, Type: "favorite", ItemID: item, TS: favAt})
	}
	// A user whose events share the item's partition.
	neighbour := sharingPartition(t, item, p.id+"-neighbour")
	rules := []cep.Rule{demoRule(t, "price-drop-favorited"), demoRule(t, "cart-add")}
	rec := &recordingStarter{Starter: p.starter(), at: map[string]time.Time{}}
	group := p.id + "-cep"
	p.startCEPConfig(group, p.prefix, rules, func(c *cep.Config) { c.Starter = rec; c.FanOutSlice = slice })
	p.waitCaughtUp(group)

	dropAt := time.Now()
	p.produceEvent(event.Event{EventID: "drop", Type: "price_drop", ItemID: item, Attrs: map[string]any{"new_price": "1"}})
	p.produceEvent(event.Event{EventID: neighbour + "-add", UserID: neighbour, Type: "cart_add", ItemID: "sku-n"})
	deadline := time.Now().Add(time.Duration(n/5+60) * time.Second)
	for time.Now().Before(deadline) && len(p.receiver.Deliveries()) < n+1 {
		time.Sleep(100 * time.Millisecond)
	}
	lastDelivery := time.Now()
	p.waitCaughtUp(group)
	time.Sleep(time.Second) // a second delivery would show by now
	got := p.deliveriesByUser()
	require.Len(t, got, n+1, "every fan and the neighbour")
	for u, k := range got {
		require.Equal(t, 1, k, "deliveries to %s", u)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var first, last time.Time
	for u, at := range rec.at {
		if u == neighbour {
			continue
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	require.True(t, rec.at[neighbour].Before(last), "the neighbour's event was matched while the fan-out went on")
	t.Logf("fan-out of %d users (webhook rate limit %v/s): first start %s after the drop, last start %s, last delivery %s; %.0f starts/s; neighbour started %s after the drop",
		n, rate, first.Sub(dropAt).Round(time.Millisecond), last.Sub(dropAt).Round(time.Millisecond),
		lastDelivery.Sub(dropAt).Round(time.Millisecond), float64(n)/last.Sub(first).Seconds(), rec.at[neighbour].Sub(dropAt).Round(time.Millisecond))
}

// partitionOf is the partition of the test topic (4 partitions) a key's records go to: the
// producers' hash partitioner.
func partitionOf(t *testing.T, key string) int32 {
	t.Helper()
	pt, err := sarama.NewHashPartitioner("").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, 4)
	require.NoError(t, err)
	return pt
}

// sharingPartition is the first of prefix0, prefix1, ... whose records share key's partition.
func sharingPartition(t *testing.T, key, prefix string) string {
	t.Helper()
	for i := 0; ; i++ {
		if u := fmt.Sprintf("%s%d", prefix, i); partitionOf(t, u) == partitionOf(t, key) {
			return u
		}
	}
}
