package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// TestRecordHistories records one history per journey shape on the real Temporal server into
// workflows/testdata, where workflows.TestReplay replays them against the current workflow code
// on every `make test`. Run it (make record-histories) when a new shape appears; never to make a
// failing replay pass: a replay failure means runs in flight would break, and the fix is
// workflow.GetVersion around the change.
func TestRecordHistories(t *testing.T) {
	if os.Getenv("OMEGA_RECORD_HISTORIES") == "" {
		t.Skip("records workflow histories: make record-histories")
	}
	p := newPipeline(t)
	retarget := retargetWithTimeout(t, time.Second)
	tmpl := map[string]journey.Template{"t": {Title: "Hello", Body: "Hello {{.user_id}}"}}
	shapes := []struct {
		name    string
		journey journey.Journey
		input   func(*workflows.ReachInput)
		// act runs once the first message went out (or after a few seconds when nothing is sent first).
		act         func(tc client.Client, reachID string)
		nothingSent bool
		end         string
	}{
		{name: "single-send", journey: demo(t, "cart-reminder"), end: workflows.StatusSent},
		{name: "retarget-opened", journey: retarget, end: workflows.StatusSent,
			act: func(tc client.Client, id string) {
				require.NoError(t, tc.SignalWorkflow(context.Background(), id, "", workflows.SignalResponse,
					workflows.Response{EventID: "open-1", Type: "push_open", At: time.Now().UTC()}))
			}},
		{name: "retarget-timeout", journey: retarget, end: workflows.StatusSent},
		{name: "goal-mid-wait", end: workflows.StatusConverted, journey: journey.Journey{ID: "goal", Templates: tmpl, Steps: []journey.Step{
			{ID: "first", Send: &journey.Send{Channel: "push", Template: "t"}},
			{ID: "pause", Wait: &journey.Wait{For: journey.Duration(time.Minute)}},
			{ID: "second", Send: &journey.Send{Channel: "sms", Template: "t"}},
			{ID: "paid", Goal: &journey.Goal{Events: []string{"order_paid"}}},
		}}, act: func(tc client.Client, id string) {
			require.NoError(t, tc.SignalWorkflow(context.Background(), id, "", workflows.SignalResponse,
				workflows.Response{EventID: "pay-1", Type: "order_paid", At: time.Now().UTC()}))
		}},
		{name: "cancel-mid-wait", end: workflows.StatusCancelled, journey: journey.Journey{ID: "cancel", Templates: tmpl, Steps: []journey.Step{
			{ID: "first", Send: &journey.Send{Channel: "push", Template: "t"}},
			{ID: "pause", Wait: &journey.Wait{For: journey.Duration(time.Minute)}},
			{ID: "second", Send: &journey.Send{Channel: "sms", Template: "t"}},
		}}, act: func(tc client.Client, id string) {
			require.NoError(t, tc.SignalWorkflow(context.Background(), id, "", workflows.SignalCancel,
				workflows.CancelSignal{Reason: "user unsubscribed"}))
		}},
		{name: "split-branch-exit", end: workflows.StatusSent, journey: journey.Journey{ID: "ab", Templates: tmpl, Steps: []journey.Step{
			{ID: "ab", Split: &journey.Split{Paths: []journey.Path{{Name: "a", Weight: 1, Next: "which"}, {Name: "b", Weight: 1, Next: "which"}}}},
			{ID: "which", Branch: &journey.Branch{Cases: []journey.Case{{When: `match.attrs.tier == "gold"`, Next: "vip"}}, Else: "done"}},
			{ID: "vip", Send: &journey.Send{Channel: "push", Template: "t"}, Next: "done"},
			{ID: "done", Exit: &journey.Exit{Reason: "all said"}},
		}}, input: func(in *workflows.ReachInput) { in.Match.Attrs = map[string]any{"tier": "gold"} }},
		{name: "continue-as-new", end: workflows.StatusSent, journey: journey.Journey{ID: "loop", Templates: tmpl, Steps: []journey.Step{
			{ID: "tick", Wait: &journey.Wait{For: journey.Duration(100 * time.Millisecond)}},
			{ID: "again", Branch: &journey.Branch{Cases: []journey.Case{{When: `size(responses) > 0`, Next: "send"}}, Else: "tick"}},
			{ID: "send", Send: &journey.Send{Channel: "push", Template: "t"}},
		}}, input: func(in *workflows.ReachInput) { in.MaxSteps = 4 }, nothingSent: true,
			act: func(tc client.Client, id string) {
				require.NoError(t, tc.SignalWorkflow(context.Background(), id, "", workflows.SignalResponse,
					workflows.Response{EventID: "chat-1", Type: "chat_started", At: time.Now().UTC()}))
			}},
	}
	var js []journey.Journey
	for _, s := range shapes {
		s.journey.ID = s.name
		js = append(js, s.journey)
	}
	static, err := journey.NewStatic(worker.Catalog(), js...)
	require.NoError(t, err)
	p.startWorkerWith(static)
	tc := p.env.Temporal(t)
	ctx := context.Background()

	for _, s := range shapes {
		m := workflows.Match{RuleID: "record", UserID: p.id + "-" + s.name, JourneyID: s.name, MatchKey: "k",
			EventIDs: []string{"e1"}, EventType: "cart_add", ItemID: "sku-1", MatchedAt: time.Now().UTC()}
		in := workflows.NewReachInput(m)
		if s.input != nil {
			s.input(&in)
		}
		run, err := tc.ExecuteWorkflow(ctx, workflows.StartOptions(m, p.queue), workflows.ReachWorkflow, in)
		require.NoError(t, err)
		firstRun := run.GetRunID() // Get follows continue-as-new; the history recorded is the first run's
		if s.act != nil && s.nothingSent {
			time.Sleep(4 * time.Second) // the dev server fires timers at about one per second
			s.act(tc, run.GetID())
		} else if s.act != nil {
			require.Eventually(t, func() bool {
				for _, d := range p.receiver.Deliveries() {
					if d.Message.ReachID == run.GetID() {
						return true
					}
				}
				return false
			}, 30*time.Second, 20*time.Millisecond, s.name)
			s.act(tc, run.GetID())
		}
		var res workflows.ReachResult
		require.NoError(t, run.Get(ctx, &res), s.name) // follows continue-as-new to the last run
		require.Equal(t, s.end, res.Status, s.name)

		hist := &historypb.History{}
		it := tc.GetWorkflowHistory(ctx, run.GetID(), firstRun, false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			hist.Events = append(hist.Events, ev)
		}
		b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
		require.NoError(t, err)
		// Lean runs (NewReachInput) are recorded beside the runs recorded before them, which
		// stay: both must replay.
		path := filepath.Join("..", "workflows", "testdata", s.name+"-lean.json")
		require.NoError(t, os.WriteFile(path, b, 0o644))
		t.Logf("recorded %s: %d events", path, len(hist.Events))
	}
}

func demo(t *testing.T, id string) journey.Journey {
	t.Helper()
	for _, j := range journey.Demo() {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("no demo journey %s", id)
	return journey.Journey{}
}
