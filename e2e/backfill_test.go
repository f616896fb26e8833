package e2e_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/backfill"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/apikey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// weekScript is a topic's scripted history: events over nine days, with the rule's matches it
// predicts per event-time day.
type weekScript struct {
	now      time.Time
	events   []event.Event
	inRange  int64            // records at or after since (now - 168h)
	perDay   map[string]int64 // matches per UTC day, since on
	matchIDs []string         // reach IDs of every match since on, in event time order
	all      int              // matches in the whole topic, since or not
	at       map[string]time.Time
}

// newWeekScript scripts events every 3 hours 7 minutes from nine days ago, and one half an hour
// ago: cart_add at 20 (a match), cart_add at 5 (not), a view at 20 (not), and every seventh match
// produced twice (the same event_id: one match). No event falls within an hour of a boundary the test asks about
// (since, and the start cutoff now - startWithin), so the call's own clock cannot move one across.
func newWeekScript(ruleID string, now time.Time, startWithin time.Duration) *weekScript {
	s := &weekScript{now: now, perDay: map[string]int64{}, at: map[string]time.Time{}}
	since, cutoff := now.Add(-168*time.Hour), now.Add(-startWithin)
	near := func(ts, b time.Time) bool { return ts.Sub(b).Abs() < time.Hour }
	var times []time.Time
	for ts := now.Add(-9 * 24 * time.Hour); ts.Before(now.Add(-time.Hour)); ts = ts.Add(3*time.Hour + 7*time.Minute) {
		if !near(ts, since) && !near(ts, cutoff) && !near(ts, now.Add(-absenceWindow)) {
			times = append(times, ts)
		}
	}
	// The last, a match whose absence window is still open at the end.
	times = append(times, now.Add(-30*time.Minute))
	for i, ts := range times {
		last := i == len(times)-1
		ev := event.Event{EventID: fmt.Sprintf("bf-%d", i), UserID: fmt.Sprintf("u%d", i%11), Type: "cart_add",
			ItemID: "sku-1", TS: ts, Attrs: map[string]any{"price": 20.0}}
		match := true
		switch {
		case last:
		case i%4 == 2:
			ev.Attrs["price"], match = 5.0, false
		case i%4 == 3:
			ev.Type, match = "view", false
		}
		copies := 1
		if match && i%7 == 0 {
			copies = 2
		}
		for range copies {
			s.events = append(s.events, ev)
			if !ts.Before(since) {
				s.inRange++
			}
		}
		if match {
			s.all++
		}
		if match && !ts.Before(since) {
			s.perDay[ts.UTC().Format(time.DateOnly)]++
			id := workflows.ReachID(ruleID, ev.UserID, ev.EventID)
			s.matchIDs = append(s.matchIDs, id)
			s.at[id] = ts
		}
	}
	return s
}

func (s *weekScript) total() (n int64) {
	for _, c := range s.perDay {
		n += c
	}
	return n
}

// absenceWindow is the window of the test's absence rule (cart_add, then no order_paid).
const absenceWindow = 2 * time.Hour

// decided returns the script's matches per day as an absence rule keyed the same sees them: the
// cart_adds whose window (absenceWindow) had closed by now (none is followed by an order_paid, and a
// user's cart_adds are 34 hours apart: none restarts another's wait).
func (s *weekScript) decided() map[string]int64 {
	out := map[string]int64{}
	for _, id := range s.matchIDs {
		if ts := s.at[id]; !ts.After(s.now.Add(-absenceWindow)) {
			out[ts.UTC().Format(time.DateOnly)]++
		}
	}
	return out
}

// recent returns the reach IDs of the matches at or after t.
func (s *weekScript) recent(t time.Time) []string {
	var out []string
	for _, id := range s.matchIDs {
		if !s.at[id].Before(t) {
			out = append(out, id)
		}
	}
	return out
}

