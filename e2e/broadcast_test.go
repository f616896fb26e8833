package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/profile"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/workflows"
)

// TestBroadcast: an audience of the test's gold users (one profile in four; OMEGA_BROADCAST_EVERY) broadcast the
// cart-reminder journey on a real stack. The first run is killed (terminated) a quarter of the
// way; the same run started again reaches the rest, so every member is reached once and nobody
// else; a third start finds every reach started. OMEGA_BROADCAST_PROFILES (800 by default) and
// OMEGA_BROADCAST_RATE (200/s) scale it; it logs the time, the start rate and the test process's
// peak heap (the worker runs in it).
func TestBroadcast(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	ctx := context.Background()
	users, rate := 800, 200.0
	if v, err := strconv.Atoi(os.Getenv("OMEGA_BROADCAST_PROFILES")); err == nil && v > 0 {
		users = v
	}
	if v, err := strconv.ParseFloat(os.Getenv("OMEGA_BROADCAST_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	every := 4 // one profile in every is gold
	if v, err := strconv.Atoi(os.Getenv("OMEGA_BROADCAST_EVERY")); err == nil && v > 0 {
		every = v
	}
	pages := profile.NewStore(p.store.Pool())
	gold := map[string]bool{}
	batch := make([]profile.Profile, 0, 1000)
	for i := range users {
		tier := "silver"
		if i%every == 0 {
			tier = "gold"
		}
		u := fmt.Sprintf("%s-u%06d", p.id, i)
		batch = append(batch, profile.Profile{UserID: u, Attrs: map[string]any{"tier": tier}})
		if tier == "gold" {
			gold[u] = true
		}
		if len(batch) == cap(batch) || i == users-1 {
			require.NoError(t, pages.UpsertMany(ctx, batch))
			batch = batch[:0]
		}
	}

	var peak atomic.Uint64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	aud := audience.Audience{ID: "gold-" + p.id, When: fmt.Sprintf(`profile.user_id.startsWith(%q) && profile.attrs.tier == "gold"`, p.id)}
	in := workflows.BroadcastInput{Audience: aud, JourneyID: "cart-reminder", Run: "r1", Rate: rate}
	id := workflows.BroadcastID(aud.ID, in.Run)
	tc := p.env.Temporal(t)
	start := func() client.WorkflowRun {
		t.Helper()
		wr, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: p.queue}, workflows.BroadcastWorkflow, in)
		require.NoError(t, err)
		return wr
	}
	wait := func(wr client.WorkflowRun) workflows.BroadcastProgress {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		var st workflows.BroadcastProgress
		require.NoError(t, wr.Get(wctx, &st))
		return st
	}
	began := time.Now()
	start()
	var killed workflows.BroadcastProgress
	require.Eventually(t, func() bool {
		v, err := tc.QueryWorkflow(ctx, id, "", workflows.QueryBroadcast)
		if err != nil || v.Get(&killed) != nil {
			return false
		}
		return killed.Started >= int64(len(gold)/4)
	}, 5*time.Minute, 20*time.Millisecond, "a quarter of the members started")
	require.NoError(t, tc.TerminateWorkflow(ctx, id, "", "the test kills the broadcast a quarter of the way"))

	st := wait(start())
	took := time.Since(began)
	require.Equal(t, "done", st.State)
	require.EqualValues(t, len(gold), st.Matched)
	require.EqualValues(t, len(gold), st.Started+st.Already)
	require.GreaterOrEqual(t, st.Already, killed.Started, "what the killed run started is found started")
	require.GreaterOrEqual(t, st.Scanned, int64(users), "every profile read (the table holds other tests' too)")

	p.waitDeliveriesWithin(len(gold), 10*time.Minute)
	byUser := p.deliveriesByUser()
	for u, n := range byUser {
		require.True(t, gold[u], "%s is not in the audience", u)
		require.Equal(t, 1, n, "%s reached once", u)
	}
	require.Len(t, byUser, len(gold))
	t.Logf("broadcast over %d profiles (%d read): %d members; killed after %d starts, restarted: %d started, %d found started; "+
		"%s from the first start to the last start (%.0f starts/s at a limit of %.0f/s); peak heap of the test process (worker in it) %.1f MiB",
		users, st.Scanned, st.Matched, killed.Started, st.Started, st.Already, took.Round(time.Millisecond),
		float64(len(gold))/took.Seconds(), rate, float64(peak.Load())/(1<<20))

	again := wait(start())
	require.Equal(t, "done", again.State)
	require.EqualValues(t, len(gold), again.Already, "the same run again: every reach was started")
	require.Zero(t, again.Started)
	time.Sleep(time.Second)
	require.Len(t, p.receiver.Deliveries(), len(gold), "nobody reached twice")
}

