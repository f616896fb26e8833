package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/store"
)

// journeyWithGoal stores version 1 of a journey whose goal converts on order_paid within window.
func journeyWithGoal(t *testing.T, store *audit.Store, window string) string {
	t.Helper()
	id := testenv.Unique("j")
	goal := `{"events": ["order_paid"]}`
	if window != "" {
		goal = fmt.Sprintf(`{"events": ["order_paid"], "window": %q}`, window)
	}
	spec := fmt.Sprintf(`{"id": %q, "steps": [{"id": "s", "send": {"channel": "push", "template": "t"}}, {"id": "g", "goal": %s}]}`, id, goal)
	_, err := store.Pool().Exec(context.Background(),
		`INSERT INTO journey_versions (journey_id, version, spec, checksum) VALUES ($1, 1, $2, '')`, id, spec)
	require.NoError(t, err)
	return id
}

func sent(reach, user, journeyID string, at time.Time) audit.Record {
	return audit.Record{ReachID: reach, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Step: "send", Kind: audit.KindDispatched,
		UserID: user, RuleID: "r", JourneyID: journeyID, JourneyVersion: 1, Channel: "push", Outcome: "sent",
		IdempotencyKey: reach + "/send/push", At: at}
}

func kindsOf(t *testing.T, store *audit.Store, reach string) []string {
	t.Helper()
	r, err := store.Get(context.Background(), reach)
	require.NoError(t, err)
	var out []string
	for _, rec := range r.Records {
		out = append(out, rec.Kind)
	}
	return out
}

// A goal converts the reaches that sent within their journey's window before it, once each, under
// the reach's trace; reaches outside the window, of journeys without that goal, or converted
// already are left alone.
func TestAttributeWithinWindow(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	now := time.Now().UTC().Truncate(time.Millisecond)
	j2h := journeyWithGoal(t, store, "2h")
	jDefault := journeyWithGoal(t, store, "")
	other := testenv.Unique("j") // no stored version: no goal
	in, late, def, noGoal, done := "r-in-"+user, "r-late-"+user, "r-def-"+user, "r-nogoal-"+user, "r-done-"+user
	_, err := store.Append(ctx,
		sent(in, user, j2h, now.Add(-time.Hour)),
		sent(late, user, j2h, now.Add(-3*time.Hour)),
		sent(def, user, jDefault, now.Add(-20*time.Hour)),
		sent(noGoal, user, other, now.Add(-time.Minute)),
		sent(done, user, j2h, now.Add(-30*time.Minute)),
		audit.Record{ReachID: done, Step: "goal", Kind: audit.KindConverted, UserID: user, JourneyID: j2h, Outcome: "order_paid", At: now.Add(-10 * time.Minute)},
	)
	require.NoError(t, err)

	// A goal dated before every send (a stale producer clock) converts nothing.
	n, err := store.Attribute(ctx, []audit.Goal{{UserID: user, Type: "order_paid", EventID: "o0", At: now.Add(-21 * time.Hour)}})
	require.NoError(t, err)
	require.Zero(t, n)

	goal := audit.Goal{UserID: user, Type: "order_paid", EventID: "o1", At: now}
	n, err = store.Attribute(ctx, []audit.Goal{goal, {UserID: user, Type: "push_open", EventID: "p1", At: now}})
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "the reach within 2h and the one within the default 24h")
	require.Equal(t, []string{audit.KindDispatched, audit.KindConverted}, kindsOf(t, store, in))
	require.Equal(t, []string{audit.KindDispatched, audit.KindConverted}, kindsOf(t, store, def))
	require.Equal(t, []string{audit.KindDispatched}, kindsOf(t, store, late))
	require.Equal(t, []string{audit.KindDispatched}, kindsOf(t, store, noGoal))
	require.Equal(t, []string{audit.KindDispatched, audit.KindConverted}, kindsOf(t, store, done))

	r, err := store.Get(ctx, in)
	require.NoError(t, err)
	conv := r.Records[1]
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", conv.TraceID)
	require.Equal(t, "o1", conv.EventID)
	require.Equal(t, 1, conv.JourneyVersion)
	require.Equal(t, "order_paid", conv.Outcome)
	require.True(t, conv.At.Equal(now), "the goal's time, so the run's own record of it collides: %s", conv.At)

	// A replayed batch, and the run's own record of the same goal, write nothing new.
	n, err = store.Attribute(ctx, []audit.Goal{goal})
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = store.Append(ctx, audit.Record{ReachID: in, Step: "goal", Kind: audit.KindConverted, UserID: user,
		JourneyID: j2h, Outcome: "order_paid", At: now})
	require.NoError(t, err)
	require.Zero(t, n)
}

