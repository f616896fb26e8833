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
