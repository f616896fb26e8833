package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// TestEagerStart runs `omega cep` with OMEGA_CEP_EAGER_START and no other worker: every reach is
// started eagerly (its first workflow task in the start's answer, counted by the process) and run
// to delivery by the worker inside the CEP process, each user reached once.
func TestEagerStart(t *testing.T) {
	fr := newFaultRun(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	metricsAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	rule := demoRule(t, "viewed-3x-no-chat")
	_, err = journey.NewStore(fr.p.store.Pool(), worker.Catalog()).Apply(context.Background(), demoJourney(t, rule.JourneyID))
	require.NoError(t, err)
	fr.startProcWith("cep1", "cep", rule, "OMEGA_CEP_EAGER_START=true", "OMEGA_METRICS_ADDR="+metricsAddr)
	users := fr.users[:4]
	for _, u := range users {
		for n := 1; n <= 3; n++ {
			fr.p.produceEvent(event.Event{EventID: fmt.Sprintf("%s-v%d", u, n), UserID: u, Type: "view", ItemID: "sku-7",
				TS: time.Now().UTC()})
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && len(fr.delivered()) < len(users) {
		time.Sleep(100 * time.Millisecond)
	}
	delivered := fr.delivered()
	if len(delivered) < len(users) {
		rows, err := fr.pool.Query(context.Background(), `SELECT reach_id, step, kind, outcome, coalesce(reason, '') FROM audit_records WHERE user_id = $1`, users[0])
		require.NoError(t, err)
		for rows.Next() {
			var a, b, c, d, e string
			require.NoError(t, rows.Scan(&a, &b, &c, &d, &e))
			t.Logf("audit: %s %s %s %s %s", a, b, c, d, e)
		}
	}
	for _, u := range users {
		require.Len(t, delivered[u], 1, "deliveries to %s", u)
	}
	require.GreaterOrEqual(t, processMetric(t, metricsAddr, "omega_workflow_eager_starts_total"), float64(len(users)),
		"every start was eager")

	// The reach's first workflow task (the send) was completed by the CEP process's worker. The
	// message reaches the provider inside that task, before the worker reports it completed: the
	// completion may reach the history a moment after the delivery.
	id := workflows.ReachID(rule.ID, users[0], users[0]+"-v3")
	identity := ""
	for deadline := time.Now().Add(10 * time.Second); identity == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		it := fr.tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() && identity == "" {
			e, err := it.Next()
			require.NoError(t, err)
			if a := e.GetWorkflowTaskCompletedEventAttributes(); a != nil {
				identity = a.GetIdentity()
			}
		}
	}
	require.True(t, strings.HasSuffix(identity, "/cep"), "completed by the CEP process's worker, not %q", identity)
}

// processMetric reads one unlabelled series from a process's /metrics.
func processMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	var resp *http.Response
	var err error
	for range 50 {
		if resp, err = http.Get("http://" + addr + "/metrics"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	require.NoError(t, sc.Err())
	t.Fatalf("%s not in %s/metrics", name, addr)
	return 0
}