// TestBroadcastThroughTheAPI: a dry run, a broadcast started, read and started again through
// AudienceService, and a schedule whose fire (triggered now) runs a broadcast of its own run.
func TestBroadcastThroughTheAPI(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	ctx := context.Background()
	pages := profile.NewStore(p.store.Pool())
	var ps []profile.Profile
	for i := range 40 {
		ps = append(ps, profile.Profile{UserID: fmt.Sprintf("%s-u%02d", p.id, i), Locale: map[bool]string{true: "de-DE", false: "en-GB"}[i%2 == 0]})
	}
	require.NoError(t, pages.UpsertMany(ctx, ps))
	tc := p.env.Temporal(t)
	keys := apikey.NewStore(p.store.Pool())
	h, err := api.NewHandler(api.Config{Producer: p.producer, Topic: p.topic, Temporal: tc, Audit: p.store, Keys: keys, Pages: pages,
		TaskQueue: p.queue, Journeys: func(id string) bool { return id == "cart-reminder" }, Log: testLogger(t)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	admin := omegav1connect.NewAudienceServiceClient(http.DefaultClient, srv.URL, bearer(p.newKey(keys, apikey.ScopeAdmin)))
	aud := &omegav1.Audience{Id: "de-" + p.id, When: fmt.Sprintf(`profile.user_id.startsWith(%q) && profile.locale.startsWith("de")`, p.id)}

	n, err := admin.CountAudience(ctx, connect.NewRequest(&omegav1.CountAudienceRequest{Audience: aud, Sample: 2}))
	require.NoError(t, err)
	require.EqualValues(t, 20, n.Msg.GetMembers())
	require.Equal(t, []string{p.id + "-u00", p.id + "-u02"}, n.Msg.GetSample())

	started, err := admin.StartBroadcast(ctx, connect.NewRequest(&omegav1.StartBroadcastRequest{Audience: aud, JourneyId: "cart-reminder", Run: "r1", Rate: 100}))
	require.NoError(t, err)
	require.True(t, started.Msg.GetCreated())
	require.Eventually(t, func() bool {
		b, err := admin.GetBroadcast(ctx, connect.NewRequest(&omegav1.GetBroadcastRequest{AudienceId: aud.GetId(), Run: "r1"}))
		return err == nil && b.Msg.GetBroadcast().GetState() == "done" && b.Msg.GetBroadcast().GetStarted() == 20
	}, time.Minute, 100*time.Millisecond)
	p.waitDeliveries(20)

	_, err = admin.StartBroadcast(ctx, connect.NewRequest(&omegav1.StartBroadcastRequest{Audience: &omegav1.Audience{Id: "x"}, JourneyId: "nope"}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	require.ErrorContains(t, err, "journey_id")

	sched, err := admin.ScheduleBroadcast(ctx, connect.NewRequest(&omegav1.ScheduleBroadcastRequest{Audience: aud, JourneyId: "cart-reminder",
		Cron: "0 9 * * MON", Rate: 100}))
	require.NoError(t, err)
	require.NotEmpty(t, sched.Msg.GetNext())
	require.Equal(t, time.Monday, sched.Msg.GetNext()[0].AsTime().Weekday())
	t.Cleanup(func() {
		_, _ = admin.DeleteBroadcastSchedule(ctx, connect.NewRequest(&omegav1.DeleteBroadcastScheduleRequest{AudienceId: aud.GetId()}))
	})
	_, err = admin.ScheduleBroadcast(ctx, connect.NewRequest(&omegav1.ScheduleBroadcastRequest{Audience: aud, JourneyId: "cart-reminder", Cron: "not a cron"}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "cron")

	// Fire it now: a broadcast of its own run, which finds every member reached by r1 and starts
	// their reaches again under its run (a new broadcast is a new reach for everyone).
	require.NoError(t, tc.ScheduleClient().GetHandle(ctx, workflows.BroadcastScheduleID(aud.GetId())).Trigger(ctx, client.ScheduleTriggerOptions{}))
	p.waitDeliveriesWithin(40, time.Minute)
	for u, n := range p.deliveriesByUser() {
		require.Equal(t, 2, n, "%s: once by r1, once by the scheduled run", u)
	}
}
