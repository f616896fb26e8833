package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/testenv"
)

// BenchmarkAppend writes single-send reaches (matched, routed, filtered, dispatched, completed),
// a reach per statement and 50 reaches per statement (the batcher under load), with the reach
// roll-up's trigger and without it: what keeping audit_reaches costs the writers.
//
//	deploy/local/test.sh go test -run '^$' -bench Append -benchtime 2000x ./audit/
func BenchmarkAppend(b *testing.B) {
	store := testenv.Require(b).FreshAudit(b)
	ctx := context.Background()
	at := time.Now().UTC()
	n := 0
	reach := func() []audit.Record {
		n++
		id := fmt.Sprintf("reach/bench/u%d/%d", n%5000, n)
		r := audit.Record{ReachID: id, UserID: fmt.Sprintf("u%d", n%5000), RuleID: "bench", JourneyID: "bench", JourneyVersion: 1}
		var out []audit.Record
		for i, s := range [][3]string{{"match", audit.KindMatched, ""}, {"route", audit.KindRouted, "v1"},
			{"push", audit.KindFiltered, "pass"}, {"push", audit.KindDispatched, "sent"}, {"end", audit.KindCompleted, "sent"}} {
			r.Step, r.Kind, r.Outcome, r.At = s[0], s[1], s[2], at.Add(time.Duration(n)*time.Millisecond+time.Duration(i))
			if r.Kind == audit.KindDispatched {
				r.IdempotencyKey = id + "/push"
			} else {
				r.IdempotencyKey = ""
			}
			out = append(out, r)
		}
		return out
	}
	for _, rollup := range []bool{true, false} {
		_, err := store.Pool().Exec(ctx, map[bool]string{true: "ALTER TABLE audit_records ENABLE TRIGGER audit_records_rollup",
			false: "ALTER TABLE audit_records DISABLE TRIGGER audit_records_rollup"}[rollup])
		require.NoError(b, err)
		for _, per := range []int{1, 50} {
			b.Run(fmt.Sprintf("rollup=%t/reaches=%d", rollup, per), func(b *testing.B) {
				for b.Loop() {
					var recs []audit.Record
					for range per {
						recs = append(recs, reach()...)
					}
					_, err := store.Append(ctx, recs...)
					require.NoError(b, err)
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*per), "µs/reach")
			})
		}
	}
}