// TestBackfill replays a week of scripted history through a draft rule version over the API, on
// the real broker, Redis and Temporal: the report holds exactly the matches the script predicts
// per day; without start no reach exists; with start only the recent matches' reaches start, under
// live matching's IDs, and a second run starts none of them again; a cancelled backfill leaves no
// group or state behind; the live stage's group offsets and partition state are untouched.
func TestBackfill(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	tc := p.env.Temporal(t)
	ruleID := strings.ReplaceAll(p.id, ".", "-") + "-bf"
	const startWithin = 36 * time.Hour
	script := newWeekScript(ruleID, time.Now().UTC(), startWithin)
	for _, ev := range script.events {
		b, err := ev.Encode()
		require.NoError(t, err)
		// The record's time is the event's: the broker finds where since begins by it.
		_, _, err = p.producer.SendMessage(&sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(ev.Key()),
			Value: sarama.ByteEncoder(b), Timestamp: ev.TS})
		require.NoError(t, err)
	}
	require.Greater(t, script.total(), int64(20), "the script has matches on most days")
	require.GreaterOrEqual(t, len(script.perDay), 7)
	t.Logf("script: %d records since a week ago, matches per day %v", script.inRange, script.perDay)

	// The live stage, caught up on the same topic (a rule that matches nothing here).
	live := p.id + "-live"
	p.startCEPWith(live, live, []cep.Rule{{ID: ruleID + "-live", Steps: []cep.Step{{Type: "favorite"}}, JourneyID: "cart-retarget"}})
	p.waitCaughtUp(live)
	liveOffsets := p.groupOffsets(live)
	liveState := p.partitionState(live)

	// v1 is active and matches nothing; v2, the draft, is replayed.
	rules := cep.NewRuleStore(p.store.Pool(), cep.Catalog{Journey: func(string) bool { return true }, Chains: worker.Chains})
	rule := cep.Rule{ID: ruleID, Steps: []cep.Step{{Type: "cart_add", Where: "event.attrs.price > 1000.0"}}, JourneyID: "cart-retarget"}
	_, err := rules.Apply(ctx, rule)
	require.NoError(t, err)
	rule.Steps[0].Where = "event.attrs.price > 10.0"
	draft, err := rules.Draft(ctx, rule)
	require.NoError(t, err)
	require.Equal(t, 2, draft.Version)

	runner, err := backfill.New(backfill.Config{Brokers: p.env.Brokers, Sarama: saramaConfig, Topic: p.topic, Redis: p.redis(),
		Starter: &backfill.TemporalStarter{Client: tc, TaskQueue: p.queue}, PollInterval: 100 * time.Millisecond, Log: testLogger(t)})
	require.NoError(t, err)
	h, err := api.NewHandler(api.Config{Producer: p.producer, Temporal: tc, Audit: p.store, Journeys: func(string) bool { return true },
		Keys: apikey.Static{"omk_bf": {ID: "k", Name: "bf", Scopes: []string{apikey.ScopeAdmin}}}, RuleStore: rules, Backfill: runner,
		TaskQueue: p.queue, Log: testLogger(t)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	svc := omegav1connect.NewRuleServiceClient(srv.Client(), srv.URL)

	run := func(ctx context.Context, req *omegav1.BackfillRuleRequest, onProgress func()) (*omegav1.BackfillReport, int, error) {
		r := connect.NewRequest(req)
		r.Header().Set("Authorization", "Bearer omk_bf")
		stream, err := svc.BackfillRule(ctx, r)
		if err != nil {
			return nil, 0, err
		}
		defer stream.Close()
		var rep *omegav1.BackfillReport
		progress := 0
		for stream.Receive() {
			progress++
			if onProgress != nil {
				onProgress()
			}
			if stream.Msg().GetReport() != nil {
				rep = stream.Msg().GetReport()
			}
		}
		return rep, progress, stream.Err()
	}
	weekAgo := func() *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(-168 * time.Hour)) }
	perDay := func(rep *omegav1.BackfillReport) map[string]int64 {
		out := map[string]int64{}
		for _, d := range rep.GetDays() {
			out[d.GetDate()] = d.GetMatches()
		}
		return out
	}

	t.Run("report only: the script's counts, nobody reached", func(t *testing.T) {
		rep, progress, err := run(ctx, &omegav1.BackfillRuleRequest{RuleId: ruleID, Version: 2, Since: weekAgo(), SampleSize: 5}, nil)
		require.NoError(t, err)
		require.GreaterOrEqual(t, progress, 2, "progress, then the report")
		require.Equal(t, int32(2), rep.GetRuleVersion())
		require.Equal(t, script.inRange, rep.GetRecords(), "the records from since on")
		require.Equal(t, script.perDay, perDay(rep))
		require.Equal(t, script.total(), rep.GetMatches())
		require.Len(t, rep.GetSample(), 5)
		for i, m := range rep.GetSample() {
			require.Equal(t, script.matchIDs[i], m.GetReachId(), "the sample is the oldest matches")
		}
		require.Zero(t, rep.GetStarted())
		require.Nil(t, rep.GetStartAfter())
		requireReaches(t, tc, ruleID, 0)
		for _, id := range script.matchIDs {
			_, err := tc.DescribeWorkflowExecution(ctx, id, "")
			var nf *serviceerror.NotFound
			require.ErrorAs(t, err, &nf, "%s must not exist", id)
		}
		p.requireNoBackfillLeft(ruleID)
	})

	recent := script.recent(script.now.Add(-startWithin))
	require.NotEmpty(t, recent)
	require.Less(t, len(recent), len(script.matchIDs))

	t.Run("start: the recent matches only, under live matching's IDs", func(t *testing.T) {
		rep, _, err := run(ctx, &omegav1.BackfillRuleRequest{RuleId: ruleID, Version: 2, Since: weekAgo(), Start: true,
			StartWithin: durationpb.New(startWithin)}, nil)
		require.NoError(t, err)
		require.Equal(t, script.total(), rep.GetMatches())
		require.Equal(t, int64(len(recent)), rep.GetStarted())
		require.Zero(t, rep.GetExisting())
		require.Equal(t, script.total()-int64(len(recent)), rep.GetTooOld())
		var startedPerDay int64
		for _, d := range rep.GetDays() {
			startedPerDay += d.GetStarted()
		}
		require.Equal(t, rep.GetStarted(), startedPerDay)
		for _, id := range recent {
			_, err := tc.DescribeWorkflowExecution(ctx, id, "")
			require.NoError(t, err, "%s started", id)
		}
		requireReaches(t, tc, ruleID, len(recent))
		p.requireNoBackfillLeft(ruleID)
	})

	t.Run("start again: none twice", func(t *testing.T) {
		rep, _, err := run(ctx, &omegav1.BackfillRuleRequest{RuleId: ruleID, Version: 2, Since: weekAgo(), Start: true,
			StartWithin: durationpb.New(startWithin)}, nil)
		require.NoError(t, err)
		require.Zero(t, rep.GetStarted())
		require.Equal(t, int64(len(recent)), rep.GetExisting())
		requireReaches(t, tc, ruleID, len(recent))
	})

	t.Run("an absence: the windows closed when it began", func(t *testing.T) {
		abs := cep.Rule{ID: ruleID + "-abs", Kind: cep.KindAbsence, Key: "user", JourneyID: "cart-retarget",
			Steps:  []cep.Step{{Type: "cart_add", Where: "event.attrs.price > 10.0"}},
			Absent: &cep.Step{Type: "order_paid"}, Within: cep.Duration(absenceWindow)}
		_, err := rules.Apply(ctx, abs)
		require.NoError(t, err)
		rep, _, err := run(ctx, &omegav1.BackfillRuleRequest{RuleId: abs.ID, Since: weekAgo()}, nil)
		require.NoError(t, err)
		want := script.decided()
		require.Equal(t, want, perDay(rep))
		var total int64
		for _, n := range want {
			total += n
		}
		require.Equal(t, total, rep.GetMatches())
		require.Less(t, total, script.total(), "the last cart's window was open")
		requireReaches(t, tc, abs.ID, 0)
		p.requireNoBackfillLeft(abs.ID)
	})

	t.Run("cancelled: no group or state left", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, _, err := run(cctx, &omegav1.BackfillRuleRequest{RuleId: ruleID, Version: 2, Since: weekAgo(), Start: true}, cancel)
		require.Error(t, err)
		require.Equal(t, connect.CodeCanceled, connect.CodeOf(err))
		p.requireNoBackfillLeft(ruleID)
		requireReaches(t, tc, ruleID, len(recent))
	})

	require.Equal(t, liveOffsets, p.groupOffsets(live), "the live group's offsets")
	require.Equal(t, liveState, p.partitionState(live), "the live stage's partition state")

	t.Run("live matching collapses onto the backfill's reaches", func(t *testing.T) {
		// The rule goes live over the whole topic: it starts every match of the nine days but
		// the ones the backfill started, whose IDs it gives the same.
		rule.Version = 2
		group := p.id + "-golive"
		p.startCEPWith(group, group, []cep.Rule{rule})
		p.waitCaughtUp(group)
		requireReaches(t, tc, ruleID, script.all)
	})

	t.Run("a join over five-day-old history", func(t *testing.T) {
		// Shared join keys expire by event time (a day past what they are needed for, live); the
		// backfill keeps its own past the history it replays, so a favourite and a price drop of
		// five days ago still join under an hour's link TTL.
		at := time.Now().UTC().Add(-5 * 24 * time.Hour)
		item := p.id + "-sku"
		for _, ev := range []event.Event{
			{EventID: p.id + "-fav", UserID: p.id + "-fan", Type: "favorite", ItemID: item, TS: at},
			{EventID: p.id + "-drop", Type: "price_drop", ItemID: item, TS: at.Add(30 * time.Minute)},
		} {
			b, err := ev.Encode()
			require.NoError(t, err)
			_, _, err = p.producer.SendMessage(&sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(ev.Key()),
				Value: sarama.ByteEncoder(b), Timestamp: ev.TS})
			require.NoError(t, err)
		}
		join := cep.Rule{ID: ruleID + "-join", Kind: cep.KindJoin, Steps: []cep.Step{{Type: "favorite"}, {Type: "price_drop"}},
			LinkTTL: cep.Duration(time.Hour), JourneyID: "cart-retarget"}
		_, err := rules.Apply(ctx, join)
		require.NoError(t, err)
		rep, _, err := run(ctx, &omegav1.BackfillRuleRequest{RuleId: join.ID, Since: weekAgo(), SampleSize: 5}, nil)
		require.NoError(t, err)
		require.Equal(t, int64(1), rep.GetMatches())
		require.Equal(t, workflows.ReachID(join.ID, p.id+"-fan", p.id+"-drop"), rep.GetSample()[0].GetReachId())
		p.requireNoBackfillLeft(join.ID)
	})
}

