package audit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/store"
)

// The funnels and step counts read each reach's roll-up (audit_reaches), which the database keeps
// as records arrive. Whatever order and grouping the records come in (a reach's steps across many
// statements, out of order, replayed, some written before the roll-up existed and folded in by
// its migration), the roll-ups give the same figures as the records themselves.
func TestRollupsAgreeWithTheTrail(t *testing.T) {
	env := testenv.Require(t)
	u := env.FreshDB(t)
	require.NoError(t, store.MigrateTo(u, 13))
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, u)
	require.NoError(t, err)
	defer pool.Close()
	s := audit.NewStore(pool)

	rng := rand.New(rand.NewPCG(7, 19))
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := randomTrail(rng, now, 600)
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	write := func(recs []audit.Record) {
		for len(recs) > 0 {
			n := min(len(recs), 1+rng.IntN(40))
			_, err := s.Append(ctx, recs[:n]...)
			require.NoError(t, err)
			recs = recs[n:]
		}
	}
	half := len(recs) / 2
	write(recs[:half])
	// The migration folds a big partition in slices (by its row estimate): pretend they are big.
	_, err = pool.Exec(ctx, `UPDATE pg_class SET reltuples = 1000000 WHERE relname LIKE 'audit_records_%' AND relkind = 'r'`)
	require.NoError(t, err)
	require.NoError(t, store.Migrate(u), "the roll-up's migration folds in the trail so far")
	write(recs[half:])
	write(recs[:len(recs)/5]) // replayed: changes nothing

	from, to := now.Add(-30*time.Hour), now.Add(time.Hour)
	for _, q := range []audit.FunnelQuery{
		{JourneyID: "j1", From: from, To: to},
		{JourneyID: "j1", JourneyVersion: 2, From: from, To: to},
		{JourneyID: "j1", SplitPath: "b", From: from, To: to},
		{JourneyID: "j1", SplitPath: "holdout", From: from, To: to},
		{RuleID: "r2", From: from, To: to},
		{RuleID: "r1", JourneyID: "j2", From: now.Add(-10 * time.Hour), To: now.Add(-2 * time.Hour)},
	} {
		got, err := s.Funnel(ctx, q)
		require.NoError(t, err)
		require.Positive(t, got.Matched, "%+v", q)
		require.Equal(t, trailFunnel(t, pool, q), got, "%+v", q)
	}
	for _, q := range []audit.StepQuery{
		{JourneyID: "j1", From: from, To: to},
		{JourneyID: "j1", JourneyVersion: 1, From: from, To: to},
		{JourneyID: "j2", From: now.Add(-10 * time.Hour), To: now.Add(-2 * time.Hour)},
	} {
		got, err := s.StepCounts(ctx, q)
		require.NoError(t, err)
		require.NotEmpty(t, got, "%+v", q)
		require.Equal(t, trailStepCounts(t, pool, q), got, "%+v", q)
	}
}

