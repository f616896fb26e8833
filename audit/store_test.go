package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/testenv"
)

// t0 is whole microseconds: PostgreSQL keeps no finer time, and records must compare equal.
var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func rec(reachID, user, step, kind string, at time.Time) audit.Record {
	return audit.Record{ReachID: reachID, UserID: user, RuleID: "cart-add", JourneyID: "cart-reminder",
		Step: step, Kind: kind, At: at}
}

func TestAppendIsIdempotent(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	id := "reach/cart-add/" + user + "/e1"
	matched := rec(id, user, "match", audit.KindMatched, t0)
	matched.Reason = "rule cart-add matched"

	n, err := store.Append(ctx, matched)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	n, err = store.Append(ctx, matched)
	require.NoError(t, err)
	require.EqualValues(t, 0, n, "a replayed record adds no row")

	// A batch with one old and one new record adds only the new one.
	routed := rec(id, user, "route", audit.KindRouted, t0.Add(time.Second))
	n, err = store.Append(ctx, matched, routed)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	r, err := store.Get(ctx, id)
	require.NoError(t, err)
	require.Len(t, r.Records, 2)
	require.Equal(t, audit.KindMatched, r.Records[0].Kind)
	require.Equal(t, "rule cart-add matched", r.Records[0].Reason)
	require.True(t, t0.Equal(r.Records[0].At))
	require.Equal(t, audit.KindRouted, r.Records[1].Kind)

	n, err = store.Append(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}

// Another attempt of a workflow task writes its batch again at its own time: the records already
// in are not written twice, those past them are, and other batches are untouched.
func TestAppendWritesABatchOnce(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	id := "reach/cart-add/" + user + "/e1"
	batch := func(b string, at time.Time, kinds ...string) []audit.Record {
		var out []audit.Record
		for i, k := range kinds {
			r := rec(id, user, "s"+k, k, at.Add(time.Duration(i)*time.Millisecond))
			r.Batch, r.Index = b, i
			out = append(out, r)
		}
		return out
	}
	run := testenv.Unique("run-")
	n, err := store.Append(ctx, batch(run+"/1", t0, audit.KindRouted, audit.KindFiltered)...)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	// The task's next attempt, ten seconds later, saw one more record (a signal in between).
	n, err = store.Append(ctx, batch(run+"/1", t0.Add(10*time.Second), audit.KindRouted, audit.KindFiltered, audit.KindCancelled)...)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "only the record past those in")
	n, err = store.Append(ctx, batch(run+"/1", t0.Add(20*time.Second), audit.KindRouted)...)
	require.NoError(t, err)
	require.Zero(t, n, "an attempt with fewer records writes none")
	// The run's next batch, and the same batch name of another run, are written.
	n, err = store.Append(ctx, batch(run+"/2", t0.Add(time.Minute), audit.KindCompleted)...)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	n, err = store.Append(ctx, batch(testenv.Unique("run-")+"/1", t0.Add(2*time.Minute), audit.KindRouted)...)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	r, err := store.Get(ctx, id)
	require.NoError(t, err)
	var kinds []string
	for _, x := range r.Records {
		kinds = append(kinds, x.Kind)
	}
	require.Equal(t, []string{audit.KindRouted, audit.KindFiltered, audit.KindCancelled, audit.KindCompleted, audit.KindRouted}, kinds)
	require.True(t, t0.Equal(r.Records[0].At), "the first attempt's records stand")
}

// No second dispatched row for one idempotency key, even under another step name.
func TestAppendRefusesSecondDispatch(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	id := "reach/cart-add/" + user + "/e1"
	key := id + "/send/webhook"

	first := rec(id, user, "send", audit.KindDispatched, t0)
	first.IdempotencyKey = key
	n, err := store.Append(ctx, first)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	second := rec(id, user, "send-again", audit.KindDispatched, t0.Add(time.Second))
	second.IdempotencyKey = key
	n, err = store.Append(ctx, second)
	require.NoError(t, err)
	require.EqualValues(t, 0, n)

	// Other kinds may share the key (a failed attempt, then the send).
	failed := rec(id, user, "send", audit.KindFailed, t0.Add(2*time.Second))
	failed.IdempotencyKey = key
	n, err = store.Append(ctx, failed)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	r, err := store.Get(ctx, id)
	require.NoError(t, err)
	var dispatched int
	for _, rc := range r.Records {
		if rc.Kind == audit.KindDispatched {
			dispatched++
			require.Equal(t, "send", rc.Step)
		}
	}
	require.Equal(t, 1, dispatched)
}

