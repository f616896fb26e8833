package audit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The intervals against published values: Newcombe (1998), "Two-sided confidence intervals for
// the single proportion" (Wilson, 81/263: 0.2553 to 0.3662) and "Interval estimation for the
// difference between independent proportions", method 10 (56/70 - 48/80: 0.0524 to 0.3339;
// 9/10 - 3/10: 0.1705 to 0.8090).
func TestIntervalsAgainstPublishedValues(t *testing.T) {
	rate, low, high := wilson(81, 263)
	require.InDelta(t, 0.3080, rate, 5e-5)
	require.InDelta(t, 0.2553, low, 5e-5)
	require.InDelta(t, 0.3662, high, 5e-5)
	for _, c := range []struct {
		x1, n1, x2, n2 int64
		diff, low, hi  float64
	}{
		{56, 70, 48, 80, 0.2, 0.0524, 0.3339},
		{9, 10, 3, 10, 0.6, 0.1705, 0.8090},
	} {
		d, l, h := newcombe(c.x1, c.n1, c.x2, c.n2)
		require.InDelta(t, c.diff, d, 1e-9)
		require.InDelta(t, c.low, l, 5e-5)
		require.InDelta(t, c.hi, h, 5e-5)
	}
	// The pooled z-test: 90/500 against 40/400 is z = 3.39, p = 0.00069.
	require.InDelta(t, 0.000693, twoProportionP(90, 500, 40, 400), 5e-7)
	require.Equal(t, 1.0, twoProportionP(0, 0, 1, 2), "no data, no evidence")
	_, low, high = wilson(0, 0)
	require.Zero(t, low+high)
}