// A receipt marks the send it names delivered, once; receipts for unknown reaches write nothing.
func TestDeliveredReceipts(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	now := time.Now().UTC().Truncate(time.Millisecond)
	reach := "r-" + user
	first := sent(reach, user, "j", now.Add(-time.Hour))
	second := sent(reach, user, "j", now.Add(-time.Minute))
	second.Step, second.Channel, second.IdempotencyKey = "retarget", "sms", reach+"/retarget/sms"
	_, err := store.Append(ctx, first, second)
	require.NoError(t, err)

	dlv := func(r audit.Receipt) audit.Receipt {
		r.Kind, r.Outcome = audit.KindDelivered, "delivered"
		return r
	}
	n, err := store.Receipts(ctx, []audit.Receipt{
		dlv(audit.Receipt{ReachID: reach, IdempotencyKey: first.IdempotencyKey, EventID: "d1", At: now}),
		dlv(audit.Receipt{ReachID: reach, EventID: "d2", At: now.Add(time.Second)}), // no key: the latest send
		dlv(audit.Receipt{ReachID: "r-nobody-" + user, EventID: "d3", At: now}),
		{Kind: audit.KindResponded, Outcome: "push_open", ReachID: reach, IdempotencyKey: first.IdempotencyKey, EventID: "o1", At: now.Add(2 * time.Second)},
	})
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	r, err := store.Get(ctx, reach)
	require.NoError(t, err)
	var got []string
	for _, rec := range r.Records {
		if rec.Kind == audit.KindDelivered || rec.Kind == audit.KindResponded {
			got = append(got, rec.Step+"/"+rec.Kind+"/"+rec.Channel+"/"+rec.EventID+"/"+rec.TraceID)
		}
	}
	require.Equal(t, []string{"send/delivered/push/d1/4bf92f3577b34da6a3ce929d0e0e4736",
		"retarget/delivered/sms/d2/4bf92f3577b34da6a3ce929d0e0e4736", "send/responded/push/o1/4bf92f3577b34da6a3ce929d0e0e4736"}, got)
	n, err = store.Receipts(ctx, []audit.Receipt{dlv(audit.Receipt{ReachID: reach, IdempotencyKey: first.IdempotencyKey, EventID: "d1", At: now})})
	require.NoError(t, err)
	require.Zero(t, n, "a replayed receipt")

	// Dated before the send, or an open the run recorded itself: nothing.
	_, err = store.Append(ctx, audit.Record{ReachID: reach, Step: "wait", Kind: audit.KindResponded, UserID: user, Outcome: "push_open",
		EventID: "o2", At: now.Add(3 * time.Second)})
	require.NoError(t, err)
	n, err = store.Receipts(ctx, []audit.Receipt{
		dlv(audit.Receipt{ReachID: reach, IdempotencyKey: first.IdempotencyKey, EventID: "d0", At: now.Add(-2 * time.Hour)}),
		{Kind: audit.KindResponded, Outcome: "push_open", ReachID: reach, EventID: "o2", At: now.Add(4 * time.Second)},
	})
	require.NoError(t, err)
	require.Zero(t, n)
}

