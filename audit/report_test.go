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

// A scripted scenario's funnel is exact: per reach, what the trail says, counted once per stage.
func TestFunnel(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	rule, jid := testenv.Unique("fr-"), testenv.Unique("fj-")
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	type step struct{ kind, outcome, reason string }
	reach := func(name string, at time.Time, steps ...step) {
		t.Helper()
		id := fmt.Sprintf("reach/%s/%s-%s/k", rule, name, rule)
		recs := []audit.Record{{ReachID: id, Step: "match", Kind: audit.KindMatched, UserID: name + "-" + rule, RuleID: rule, JourneyID: jid, At: at}}
		version := 0
		for i, s := range steps {
			if s.kind == audit.KindRouted {
				_, _ = fmt.Sscanf(s.outcome, "v%d", &version)
			}
			recs = append(recs, audit.Record{ReachID: id, Step: fmt.Sprintf("s%d", i), Kind: s.kind, Outcome: s.outcome, Reason: s.reason,
				UserID: name + "-" + rule, RuleID: rule, JourneyID: jid, JourneyVersion: version, At: at.Add(time.Duration(i+1) * time.Second)})
		}
		_, err := store.Append(ctx, recs...)
		require.NoError(t, err)
	}
	v1, v2 := step{audit.KindRouted, "v1", ""}, step{audit.KindRouted, "v2", ""}
	pass := step{audit.KindFiltered, "pass", "pass"}
	sent := step{audit.KindDispatched, "sent", "provider 200"}
	done := func(status string) step { return step{audit.KindCompleted, status, ""} }
	reach("opened", base, v1, pass, sent, step{audit.KindResponded, "push_open", ""}, done("sent"))
	reach("buyer", base, v1, pass, sent, step{audit.KindConverted, "order_paid", ""}, done("converted"))
	reach("capped", base, v1, step{audit.KindFiltered, "drop", "drop by fatigue: 3 messages in 24h"}, done("suppressed"))
	reach("refused", base, v2, step{audit.KindFiltered, "drop", "drop by consent: sms refused"}, done("suppressed"))
	reach("twice", base, v2, pass, sent, step{audit.KindFiltered, "drop", "drop by fatigue: 1 sms in 24h"}, done("suppressed"))
	reach("bounced", base, v2, pass, step{audit.KindFailed, "permanent", "provider 400"}, done("failed"))
	reach("waiting", base, v1, pass, sent)
	reach("stopped", base, v1, step{audit.KindCancelled, "cancelled", "asked by support"})
	reach("old", base.Add(-48*time.Hour), v1, pass, sent, done("sent")) // before the range
	// After its run ended, "late" is opened (a push_open naming it) and converted by an order
	// within its journey's window; "old" sent two days before the order: outside the window.
	reach("late", base, v1, pass, sent, done("sent"))
	_, err := store.Pool().Exec(ctx, `INSERT INTO journey_versions (journey_id, version, spec, checksum) VALUES ($1, 1, $2, '')`,
		jid, `{"steps": [{"id": "g", "goal": {"events": ["order_paid"], "window": "2h"}}]}`)
	require.NoError(t, err)
	late := fmt.Sprintf("reach/%s/late-%s/k", rule, rule)
	_, err = store.Receipts(ctx, []audit.Receipt{{Kind: audit.KindResponded, Outcome: "push_open", ReachID: late, EventID: "open-1", At: base.Add(time.Minute)}})
	require.NoError(t, err)
	for _, who := range []string{"late", "old"} {
		_, err = store.Attribute(ctx, []audit.Goal{{UserID: who + "-" + rule, Type: "order_paid", EventID: "order-" + who, At: base.Add(30 * time.Minute)}})
		require.NoError(t, err)
	}

	q := audit.FunnelQuery{JourneyID: jid, From: base.Add(-time.Minute), To: base.Add(time.Hour)}
	f, err := store.Funnel(ctx, q)
	require.NoError(t, err)
	require.Equal(t, audit.Funnel{Matched: 9, Sent: 5, Opened: 2, Converted: 2, Suppressed: 3, Failed: 1, Cancelled: 1, Running: 1,
		SuppressedBy: map[string]int64{"fatigue": 2, "consent": 1}}, f)

	q.JourneyVersion = 2
	f, err = store.Funnel(ctx, q)
	require.NoError(t, err)
	require.Equal(t, audit.Funnel{Matched: 3, Sent: 1, Suppressed: 2, Failed: 1, SuppressedBy: map[string]int64{"fatigue": 1, "consent": 1}}, f)

	f, err = store.Funnel(ctx, audit.FunnelQuery{RuleID: rule, From: base.Add(-72 * time.Hour), To: base.Add(time.Hour)})
	require.NoError(t, err)
	require.EqualValues(t, 10, f.Matched, "by rule, the old reach included")
	require.EqualValues(t, 2, f.Converted, "the old reach sent outside the window: not converted")
	f, err = store.Funnel(ctx, audit.FunnelQuery{RuleID: rule + "-none", From: q.From, To: q.To})
	require.NoError(t, err)
	require.Equal(t, audit.Funnel{SuppressedBy: map[string]int64{}}, f)
}