func TestGetUnknown(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	_, err := store.Get(context.Background(), "reach/none/"+testenv.Unique("u")+"/k")
	require.ErrorIs(t, err, audit.ErrNotFound)
}

func TestGetFoldsStatus(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")

	completed := rec("reach/cart-add/"+user+"/done", user, "end", audit.KindCompleted, t0.Add(3*time.Second))
	completed.Outcome, completed.Channel = "sent", "webhook"
	cancelled := rec("reach/cart-add/"+user+"/stopped", user, "end", audit.KindCancelled, t0.Add(3*time.Second))
	cancelled.Outcome = "cancelled"
	dispatched := rec("reach/cart-add/"+user+"/open", user, "send", audit.KindDispatched, t0.Add(2*time.Second))
	dispatched.Outcome, dispatched.Channel = "sent", "webhook"

	tests := []struct {
		name        string
		recs        []audit.Record
		want        string
		wantChannel string
	}{
		{
			name: "completed",
			recs: []audit.Record{
				rec(completed.ReachID, user, "match", audit.KindMatched, t0),
				rec(completed.ReachID, user, "route", audit.KindRouted, t0.Add(time.Second)),
				completed,
			},
			want: "sent", wantChannel: "webhook",
		},
		{
			name: "cancelled",
			recs: []audit.Record{rec(cancelled.ReachID, user, "match", audit.KindMatched, t0), cancelled},
			want: "cancelled",
		},
		{
			name: "not completed is running",
			recs: []audit.Record{rec(dispatched.ReachID, user, "match", audit.KindMatched, t0), dispatched},
			want: "running", wantChannel: "webhook",
		},
		{
			name: "a wait begun is waiting",
			recs: []audit.Record{rec("reach/cart-add/"+user+"/w1", user, "match", audit.KindMatched, t0),
				rec("reach/cart-add/"+user+"/w1", user, "wait_open", audit.KindWaiting, t0.Add(time.Second))},
			want: "waiting",
		},
		{
			name: "a receipt or a conversion beside the steps leaves it waiting",
			recs: []audit.Record{rec("reach/cart-add/"+user+"/w2", user, "match", audit.KindMatched, t0),
				rec("reach/cart-add/"+user+"/w2", user, "wait_open", audit.KindWaiting, t0.Add(time.Second)),
				rec("reach/cart-add/"+user+"/w2", user, "push", audit.KindDelivered, t0.Add(2*time.Second))},
			want: "waiting",
		},
		{
			name: "a wait ended is running",
			recs: []audit.Record{rec("reach/cart-add/"+user+"/w3", user, "match", audit.KindMatched, t0),
				rec("reach/cart-add/"+user+"/w3", user, "wait_open", audit.KindWaiting, t0.Add(time.Second)),
				rec("reach/cart-add/"+user+"/w3", user, "wait_open", audit.KindTimedOut, t0.Add(2*time.Second))},
			want: "running",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.Append(ctx, tt.recs...)
			require.NoError(t, err)
			r, err := store.Get(ctx, tt.recs[0].ReachID)
			require.NoError(t, err)
			require.Equal(t, tt.want, r.Status)
			require.Equal(t, tt.wantChannel, r.Channel)
			require.Equal(t, user, r.UserID)
			require.Equal(t, "cart-add", r.RuleID)
			require.Equal(t, "cart-reminder", r.JourneyID)
			require.True(t, t0.Equal(r.StartedAt), "started at %v", r.StartedAt)
			require.True(t, tt.recs[len(tt.recs)-1].At.Equal(r.UpdatedAt), "updated at %v", r.UpdatedAt)
			require.Len(t, r.Records, len(tt.recs))
			// List says what Get says, and filters by it; running keeps the waiting too.
			rs, _, err := store.List(ctx, audit.Query{UserID: user, Status: tt.want, Limit: 100})
			require.NoError(t, err)
			var listed []string
			for _, l := range rs {
				if tt.want == "running" && l.Status == "waiting" {
					continue
				}
				require.Equal(t, tt.want, l.Status)
				listed = append(listed, l.ID)
			}
			require.Contains(t, listed, r.ID)
			if tt.want == "waiting" {
				rs, _, err := store.List(ctx, audit.Query{UserID: user, Status: "running", Limit: 100})
				require.NoError(t, err)
				listed = nil
				for _, l := range rs {
					listed = append(listed, l.ID)
				}
				require.Contains(t, listed, r.ID, "a waiting reach is still in progress")
			}
		})
	}
}

