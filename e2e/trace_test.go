package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
)

// TestTracePath follows one event from the ingest call to its conversion, with omega api, cep and
// worker running as processes that export their spans (OMEGA_TRACE_EXPORTER=stdout): the reach's
// tracking records come in order (received, matched, routed, filtered, dispatched, completed, then
// the provider's receipt as delivered and a later order as converted within the journey's
// attribution window), every one under the trace ID the caller sent in its traceparent header;
// the provider call carries that trace; and each process exported spans of that trace.
func TestTracePath(t *testing.T) {
	p := newPipeline(t)
	bin := omegaBinary(t)
	ctx := context.Background()
	dir := t.TempDir()

	// A journey with a goal: one send, converted by an order within an hour of it.
	j := journey.Journey{ID: p.id + "-trace", Templates: map[string]journey.Template{"t": {Body: "item {{.item_id}} waits"}},
		Steps: []journey.Step{
			{ID: "send", Send: &journey.Send{Channel: "webhook", Template: "t"}},
			{ID: "paid", Goal: &journey.Goal{Events: []string{"order_paid"}, Window: "1h"}},
		}}
	_, err := journey.NewStore(p.store.Pool(), worker.Catalog()).Apply(ctx, j)
	require.NoError(t, err)
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte("id: "+p.id+"-cart\nkind: single\nsteps:\n  - type: cart_add\njourney_id: "+j.ID+"\n"), 0o600))
	srv := httptest.NewServer(p.receiver)
	t.Cleanup(srv.Close)
	key := p.newKey(apikey.NewStore(p.store.Pool()), apikey.ScopeIngest)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	procs := map[string]*exec.Cmd{}
	for _, name := range []string{"api", "cep", "worker"} {
		c := exec.Command(bin, name)
		c.Env = p.stackEnv("OMEGA_API_ADDR="+addr, "OMEGA_KEY_PREFIX="+p.prefix, "OMEGA_EVENTS_TOPIC="+p.topic,
			"OMEGA_CEP_GROUP="+p.id+"-cep", "OMEGA_RULES="+rules, "OMEGA_WEBHOOK_URL="+srv.URL, "OMEGA_WEBHOOK_ALLOW=127.0.0.0/8",
			"OMEGA_TRACE_EXPORTER=stdout", "OMEGA_TRACE_FILE="+filepath.Join(dir, name+".jsonl"))
		c.Stdout, c.Stderr = testWriter{t}, testWriter{t}
		require.NoError(t, c.Start())
		procs[name] = c
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	waitAPI(t, addr)

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	user := p.id + "-u"
	ingest := func(events string, traceParent string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/omega.v1.EventService/Ingest", strings.NewReader(`{"events": [`+events+`]}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		if traceParent != "" {
			req.Header.Set("traceparent", traceParent)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	ts := func() string { return time.Now().UTC().Format(time.RFC3339Nano) }
	ingest(fmt.Sprintf(`{"event_id": %q, "user_id": %q, "type": "cart_add", "item_id": "sku-9", "ts": %q}`, user+"-add", user, ts()),
		"00-"+traceID+"-b7ad6b7169203331-01")

	var reach audit.Reach
	require.Eventually(t, func() bool {
		rs, _, err := p.store.ListByUser(ctx, user, 10, "")
		if err != nil || len(rs) != 1 || rs[0].Status == "running" {
			return false
		}
		reach = rs[0]
		return true
	}, 60*time.Second, 100*time.Millisecond, "the reach completes")
	require.Equal(t, "sent", reach.Status)

	// The provider's receipt and an order: tracked after the run ended.
	ingest(fmt.Sprintf(`{"event_id": %q, "user_id": %q, "type": %q, "ts": %q, "attrs": {"reach_id": %q}}`,
		user+"-dlv", user, event.TypeDelivered, ts(), reach.ID), "")
	time.Sleep(10 * time.Millisecond)
	ingest(fmt.Sprintf(`{"event_id": %q, "user_id": %q, "type": "order_paid", "ts": %q}`, user+"-order", user, ts()), "")
	// Both may land in one CEP batch, which writes the conversion before the receipt: wait for both.
	require.Eventually(t, func() bool {
		r, err := p.store.Get(ctx, reach.ID)
		if err != nil || r.Records[len(r.Records)-1].Kind != audit.KindConverted {
			return false
		}
		return slices.ContainsFunc(r.Records, func(rec audit.Record) bool { return rec.Kind == audit.KindDelivered })
	}, 30*time.Second, 100*time.Millisecond, "the order converts the reach, and the receipt is recorded")

	r, err := p.store.Get(ctx, reach.ID)
	require.NoError(t, err)
	var kinds []string
	for _, rec := range r.Records {
		kinds = append(kinds, rec.Kind)
		require.Equal(t, traceID, rec.TraceID, "record %s/%s", rec.Step, rec.Kind)
		require.Equal(t, 1, rec.JourneyVersion, "record %s/%s", rec.Step, rec.Kind)
	}
	require.Equal(t, []string{audit.KindReceived, audit.KindMatched, audit.KindRouted, audit.KindFiltered,
		audit.KindDispatched, audit.KindCompleted, audit.KindDelivered, audit.KindConverted}, kinds)
	require.Equal(t, user+"-add", r.Records[0].EventID)
	require.Equal(t, user+"-order", r.Records[len(r.Records)-1].EventID)

	ds := p.receiver.Deliveries()
	require.Len(t, ds, 1)
	require.Contains(t, ds[0].TraceParent, traceID, "the provider call carries the trace")

	// Spans are flushed when the processes stop.
	for _, c := range procs {
		require.NoError(t, c.Process.Signal(os.Interrupt))
		_ = c.Wait()
	}
	spans := map[string][]string{}
	for name := range procs {
		f, err := os.Open(filepath.Join(dir, name+".jsonl"))
		require.NoError(t, err, "%s wrote no spans", name)
		dec := json.NewDecoder(bufio.NewReader(f))
		for dec.More() {
			var s struct {
				Name        string
				SpanContext struct{ TraceID string }
			}
			require.NoError(t, dec.Decode(&s))
			if s.SpanContext.TraceID == traceID {
				spans[name] = append(spans[name], s.Name)
			}
		}
		f.Close()
	}
	require.Contains(t, spans["api"], "omega.Ingest")
	require.Contains(t, spans["cep"], "cep.match "+p.id+"-cart")
	require.Contains(t, spans["worker"], "RunWorkflow:ReachWorkflow")
	require.Contains(t, spans["worker"], "RunActivity:Dispatch")
}