// requireReaches waits until visibility counts n reaches of the rule, and checks it stays so.
func requireReaches(t *testing.T, tc client.Client, ruleID string, n int) {
	t.Helper()
	count := func() int64 {
		resp, err := tc.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{Query: fmt.Sprintf("RuleId = %q", ruleID)})
		require.NoError(t, err)
		return resp.GetCount()
	}
	got := count()
	// Visibility is eventually consistent: on the test stack a few records have come 20-80 s
	// after their workflows existed (described by ID), with or without bulk queues (2 runs of 5 of
	// TestBackfill, -count=5, 2026-12-02).
	for deadline := time.Now().Add(90 * time.Second); got != int64(n) && time.Now().Before(deadline); got = count() {
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, int64(n), got, "reaches of %s", ruleID)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, int64(n), count())
}

// groupOffsets returns a group's committed offsets on the test's topic.
func (p *pipeline) groupOffsets(group string) map[int32]int64 {
	p.t.Helper()
	admin, err := sarama.NewClusterAdmin(p.env.Brokers, saramaConfig())
	require.NoError(p.t, err)
	defer admin.Close()
	offs, err := admin.ListConsumerGroupOffsets(group, nil)
	require.NoError(p.t, err)
	out := map[int32]int64{}
	for part, b := range offs.Blocks[p.topic] {
		out[part] = b.Offset
	}
	return out
}

