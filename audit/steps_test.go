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

// A scripted journey's step counts are exact: each reach once per figure, second visits, fallback
// attempts and rechecks counted at the step they belong to, a version's reaches apart.
func TestStepCounts(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	rule, jid := testenv.Unique("sr-"), testenv.Unique("sj-")
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	type step struct{ step, kind, outcome, reason string }
	reach := func(name string, version int, at time.Time, steps ...step) {
		t.Helper()
		id := fmt.Sprintf("reach/%s/%s/k", rule, name)
		recs := []audit.Record{{ReachID: id, Step: "match", Kind: audit.KindMatched, UserID: name, RuleID: rule, JourneyID: jid, At: at}}
		for i, s := range append([]step{{"route", audit.KindRouted, fmt.Sprintf("v%d", version), ""}}, steps...) {
			recs = append(recs, audit.Record{ReachID: id, Step: s.step, Kind: s.kind, Outcome: s.outcome, Reason: s.reason,
				UserID: name, RuleID: rule, JourneyID: jid, JourneyVersion: version, At: at.Add(time.Duration(i+1) * time.Second)})
		}
		_, err := store.Append(ctx, recs...)
		require.NoError(t, err)
	}
	pass := func(s string) step { return step{s, audit.KindFiltered, "pass", "pass"} }
	sent := func(s string) step { return step{s, audit.KindDispatched, "sent", "provider 200"} }
	reach("opened", 1, base, step{"ab", audit.KindSplit, "a", ""}, pass("push"), sent("push"),
		step{"wait_open", audit.KindResponded, "push_open", ""}, step{"goal", audit.KindConverted, "order_paid", ""})
	reach("timeout", 1, base, step{"ab", audit.KindSplit, "a", ""}, pass("push"), step{"push", audit.KindFailed, "error", "provider 400"},
		pass("push/sms"), sent("push/sms"), step{"wait_open", audit.KindTimedOut, "timeout", ""},
		pass("push#2"), sent("push#2"))
	reach("quiet", 1, base, step{"ab", audit.KindSplit, "b", ""}, step{"push", audit.KindDeferred, "defer", "defer by quiet_hours"},
		step{"push/recheck1", audit.KindFiltered, "drop", "drop by fatigue: 3 in 24h"},
		step{"push/recheck1", audit.KindSuppressed, "drop", "drop by fatigue: 3 in 24h"})
	reach("control", 1, base, step{"ab", audit.KindSplit, "holdout", ""})
	reach("v2", 2, base, step{"ab", audit.KindSplit, "a", ""}, step{"push", audit.KindSuppressed, "drop", "drop by consent: refused"})
	reach("old", 1, base.Add(-48*time.Hour), step{"ab", audit.KindSplit, "a", ""}) // before the range

	q := audit.StepQuery{JourneyID: jid, From: base.Add(-time.Minute), To: base.Add(time.Hour)}
	got, err := store.StepCounts(ctx, q)
	require.NoError(t, err)
	byStep := map[string]audit.StepCount{}
	for _, c := range got {
		byStep[c.Step] = c
	}
	none := map[string]int64{}
	require.Equal(t, audit.StepCount{Step: "ab", Entered: 5, Converted: 1, DroppedBy: none,
		Outcomes: map[string]int64{"a": 3, "b": 1, "holdout": 1}}, byStep["ab"])
	require.Equal(t, audit.StepCount{Step: "push", Entered: 4, Waited: 1, Sent: 2, Dropped: 2, Failed: 1, Converted: 1,
		DroppedBy: map[string]int64{"fatigue": 1, "consent": 1}, Outcomes: none}, byStep["push"])
	require.Equal(t, audit.StepCount{Step: "wait_open", Entered: 2, Waited: 2, Converted: 1, DroppedBy: none,
		Outcomes: map[string]int64{"push_open": 1, "timeout": 1}}, byStep["wait_open"])
	require.Equal(t, audit.StepCount{Step: "goal", Entered: 1, Converted: 1, DroppedBy: none,
		Outcomes: map[string]int64{"order_paid": 1}}, byStep["goal"])
	require.EqualValues(t, 5, byStep["match"].Entered)

	q.JourneyVersion = 2
	got, err = store.StepCounts(ctx, q)
	require.NoError(t, err)
	require.Len(t, got, 4, "match, route, ab, push of the one v2 reach")
	require.EqualValues(t, 1, got[0].Entered)

	got, err = store.StepCounts(ctx, audit.StepQuery{JourneyID: jid + "-none", From: q.From, To: q.To})
	require.NoError(t, err)
	require.Empty(t, got)
}