// Concurrent callers' records all land, in shared statements, each caller returning once its
// records are durable; a caller whose records PostgreSQL refuses fails alone.
func TestBatcherConcurrentCallers(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	b := audit.NewBatcher(store)
	b.MaxRows = 7
	user := testenv.Unique("u")
	now := time.Now().UTC()
	callers := func(from, to int, bad bool) {
		var wg sync.WaitGroup
		for i := from; i < to; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reach := fmt.Sprintf("r-%d-%s", i, user)
				err := b.Append(context.Background(),
					audit.Record{ReachID: reach, Step: "match", Kind: audit.KindMatched, UserID: user, At: now},
					audit.Record{ReachID: reach, Step: "route", Kind: audit.KindRouted, UserID: user, At: now.Add(time.Millisecond)})
				if !assert(t, err == nil, "append: %v", err) {
					return
				}
				r, err := store.Get(context.Background(), reach)
				assert(t, err == nil && len(r.Records) == 2, "reach %s after Append: %v %d records", reach, err, len(r.Records))
			}()
		}
		if bad {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := b.Append(context.Background(), audit.Record{ReachID: "r-bad-" + user, Step: "match", Kind: audit.KindMatched,
					UserID: user, At: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)})
				assert(t, err != nil, "a time PostgreSQL cannot store fails its caller")
			}()
		}
		wg.Wait()
	}
	callers(0, 40, false)
	require.Less(t, b.Statements(), int64(40), "40 concurrent callers shared statements")
	callers(40, 50, true)
	var rows int
	require.NoError(t, store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM audit_records WHERE user_id = $1`, user).Scan(&rows))
	require.Equal(t, 100, rows)
}

func assert(t *testing.T, ok bool, format string, args ...any) bool {
	if !ok {
		t.Errorf(format, args...)
	}
	return ok
}

// Maintenance creates the days ahead (moving rows that waited in the default partition), drops
// the days past retention and purges such rows from the default partition, and their reaches'
// roll-ups; audit batches go after a week.
func TestMaintainPartitions(t *testing.T) {
	store := testenv.Require(t).FreshAudit(t)
	ctx := context.Background()
	now := time.Now().UTC()
	retention := 90 * 24 * time.Hour
	at := func(r audit.Record) string {
		var part string
		require.NoError(t, store.Pool().QueryRow(ctx, `SELECT tableoid::regclass::text FROM audit_records WHERE reach_id = $1`, r.ReachID).Scan(&part))
		return part
	}
	old := audit.Record{ReachID: "old", Step: "s", Kind: audit.KindDispatched, IdempotencyKey: "old/s/push", UserID: "u", At: now.Add(-100 * 24 * time.Hour)}
	later := audit.Record{ReachID: "later", Step: "s", Kind: audit.KindMatched, UserID: "u", At: now.Add(40 * 24 * time.Hour)}
	today := audit.Record{ReachID: "today", Step: "s", Kind: audit.KindMatched, UserID: "u", At: now, Batch: "run/1"}
	_, err := store.Append(ctx, old, later, today)
	require.NoError(t, err)
	batches := func() (n int) {
		require.NoError(t, store.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_batches`).Scan(&n))
		return n
	}
	require.Equal(t, 1, batches())
	require.Equal(t, "audit_records_default", at(later))
	require.Equal(t, "audit_records_"+now.Format("20060102"), at(today))

	rep, err := store.Maintain(ctx, now, retention)
	require.NoError(t, err)
	require.Empty(t, rep.Created, "the migration made yesterday to a week ahead")
	require.Empty(t, rep.Dropped)
	require.EqualValues(t, 1, rep.Purged, "the row older than retention, in the default partition")

	require.Equal(t, 1, batches(), "a batch is kept a week")
	rep, err = store.Maintain(ctx, now.Add(40*24*time.Hour), retention)
	require.NoError(t, err)
	require.Len(t, rep.Created, 9)
	require.Zero(t, batches(), "a batch is kept a week, not the retention")
	require.Equal(t, "audit_records_"+later.At.Format("20060102"), at(later), "moved out of the default partition")

	rep, err = store.Maintain(ctx, now.Add(120*24*time.Hour), retention)
	require.NoError(t, err)
	require.Contains(t, rep.Dropped, "audit_records_"+now.Format("20060102"))
	require.NotContains(t, rep.Dropped, "audit_records_"+now.Add(120*24*time.Hour).Format("20060102"))
	_, err = store.Get(ctx, "today")
	require.ErrorIs(t, err, audit.ErrNotFound)
	r, err := store.Get(ctx, "later")
	require.NoError(t, err, "80 days before the last pass's now: within retention")
	require.Len(t, r.Records, 1)

	var keys int
	require.NoError(t, store.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_dispatch_keys`).Scan(&keys))
	require.Zero(t, keys, "dispatch keys older than retention purged")
	var rollups []string
	require.NoError(t, store.Pool().QueryRow(ctx, `SELECT array_agg(reach_id) FROM audit_reaches`).Scan(&rollups))
	require.Equal(t, []string{"later"}, rollups, "reach roll-ups go with their records")

	_, err = store.Maintain(ctx, now, 0)
	require.Error(t, err)
}

// The tracking migrations carry a trail written before them: rows, ids and the journey version
// (from the routed row to the reach's other rows), and claimed dispatch keys.
func TestMigrateTrackingKeepsTheTrail(t *testing.T) {
	env := testenv.Require(t)
	u := env.FreshDB(t)
	require.NoError(t, store.MigrateTo(u, 9))
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, u)
	require.NoError(t, err)
	defer pool.Close()
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	_, err = pool.Exec(ctx, `INSERT INTO audit_records (reach_id, step, kind, user_id, journey_id, outcome, idempotency_key, at) VALUES
		('r1', 'match', 'matched', 'u1', 'j', '', '', $1),
		('r1', 'route', 'routed', 'u1', 'j', 'v2', '', $1 + interval '1 ms'),
		('r1', 'send', 'dispatched', 'u1', 'j', 'sent', 'r1/send/push', $1 + interval '2 ms'),
		('r2', 'match', 'matched', 'u1', 'j', '', '', $1 - interval '30 days')`, at)
	require.NoError(t, err)
	var maxID int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(id) FROM audit_records`).Scan(&maxID))

	require.NoError(t, store.Migrate(u))
	store := audit.NewStore(pool)
	r, err := store.Get(ctx, "r1")
	require.NoError(t, err)
	require.Len(t, r.Records, 3)
	for _, rec := range r.Records {
		require.Equal(t, 2, rec.JourneyVersion, rec.Kind)
	}
	old, err := store.Get(ctx, "r2")
	require.NoError(t, err, "a row of a day before the partitions kept")
	require.Len(t, old.Records, 1)

	// The dispatched key is claimed: the same key again under another step writes nothing.
	n, err := store.Append(ctx, audit.Record{ReachID: "r1", Step: "send-again", Kind: audit.KindDispatched, UserID: "u1",
		IdempotencyKey: "r1/send/push", At: at.Add(time.Second)})
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = store.Append(ctx, audit.Record{ReachID: "r3", Step: "match", Kind: audit.KindMatched, UserID: "u1", At: time.Now()})
	require.NoError(t, err)
	var newID int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM audit_records WHERE reach_id = 'r3'`).Scan(&newID))
	require.Greater(t, newID, maxID, "ids continue after the old table's")
}

// A split's holdout sends nothing, yet a goal after it converts it like a send: the control group
// of the path comparison (Lift) counts its conversions. Another split path converts only
// through its send.
func TestAttributeHoldout(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := journeyWithGoal(t, store, "2h")
	held, pathA := "r-held-"+user, "r-a-"+user
	split := func(reach, path string) audit.Record {
		return audit.Record{ReachID: reach, Step: "ab", Kind: audit.KindSplit, Outcome: path, UserID: user, RuleID: "r",
			JourneyID: j, JourneyVersion: 1, At: now.Add(-time.Hour)}
	}
	_, err := store.Append(ctx, split(held, "holdout"), split(pathA, "a"))
	require.NoError(t, err)
	n, err := store.Attribute(ctx, []audit.Goal{{UserID: user, Type: "order_paid", EventID: "o1", At: now}})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, []string{audit.KindSplit, audit.KindConverted}, kindsOf(t, store, held))
	require.Equal(t, []string{audit.KindSplit}, kindsOf(t, store, pathA), "a path that sent nothing is not converted")
}

// A reach the global control group held out converts like a send.
func TestAttributeHeldOut(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := journeyWithGoal(t, store, "2h")
	held := "r-held-" + user
	_, err := store.Append(ctx, audit.Record{ReachID: held, Step: "control", Kind: audit.KindHeldOut, Outcome: "control",
		UserID: user, RuleID: "r", JourneyID: j, JourneyVersion: 1, At: now.Add(-time.Hour)})
	require.NoError(t, err)
	n, err := store.Attribute(ctx, []audit.Goal{{UserID: user, Type: "order_paid", EventID: "o1", At: now}})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, []string{audit.KindHeldOut, audit.KindConverted}, kindsOf(t, store, held))
}