// partitionState returns the meta hashes (epoch, offset, watermark) of a stage's partitions.
func (p *pipeline) partitionState(prefix string) map[string]map[string]string {
	p.t.Helper()
	ctx := context.Background()
	keys, err := p.redis().Keys(ctx, prefix+":*:meta").Result()
	require.NoError(p.t, err)
	require.NotEmpty(p.t, keys)
	out := map[string]map[string]string{}
	for _, k := range keys {
		out[k], err = p.redis().HGetAll(ctx, k).Result()
		require.NoError(p.t, err)
	}
	return out
}

// requireNoBackfillLeft checks that the backfills of a rule left no consumer group and no Redis
// keys behind.
func (p *pipeline) requireNoBackfillLeft(ruleID string) {
	p.t.Helper()
	admin, err := sarama.NewClusterAdmin(p.env.Brokers, saramaConfig())
	require.NoError(p.t, err)
	defer admin.Close()
	require.Eventually(p.t, func() bool {
		groups, err := admin.ListConsumerGroups()
		require.NoError(p.t, err)
		for g := range groups {
			if strings.HasPrefix(g, "omega-backfill."+ruleID+".") {
				return false
			}
		}
		return true
	}, 10*time.Second, 100*time.Millisecond, "a backfill consumer group is left")
	keys, err := p.redis().Keys(context.Background(), "omega-backfill-*").Result()
	require.NoError(p.t, err)
	require.Empty(p.t, keys)
}