// A user's timeline pages through every record of every reach, newest first.
func TestTimeline(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("tl-")
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var recs []audit.Record
	for i := range 5 {
		recs = append(recs, rec(fmt.Sprintf("reach/r/%s/%d", user, i%2), user, fmt.Sprintf("s%d", i), audit.KindFiltered, at.Add(time.Duration(i)*time.Second)))
	}
	recs = append(recs, rec("reach/r/"+user+"/tie", user, "tie", audit.KindMatched, at.Add(4*time.Second))) // same time as s4
	_, err := store.Append(ctx, recs...)
	require.NoError(t, err)
	var steps []string
	token := ""
	for range 10 {
		page, next, err := store.Timeline(ctx, user, 4, token)
		require.NoError(t, err)
		for _, r := range page {
			steps = append(steps, r.Step)
		}
		if token = next; token == "" {
			break
		}
	}
	require.Equal(t, []string{"tie", "s4", "s3", "s2", "s1", "s0"}, steps)
	_, _, err = store.Timeline(ctx, user, 4, "bad token")
	require.ErrorIs(t, err, audit.ErrBadPageToken)
}

// A scripted experiment with known conversions per path: the rates, intervals and p-values are
// exact (reference values from the formulas in lift.go computed independently, and published
// examples in lift_internal_test.go); B beats the holdout and A, so B wins.
func TestLift(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	rule, jid := testenv.Unique("xr-"), testenv.Unique("xj-")
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var recs []audit.Record
	arm := func(path string, reached, converted int) {
		for i := range reached {
			user := fmt.Sprintf("%s-%s-%d", rule, path, i)
			id := "reach/" + rule + "/" + user + "/k"
			r := func(step, kind, outcome string, d time.Duration) audit.Record {
				return audit.Record{ReachID: id, Step: step, Kind: kind, Outcome: outcome, UserID: user, RuleID: rule,
					JourneyID: jid, JourneyVersion: 1, At: base.Add(d)}
			}
			recs = append(recs, r("match", audit.KindMatched, "", 0), r("ab", audit.KindSplit, path, time.Second))
			if path != audit.Holdout {
				recs = append(recs, r("push", audit.KindDispatched, "sent", 2*time.Second))
			}
			if i < converted {
				recs = append(recs, r("goal", audit.KindConverted, "order_paid", time.Minute))
			}
		}
	}
	arm("a", 500, 60)
	arm("b", 500, 90)
	arm(audit.Holdout, 400, 40)
	// A reach that reached no split is in no path.
	recs = append(recs, audit.Record{ReachID: "reach/" + rule + "/none/k", Step: "match", Kind: audit.KindMatched, UserID: "none",
		RuleID: rule, JourneyID: jid, At: base})
	_, err := store.Append(ctx, recs...)
	require.NoError(t, err)

	f, err := store.Funnel(ctx, audit.FunnelQuery{JourneyID: jid, From: base.Add(-time.Minute), To: base.Add(time.Hour)})
	require.NoError(t, err)
	require.EqualValues(t, 1401, f.Matched)
	paths := audit.Lift(f)
	require.Len(t, paths, 3)
	a, b, h := paths[0], paths[1], paths[2]
	require.Equal(t, []string{"a", "b", audit.Holdout}, []string{a.Path, b.Path, h.Path})
	require.Equal(t, [4]int64{500, 500, 0, 60}, [4]int64{a.Reached, a.Sent, a.Opened, a.Converted})
	require.Equal(t, [4]int64{400, 0, 0, 40}, [4]int64{h.Reached, h.Sent, h.Opened, h.Converted})
	require.InDelta(t, 0.12, a.Rate, 1e-12)
	require.InDelta(t, 0.18, b.Rate, 1e-12)
	require.InDelta(t, 0.10, h.Rate, 1e-12)
	require.InDelta(t, 0.094375, a.RateLow, 1e-6)
	require.InDelta(t, 0.151420, a.RateHigh, 1e-6)
	require.InDelta(t, 0.074299, h.RateLow, 1e-6)
	require.InDelta(t, 0.133311, h.RateHigh, 1e-6)
	require.InDelta(t, 0.2, a.Lift, 1e-9)
	require.InDelta(t, 0.8, b.Lift, 1e-9)
	require.InDelta(t, 0.342782, a.P, 1e-6)
	require.InDelta(t, 0.000693, b.P, 1e-6)
	require.InDelta(t, 0.034363, b.DiffLow, 1e-6)
	require.InDelta(t, 0.124293, b.DiffHigh, 1e-6)
	require.True(t, a.Compared && b.Compared && !h.Compared)
	require.True(t, b.Wins, "B beats the holdout (p 0.0007) and A (p 0.0079)")
	require.False(t, a.Wins || h.Wins)

	// With A only as good as B, nobody wins.
	tie := audit.CompareWithControl([]audit.PathFunnel{{Path: "a", Reached: 500, Converted: 88}, {Path: "b", Reached: 500, Converted: 90},
		{Path: audit.Holdout, Reached: 400, Converted: 40}})
	require.False(t, tie[0].Wins || tie[1].Wins)
}