// randomTrail writes n reaches of two rules and two journeys (versions 1 and 2) over the last day:
// splits, filters that drop, sends, failures and fallbacks, second visits, responses and
// timeouts, conversions, holds by the control group, cancellations, and shadow matches.
func randomTrail(rng *rand.Rand, now time.Time, n int) []audit.Record {
	var out []audit.Record
	for i := range n {
		rule, jid := fmt.Sprintf("r%d", 1+rng.IntN(2)), fmt.Sprintf("j%d", 1+rng.IntN(2))
		id, user := fmt.Sprintf("reach/%s/u%d/%d", rule, i%50, i), fmt.Sprintf("u%d", i%50)
		at := now.Add(-time.Duration(rng.IntN(28*3600)) * time.Second)
		version := 1 + rng.IntN(2)
		k := 0
		rec := func(step, kind, outcome, reason string) {
			k++
			out = append(out, audit.Record{ReachID: id, Step: step, Kind: kind, Outcome: outcome, Reason: reason, UserID: user,
				RuleID: rule, JourneyID: jid, JourneyVersion: version, At: at.Add(time.Duration(k) * time.Second)})
		}
		if rng.IntN(10) == 0 {
			out = append(out, audit.Record{ReachID: id, Step: "match", Kind: audit.KindShadowMatched, UserID: user, RuleID: rule, JourneyID: jid, At: at})
			continue
		}
		out = append(out, audit.Record{ReachID: id, Step: "match", Kind: audit.KindMatched, UserID: user, RuleID: rule, JourneyID: jid, At: at})
		if rng.IntN(12) == 0 {
			rec("route", audit.KindHeldOut, "control", "held out")
			rec("end", audit.KindCompleted, "held_out", "")
			continue
		}
		rec("route", audit.KindRouted, fmt.Sprintf("v%d", version), "")
		path := []string{"a", "b", "holdout"}[rng.IntN(3)]
		rec("ab", audit.KindSplit, path, "")
		if path == "holdout" {
			rec("end", audit.KindCompleted, "completed", "")
			continue
		}
		for visit := range 1 + rng.IntN(2) {
			step := "push"
			if visit > 0 {
				step = fmt.Sprintf("push#%d", visit+1)
			}
			switch rng.IntN(5) {
			case 0:
				filter := []string{"fatigue", "consent", "quiet_hours"}[rng.IntN(3)]
				rec(step, audit.KindFiltered, "drop", "drop by "+filter+": no")
				rec(step, audit.KindSuppressed, "drop", "drop by "+filter+": no")
			case 1:
				rec(step, audit.KindFiltered, "pass", "pass")
				rec(step, audit.KindFailed, "error", "provider 400")
				rec(step+"/sms", audit.KindDispatched, "sent", "provider 200")
			default:
				rec(step, audit.KindFiltered, "pass", "pass")
				rec(step, audit.KindDispatched, "sent", "provider 200")
			}
		}
		switch rng.IntN(4) {
		case 0:
			rec("wait_open", audit.KindResponded, "push_open", "")
		case 1:
			rec("wait_open", audit.KindTimedOut, "timeout", "")
		case 2:
			rec("branch", audit.KindBranched, fmt.Sprintf("case %d", rng.IntN(2)), "")
		}
		if rng.IntN(3) == 0 {
			rec("goal", audit.KindConverted, "order_paid", "")
		}
		switch rng.IntN(6) {
		case 0: // still running
		case 1:
			rec("end", audit.KindCancelled, "cancelled", "")
		default:
			rec("end", audit.KindCompleted, []string{"sent", "suppressed", "failed"}[rng.IntN(3)], "")
		}
	}
	return out
}

