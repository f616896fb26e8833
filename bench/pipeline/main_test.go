package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
)

// The stream's mix: one cart_add in reachEvery, every cart but one in unpaidEvery paid payAfter
// later (its order_paid taking a view's slot), the unpaid ones expected to start a retargeting
// reach at their absence deadline, and no payment left owed when the load ends.
func TestGeneratorMix(t *testing.T) {
	g := &generator{prefix: "t", reachEvery: 10, unpaidEvery: 4, payAfter: 50 * time.Millisecond, abandonIn: 10 * time.Second}
	b := &bench{c: config{reachEvery: 10, unpaidEvery: 4, payAfter: 50 * time.Millisecond, abandonIn: 10 * time.Second}}
	g.rng = b.newGenerator("t").rng
	counts := map[string]int{}
	carts := map[string]time.Time{}
	paid := map[string]time.Time{}
	due := drive(2000, 1, g, func(ev event.Event, at time.Time) {
		counts[ev.Type]++
		switch ev.Type {
		case "cart_add":
			carts[ev.UserID] = at
		case "order_paid":
			paid[ev.UserID] = at
		}
	})
	require.Equal(t, 200, counts["cart_add"])
	require.Equal(t, 150, counts["order_paid"], "3 carts in 4 are paid, the last ones after the load")
	total := counts["view"] + counts["cart_add"] + counts["order_paid"]
	require.True(t, total >= 2000 && total <= 2000+150, "the load's 2000 events, payments in views' slots, and those still owed after it: %d", total)
	var single, abandoned int
	for k, at := range due {
		rule, user, _ := strings.Cut(k, "/")
		switch rule {
		case ruleCartAdd:
			single++
			require.Equal(t, carts[user], at)
		case ruleAbandoned:
			abandoned++
			require.Equal(t, carts[user].Add(10*time.Second), at)
			require.NotContains(t, paid, user)
		}
	}
	require.Equal(t, 200, single)
	require.Equal(t, 50, abandoned)
	for u, at := range paid {
		require.GreaterOrEqual(t, at.Sub(carts[u]), 50*time.Millisecond, u)
	}
	require.Empty(t, g.paying)
}
