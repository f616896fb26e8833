package journey_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/journey"
)

func TestBestHourOf(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	at := func(day, hour, minute int) time.Time { // UTC
		return time.Date(2026, 11, day, hour, minute, 0, 0, time.UTC)
	}
	// Opens at 18:xx UTC three times (19:xx in Berlin, winter time), at 07:xx UTC twice.
	opens := []time.Time{at(1, 18, 5), at(2, 18, 40), at(3, 7, 10), at(4, 18, 59), at(5, 7, 30)}
	h, n := journey.BestHourOf(opens, berlin)
	require.Equal(t, 19, h, "the hour in the user's time zone")
	require.Equal(t, 3, n)
	h, _ = journey.BestHourOf(opens, time.UTC)
	require.Equal(t, 18, h)

	h, n = journey.BestHourOf(opens[:2], berlin)
	require.Equal(t, -1, h, "too little history: the fallback")
	require.Zero(t, n)

	// A tie: the hour opened most recently wins, whatever the order of the opens.
	tie := []time.Time{at(1, 9, 0), at(2, 9, 0), at(3, 20, 0), at(4, 20, 0)}
	h, _ = journey.BestHourOf(tie, time.UTC)
	require.Equal(t, 20, h)
	h, _ = journey.BestHourOf([]time.Time{tie[3], tie[1], tie[2], tie[0]}, time.UTC)
	require.Equal(t, 20, h)
}

func TestWaitAtHour(t *testing.T) {
	w := &journey.Wait{Until: journey.BestHour, Fallback: "10:00"}
	require.Equal(t, "19:00", w.AtHour(19).Until)
	require.Equal(t, "07:00", w.AtHour(7).Until)
	require.Equal(t, "10:00", w.AtHour(-1).Until)
	require.Equal(t, journey.BestHour, w.Until, "AtHour copies")
	plain := &journey.Wait{Until: "09:30"}
	require.Same(t, plain, plain.AtHour(19))
	require.Equal(t, []string{"push_open"}, w.OpenTypes())

	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	d, what, err := w.Span(now, time.UTC) // unresolved: the fallback
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, d)
	require.Contains(t, what, "10:00")
}