// trailFunnel is audit.Store.Funnel computed from the records themselves.
func trailFunnel(t *testing.T, pool *pgxpool.Pool, q audit.FunnelQuery) audit.Funnel {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		WITH m AS (
			SELECT DISTINCT reach_id FROM audit_records
			WHERE kind = 'matched' AND at >= $1 AND at < $2
				AND ($3::text = '' OR rule_id = $3) AND ($4::text = '' OR journey_id = $4)),
		r AS (
			SELECT a.reach_id,
				bool_or(a.kind = 'dispatched') AS sent,
				bool_or(a.kind = 'responded' AND a.outcome = 'push_open') AS opened,
				bool_or(a.kind = 'converted') AS converted,
				coalesce((array_agg(a.outcome ORDER BY a.at DESC, a.id DESC) FILTER (WHERE a.kind IN ('completed', 'cancelled')))[1], 'running') AS status,
				(array_agg(coalesce(substring(a.reason from '^drop by ([A-Za-z0-9_]+)'), 'other') ORDER BY a.at DESC, a.id DESC)
					FILTER (WHERE a.kind = 'filtered' AND a.outcome = 'drop'))[1] AS dropped_by,
				max(a.journey_version) AS version,
				bool_or(a.kind = 'split' AND a.outcome = $6) AS on_path,
				coalesce(min(a.outcome) FILTER (WHERE a.kind = 'split'), min(a.outcome) FILTER (WHERE a.kind = 'held_out')) AS path
			FROM audit_records a JOIN m USING (reach_id)
			GROUP BY a.reach_id)
		SELECT status, coalesce(dropped_by, ''), coalesce(path, ''), count(*), count(*) FILTER (WHERE sent),
			count(*) FILTER (WHERE opened), count(*) FILTER (WHERE converted)
		FROM r WHERE ($5::int = 0 OR version = $5) AND ($6::text = '' OR on_path)
		GROUP BY 1, 2, 3`, q.From, q.To, q.RuleID, q.JourneyID, q.JourneyVersion, q.SplitPath)
	require.NoError(t, err)
	defer rows.Close()
	f := audit.Funnel{SuppressedBy: map[string]int64{}}
	for rows.Next() {
		var status, by, path string
		var n, sent, opened, converted int64
		require.NoError(t, rows.Scan(&status, &by, &path, &n, &sent, &opened, &converted))
		audit.AddToFunnel(&f, status, by, path, n, sent, opened, converted)
	}
	require.NoError(t, rows.Err())
	return f
}

// trailStepCounts is audit.Store.StepCounts computed from the records themselves.
func trailStepCounts(t *testing.T, pool *pgxpool.Pool, q audit.StepQuery) []audit.StepCount {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		WITH m AS (
			SELECT DISTINCT reach_id FROM audit_records
			WHERE kind = 'matched' AND at >= $1 AND at < $2 AND journey_id = $3),
		r AS (
			SELECT a.reach_id, bool_or(a.kind = 'converted') AS converted FROM audit_records a JOIN m USING (reach_id)
			GROUP BY a.reach_id HAVING $4::int = 0 OR max(a.journey_version) = $4),
		a AS (
			SELECT a.reach_id, split_part(split_part(a.step, '#', 1), '/', 1) AS step, a.kind, a.outcome, a.reason, r.converted
			FROM audit_records a JOIN r USING (reach_id)),
		s AS (
			SELECT step, converted,
				bool_or(kind IN ('waited', 'deferred', 'responded', 'timed_out')) AS waited,
				bool_or(kind = 'dispatched') AS sent, bool_or(kind = 'suppressed') AS dropped, bool_or(kind = 'failed') AS failed
			FROM a GROUP BY reach_id, step, converted),
		l AS (
			SELECT DISTINCT a.reach_id, a.step,
				CASE WHEN a.kind = 'suppressed' THEN 'drop' ELSE 'outcome' END AS label_kind,
				CASE WHEN a.kind = 'suppressed' THEN coalesce(substring(a.reason from '^drop by ([A-Za-z0-9_]+)'), 'other') ELSE a.outcome END AS label
			FROM a
			WHERE a.kind IN ('suppressed', 'split', 'branched', 'responded', 'timed_out', 'converted'))
		SELECT step, false, '', '', count(*), count(*) FILTER (WHERE waited), count(*) FILTER (WHERE sent),
			count(*) FILTER (WHERE dropped), count(*) FILTER (WHERE failed), count(*) FILTER (WHERE converted)
		FROM s GROUP BY step
		UNION ALL
		SELECT step, true, label_kind, label, count(*), 0, 0, 0, 0, 0 FROM l GROUP BY step, label_kind, label
		ORDER BY 1, 2`, q.From, q.To, q.JourneyID, q.JourneyVersion)
	require.NoError(t, err)
	defer rows.Close()
	var out []audit.StepCount
	for rows.Next() {
		var step, labelKind, label string
		var detail bool
		var n, waited, sent, dropped, failed, converted int64
		require.NoError(t, rows.Scan(&step, &detail, &labelKind, &label, &n, &waited, &sent, &dropped, &failed, &converted))
		if len(out) == 0 || out[len(out)-1].Step != step {
			out = append(out, audit.StepCount{Step: step, DroppedBy: map[string]int64{}, Outcomes: map[string]int64{}})
		}
		c := &out[len(out)-1]
		switch {
		case !detail:
			c.Entered, c.Waited, c.Sent, c.Dropped, c.Failed, c.Converted = n, waited, sent, dropped, failed, converted
		case labelKind == "drop":
			c.DroppedBy[label] = n
		default:
			c.Outcomes[label] = n
		}
	}
	require.NoError(t, rows.Err())
	return out
}
