package e2e_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
)

// TestCrashPoints kills the CEP process at each step of a batch (matches computed; reaches
// started but state not durable; state durable but offset not marked) and while it retries the
// starts with Temporal unreachable, then starts a new one on the same group and state, and counts
// reaches: exactly one per expected match, none extra. The pattern is the one a lost match hurts
// most: a count (three views of an item), whose third view completes a window the state clears.
// `make test` runs two of the cases; `make test-faults` (OMEGA_FAULTS=full) every one.
func TestCrashPoints(t *testing.T) {
	cases := []struct {
		name, point  string
		temporalDown bool
		short        bool
	}{
		{name: "killed while Temporal is unreachable", temporalDown: true, short: true},
		{name: "killed with matches computed", point: cep.PointComputed},
		{name: "killed with reaches started, state not durable", point: cep.PointStarted, short: true},
		{name: "killed with state durable, offset not marked", point: cep.PointCommitted},
	}
	full := os.Getenv("OMEGA_FAULTS") == "full"
	for _, tc := range cases {
		if !full && !tc.short {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			fr := newFaultRun(t)
			fr.startWorker()
			rule := demoRule(t, "viewed-3x-no-chat")
			var crashEnv []string
			if tc.point != "" {
				crashEnv = append(crashEnv, "OMEGA_CEP_CRASH_AT="+tc.point)
			}
			fr.startProcWith("cep1", "cep", rule, crashEnv...)
			group := fr.p.id + "-cep"
			users := fr.users[:6]
			view := func(u string, n int) {
				fr.p.produceEvent(event.Event{EventID: fmt.Sprintf("%s-v%d", u, n), UserID: u, Type: "view", ItemID: "sku-9",
					TS: time.Now().UTC()})
			}
			for _, u := range users {
				view(u, 1)
				view(u, 2)
			}
			fr.p.waitCaughtUp(group) // two views each: durable, no match yet
			if tc.temporalDown {
				fr.temporal.SetDown(true)
			}
			for _, u := range users {
				view(u, 3)
			}
			if tc.temporalDown {
				time.Sleep(3 * time.Second) // the matches are computed and their starts retried
				fr.kill("cep1")
				fr.temporal.SetDown(false)
			} else {
				fr.waitExit("cep1", 30*time.Second)
			}
			if tc.temporalDown || tc.point == cep.PointComputed {
				require.Empty(t, fr.p.receiver.Deliveries(), "nothing reached a user before the kill")
			}
			fr.startProcWith("cep2", "cep", rule)

			deadline := time.Now().Add(90 * time.Second)
			for time.Now().Before(deadline) && len(fr.delivered()) < len(users) {
				time.Sleep(200 * time.Millisecond)
			}
			fr.p.waitCaughtUp(group)
			time.Sleep(2 * time.Second) // a second start would show by now
			delivered := fr.delivered()
			for _, u := range users {
				require.Len(t, delivered[u], 1, "deliveries to %s", u)
			}
			require.Len(t, delivered, len(users), "nobody else is reached")
			var reaches, rows int
			require.NoError(t, fr.p.store.Pool().QueryRow(context.Background(),
				`SELECT count(DISTINCT reach_id), count(*) FILTER (WHERE kind = $3) FROM audit_records WHERE user_id = ANY($1) AND kind IN ($2, $3)`,
				users, audit.KindMatched, audit.KindDispatched).Scan(&reaches, &rows))
			require.Equal(t, len(users), reaches, "reaches started")
			require.Equal(t, len(users), rows, "dispatched audit rows")
		})
	}
}

func demoRule(t *testing.T, id string) cep.Rule {
	t.Helper()
	for _, r := range cep.DemoRules() {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no demo rule %s", id)
	return cep.Rule{}
}