func TestListByUserPages(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")

	// Five reaches, started a minute apart; each has two records.
	var ids []string
	for i := range 5 {
		id := "reach/cart-add/" + user + "/e" + string(rune('a'+i))
		ids = append(ids, id)
		start := t0.Add(time.Duration(i) * time.Minute)
		done := rec(id, user, "end", audit.KindCompleted, start.Add(time.Second))
		done.Outcome = "sent"
		_, err := store.Append(ctx, rec(id, user, "match", audit.KindMatched, start), done)
		require.NoError(t, err)
	}
	// Another user's reach never shows.
	other := testenv.Unique("u")
	_, err := store.Append(ctx, rec("reach/cart-add/"+other+"/e", other, "match", audit.KindMatched, t0.Add(2*time.Minute)))
	require.NoError(t, err)

	var (
		got   []string
		sizes []int
		token string
	)
	for page := 0; ; page++ {
		require.Less(t, page, 5, "paging does not end")
		rs, next, err := store.ListByUser(ctx, user, 2, token)
		require.NoError(t, err)
		sizes = append(sizes, len(rs))
		for _, r := range rs {
			require.Equal(t, user, r.UserID)
			require.Len(t, r.Records, 2, "a listed reach carries all its records")
			require.Equal(t, "sent", r.Status)
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	require.Equal(t, []int{2, 2, 1}, sizes)
	require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, got, "newest first, no overlap, none missing")

	// A page size that fits everything has no next page.
	rs, next, err := store.ListByUser(ctx, user, 5, "")
	require.NoError(t, err)
	require.Len(t, rs, 5)
	require.Empty(t, next)

	rs, next, err = store.ListByUser(ctx, testenv.Unique("nobody"), 2, "")
	require.NoError(t, err)
	require.Empty(t, rs)
	require.Empty(t, next)
}

// Reaches that started at the same instant still page without overlap or gap.
func TestListByUserTies(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	want := map[string]bool{}
	for i := range 3 {
		id := "reach/cart-add/" + user + "/e" + string(rune('a'+i))
		want[id] = true
		_, err := store.Append(ctx, rec(id, user, "match", audit.KindMatched, t0))
		require.NoError(t, err)
	}
	got := map[string]bool{}
	token := ""
	for page := 0; page < 4; page++ {
		rs, next, err := store.ListByUser(ctx, user, 1, token)
		require.NoError(t, err)
		for _, r := range rs {
			require.False(t, got[r.ID], "%s listed twice", r.ID)
			got[r.ID] = true
		}
		if next == "" {
			break
		}
		token = next
	}
	require.Equal(t, want, got)
}

func TestListByUserBadToken(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	tests := []struct {
		name  string
		token string
	}{
		{name: "not base64", token: "%%%"},
		{name: "no separator", token: "bm90LWEtdG9rZW4"},  // "not-a-token"
		{name: "bad time", token: "eWVzdGVyZGF5fHJlYWNo"}, // "yesterday|reach"
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := store.ListByUser(context.Background(), testenv.Unique("u"), 2, tt.token)
			require.ErrorIs(t, err, audit.ErrBadPageToken)
		})
	}
}

// A provider's answer quoting the number it refused is stored masked.
func TestAppendMasksPersonalData(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user := testenv.Unique("u")
	id := "reach/r/" + user + "/m"
	_, err := store.Append(ctx, audit.Record{ReachID: id, Step: "sms", Kind: audit.KindFailed, UserID: user, Channel: "sms",
		Reason: "provider 400: +4915112345678 is not a mobile number (ann@example.com)", At: time.Now()})
	require.NoError(t, err)
	r, err := store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "provider 400: +49*********78 is not a mobile number (a***@example.com)", r.Records[0].Reason)
}