// A journey without a split against the global control group: its reaches not held out are one
// path, "reached", compared with the held-out ones.
func TestLiftOverControlGroup(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	rule, jid := testenv.Unique("cr-"), testenv.Unique("cj-")
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var recs []audit.Record
	group := func(name string, held bool, reached, converted int) {
		for i := range reached {
			user := fmt.Sprintf("%s-%s-%d", rule, name, i)
			id := "reach/" + rule + "/" + user + "/k"
			r := func(step, kind, outcome string, d time.Duration) audit.Record {
				return audit.Record{ReachID: id, Step: step, Kind: kind, Outcome: outcome, UserID: user, RuleID: rule,
					JourneyID: jid, JourneyVersion: 1, At: base.Add(d)}
			}
			recs = append(recs, r("match", audit.KindMatched, "", 0))
			if held {
				recs = append(recs, r("control", audit.KindHeldOut, "control", time.Second), r("end", audit.KindCompleted, "held_out", 2*time.Second))
			} else {
				recs = append(recs, r("push", audit.KindDispatched, "sent", time.Second))
			}
			if i < converted {
				recs = append(recs, r("goal", audit.KindConverted, "order_paid", time.Minute))
			}
		}
	}
	group("in", false, 300, 45)
	group("out", true, 100, 5)
	_, err := store.Append(ctx, recs...)
	require.NoError(t, err)
	f, err := store.Funnel(ctx, audit.FunnelQuery{JourneyID: jid, From: base.Add(-time.Minute), To: base.Add(time.Hour)})
	require.NoError(t, err)
	require.EqualValues(t, 400, f.Matched)
	require.EqualValues(t, 100, f.HeldOut)
	paths := audit.Lift(f)
	require.Len(t, paths, 2)
	reached, control := paths[0], paths[1]
	require.Equal(t, []string{"reached", audit.ControlGroup}, []string{reached.Path, control.Path})
	require.Equal(t, [2]int64{300, 45}, [2]int64{reached.Reached, reached.Converted})
	require.Equal(t, [2]int64{100, 5}, [2]int64{control.Reached, control.Converted})
	require.True(t, reached.Compared && !control.Compared)
	require.InDelta(t, 2.0, reached.Lift, 1e-9, "15% against 5%")
	require.InDelta(t, 0.008829, reached.P, 1e-6)
	require.True(t, reached.Wins)
}
