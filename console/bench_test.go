package console_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
)

// BenchmarkPages times each page's server side (the API calls and the drawing) over 100,000 audit
// rows of the last day, in a database of its own: one journey of two versions with a split, four
// rules (one shadow), 2,000 users. The pages must stay under 300 ms each.
//
//	deploy/local/test.sh go test -run '^$' -bench Pages -benchtime 20x ./console/
func BenchmarkPages(b *testing.B) {
	store := testenv.Require(b).FreshAudit(b)
	const jid = "bench-journey"
	rules := []string{"bench-r1", "bench-r2", "bench-r3", "bench-shadow"}
	now := time.Now().UTC()
	start := time.Now()
	rows := seed(b, store, jid, rules, 2000, 18300, now.Add(-time.Minute))
	require.GreaterOrEqual(b, rows, 100_000)
	_, err := store.Pool().Exec(b.Context(), "ANALYZE audit_records")
	require.NoError(b, err)
	b.Logf("loaded %d audit rows in %s", rows, time.Since(start).Round(time.Millisecond))
	j1, j2 := mustJourney(b, 1, fmt.Sprintf(splitJourney, jid)), mustJourney(b, 2, fmt.Sprintf(splitJourney, jid))
	var rs []cep.Rule
	for i, r := range rules {
		rs = append(rs, cep.Rule{ID: r, Version: 1, JourneyID: jid, Shadow: i == 3})
	}
	srv := consoleServer(b, store, []journey.Journey{j1, j2}, rs, func() time.Time { return now })
	c := signIn(b, srv, readKey)
	for _, p := range []struct{ name, path string }{
		{"journeys", "/console/journeys"},
		{"journey", "/console/journeys/" + jid},
		{"funnels", "/console/funnels?journey=" + jid},
		{"rules", "/console/rules"},
		{"user", "/console/users?user_id=" + jid + "-u7"},
	} {
		b.Run(p.name, func(b *testing.B) {
			var worst time.Duration
			for b.Loop() {
				t0 := time.Now()
				code, body, _ := get(b, c, srv, p.path)
				require.Equal(b, http.StatusOK, code, body)
				worst = max(worst, time.Since(t0))
			}
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
			b.ReportMetric(0, "ns/op") // ms/op below reads better than ns
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}
