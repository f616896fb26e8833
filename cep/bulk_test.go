package cep

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/workflows"
)

// A match is bulk when its completing record, or its absence's end, is older than BulkAfter; a
// timer's own due time decides, not the record of its A that may be in the batch.
func TestMarkBulk(t *testing.T) {
	now := time.Now()
	ms := []workflows.Match{
		{UserID: "fresh", ReceivedAt: now.Add(-time.Second)},
		{UserID: "late", ReceivedAt: now.Add(-2 * time.Minute)},
		{UserID: "timer due now, its A read late", Due: now.Add(-time.Second), ReceivedAt: now.Add(-time.Hour)},
		{UserID: "overdue timer", Due: now.Add(-time.Hour)},
		{UserID: "no time"},
		{UserID: "fan-out", Bulk: true, ReceivedAt: now},
	}
	bulk := func(after time.Duration) map[string]bool {
		s := &Stage{cfg: Config{BulkAfter: after}}
		in := append([]workflows.Match(nil), ms...)
		s.markBulk(in, now)
		out := map[string]bool{}
		for _, m := range in {
			out[m.UserID] = m.Bulk
		}
		return out
	}
	require.Equal(t, map[string]bool{"fresh": false, "late": true, "timer due now, its A read late": false, "overdue timer": true,
		"no time": false, "fan-out": true}, bulk(time.Minute))
	require.Equal(t, map[string]bool{"fresh": false, "late": false, "timer due now, its A read late": false, "overdue timer": false,
		"no time": false, "fan-out": true}, bulk(-1), "never by lateness")
}

func TestAbsenceMatchIsDue(t *testing.T) { onRedises(t, testAbsenceMatchIsDue) }

// An absence's match says when it fell due (its window's end), whether the partition or the
// group's watermark fires it.
func testAbsenceMatchIsDue(t *testing.T, rdb redis.UniversalClient) {
	for _, shared := range []bool{false, true} {
		rule := Rule{ID: "abandon", Kind: KindAbsence, Steps: []Step{{Type: "cart_add"}}, Absent: &Step{Type: "order_paid"},
			Within: Duration(time.Minute), JourneyID: "j"}
		if shared {
			rule.Key = "item"
		}
		h := newHarnessOn(t, rdb, rule)
		add := ev{id: "a", user: "u", typ: "cart_add", item: "i", at: 10 * time.Second}
		h.feed(add)
		var ms []workflows.Match
		if shared {
			_, err := h.eng.fireDue(context.Background(), h.rules, t0.Add(5*time.Minute), time.Now(), 10,
				func(_ context.Context, got []workflows.Match) error { ms = append(ms, got...); return nil })
			require.NoError(t, err)
		} else {
			ms = h.fireUncommitted(5 * time.Minute)
		}
		require.Len(t, ms, 1, "shared %v", shared)
		require.Equal(t, add.event().TS.Add(time.Minute), ms[0].Due.UTC(), "shared %v", shared)
	}
}

// Slices start at firstFireSlice. A slice of timers that takes longer than the bound halves the next, down to minFireSlice; one
// that takes less than half of it doubles the next, up to fireSlice.
func TestFireSliceAdapts(t *testing.T) {
	p := &partition{}
	bound := 500 * time.Millisecond
	require.Equal(t, firstFireSlice, p.fireLimit(), "slices start small")
	var sizes []int
	for range 4 {
		p.adapt(100*time.Millisecond, bound)
		sizes = append(sizes, p.fireLimit())
	}
	require.Equal(t, []int{16, 32, 64, 64}, sizes, "quick slices grow to fireSlice")
	sizes = nil
	for range 5 {
		p.adapt(9*time.Second, bound)
		sizes = append(sizes, p.fireLimit())
	}
	require.Equal(t, []int{32, 16, 8, 4, 4}, sizes, "a saturated Temporal: smaller slices")
	p.adapt(400*time.Millisecond, bound)
	require.Equal(t, 4, p.fireLimit(), "within the bound: kept")
	sizes = nil
	for range 5 {
		p.adapt(100*time.Millisecond, bound)
		sizes = append(sizes, p.fireLimit())
	}
	require.Equal(t, []int{8, 16, 32, 64, 64}, sizes, "fast again: back to fireSlice")
}