// Matches per hour count live and shadow matches apart, per rule and UTC hour.
func TestMatchesPerHour(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	rule := testenv.Unique("mh-")
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	var recs []audit.Record
	add := func(kind string, at time.Time, n int) {
		for i := range n {
			user := fmt.Sprintf("u%d-%s", len(recs), kind)
			recs = append(recs, audit.Record{ReachID: fmt.Sprintf("reach/%s/%s/%d", rule, user, i), Step: "match", Kind: kind,
				UserID: user, RuleID: rule, At: at.Add(time.Duration(i) * time.Minute)})
		}
	}
	add(audit.KindMatched, hour, 3)
	add(audit.KindShadowMatched, hour.Add(10*time.Minute), 2)
	add(audit.KindMatched, hour.Add(time.Hour+5*time.Minute), 1)
	_, err := store.Append(ctx, recs...)
	require.NoError(t, err)

	got, err := store.MatchesPerHour(ctx, audit.MatchQuery{RuleIDs: []string{rule}, From: hour.Add(-time.Hour), To: hour.Add(3 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, []audit.MatchHour{
		{RuleID: rule, Hour: hour, Live: 3, Shadow: 2},
		{RuleID: rule, Hour: hour.Add(time.Hour), Live: 1},
	}, got)

	both, err := store.MatchesPerHour(ctx, audit.MatchQuery{RuleIDs: []string{rule + "-none", rule}, From: hour.Add(-time.Hour), To: hour.Add(3 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, got, both, "a rule without matches adds no hours")
}

// A funnel by split path counts only the reaches the split sent down that path.
func TestFunnelBySplitPath(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	rule, jid := testenv.Unique("fs-"), testenv.Unique("fsj-")
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	for i, path := range []string{"a", "a", "b", "holdout"} {
		id := fmt.Sprintf("reach/%s/u%d/k", rule, i)
		recs := []audit.Record{
			{ReachID: id, Step: "match", Kind: audit.KindMatched, UserID: "u", RuleID: rule, JourneyID: jid, At: at},
			{ReachID: id, Step: "ab", Kind: audit.KindSplit, Outcome: path, UserID: "u", RuleID: rule, JourneyID: jid, At: at.Add(time.Second)},
		}
		if path != "holdout" {
			recs = append(recs, audit.Record{ReachID: id, Step: "push", Kind: audit.KindDispatched, Outcome: "sent", UserID: "u", RuleID: rule,
				JourneyID: jid, At: at.Add(2 * time.Second)})
		}
		_, err := store.Append(ctx, recs...)
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		name            string
		path            string
		matched, sentTo int64
	}{{"all", "", 4, 3}, {"path a", "a", 2, 2}, {"path b", "b", 1, 1}, {"control group", "holdout", 1, 0}, {"no such path", "c", 0, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := store.Funnel(ctx, audit.FunnelQuery{JourneyID: jid, SplitPath: tc.path, From: at.Add(-time.Minute), To: at.Add(time.Minute)})
			require.NoError(t, err)
			require.Equal(t, tc.matched, f.Matched)
			require.Equal(t, tc.sentTo, f.Sent)
		})
	}
	// One query gives every path's funnel too, each the same as asked for alone.
	all, err := store.Funnel(ctx, audit.FunnelQuery{JourneyID: jid, From: at.Add(-time.Minute), To: at.Add(time.Minute)})
	require.NoError(t, err)
	require.Len(t, all.BySplitPath, 3)
	for path, got := range all.BySplitPath {
		alone, err := store.Funnel(ctx, audit.FunnelQuery{JourneyID: jid, SplitPath: path, From: at.Add(-time.Minute), To: at.Add(time.Minute)})
		require.NoError(t, err)
		alone.BySplitPath = nil
		require.Equal(t, alone, got, path)
	}
}
