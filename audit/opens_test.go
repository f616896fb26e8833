package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/testenv"
)

func TestOpenTimes(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	ctx := context.Background()
	user, other := testenv.Unique("open-u-"), testenv.Unique("open-o-")
	base := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Millisecond)
	rec := func(u, kind, outcome string, at time.Time) audit.Record {
		return audit.Record{ReachID: "reach/r/" + u + "/k", Step: "s", Kind: kind, Outcome: outcome, UserID: u, RuleID: "r", At: at}
	}
	_, err := store.Append(ctx,
		rec(user, audit.KindResponded, "push_open", base),
		rec(user, audit.KindResponded, "push_open", base.Add(2*time.Hour)),
		rec(user, audit.KindResponded, "inapp_open", base.Add(3*time.Hour)),
		rec(user, audit.KindResponded, "order_paid", base.Add(4*time.Hour)), // a response, not an open
		rec(user, audit.KindDispatched, "sent", base.Add(5*time.Hour)),      // not a response
		rec(user, audit.KindResponded, "push_open", base.Add(-100*24*time.Hour)),
		rec(other, audit.KindResponded, "push_open", base.Add(time.Hour)),
	)
	require.NoError(t, err)

	since := base.Add(-90 * 24 * time.Hour)
	got, err := store.OpenTimes(ctx, user, []string{"push_open"}, since, 100)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.True(t, got[0].Equal(base.Add(2*time.Hour)), "newest first")
	require.True(t, got[1].Equal(base))

	got, err = store.OpenTimes(ctx, user, []string{"push_open", "inapp_open"}, since, 2)
	require.NoError(t, err)
	require.Len(t, got, 2, "at most limit")
	require.True(t, got[0].Equal(base.Add(3*time.Hour)))
}
