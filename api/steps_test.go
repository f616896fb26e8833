package api_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/testenv"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

func TestJourneyStepsAndRuleMatchesReject(t *testing.T) {
	srv := serve(t, api.Config{Audit: audit.NewStore(nil)})
	c := omegav1connect.NewReachServiceClient(keyed(srv, readKey), srv.URL)
	ctx := context.Background()
	now := time.Now()
	for field, req := range map[string]*omegav1.JourneyStepsRequest{
		"journey_id":      {},
		"journey_version": {JourneyId: "j", JourneyVersion: -1},
		"from":            {JourneyId: "j", From: timestamppb.New(now), To: timestamppb.New(now.Add(-time.Hour))},
	} {
		_, err := c.JourneySteps(ctx, connect.NewRequest(req))
		requireInvalid(t, err, field)
	}
	_, err := c.RuleMatches(ctx, connect.NewRequest(&omegav1.RuleMatchesRequest{}))
	requireInvalid(t, err, "rule_ids")
	_, err = c.RuleMatches(ctx, connect.NewRequest(&omegav1.RuleMatchesRequest{RuleIds: []string{"a/b"}}))
	requireInvalid(t, err, "rule_ids")
	_, err = c.RuleMatches(ctx, connect.NewRequest(&omegav1.RuleMatchesRequest{RuleIds: []string{"r"}, From: timestamppb.New(now.Add(-200 * 24 * time.Hour))}))
	requireInvalid(t, err, "from")
	_, err = c.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: "j", SplitPath: string(make([]byte, 300))}))
	requireInvalid(t, err, "split_path")
}

// Step counts, matches per hour and a split path's funnel, over the real audit table, through the API.
func TestJourneyStepsAndRuleMatches(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	srv := serve(t, api.Config{Audit: store})
	c := omegav1connect.NewReachServiceClient(keyed(srv, readKey), srv.URL)
	ctx := context.Background()
	jid, rule, user := testenv.Unique("sj-"), testenv.Unique("sr-"), testenv.Unique("su-")
	at := time.Now().Add(-time.Minute).UTC()
	r := func(id, step, kind, outcome, reason string, d time.Duration) audit.Record {
		return audit.Record{ReachID: id, Step: step, Kind: kind, Outcome: outcome, Reason: reason, UserID: user, RuleID: rule, JourneyID: jid, At: at.Add(d)}
	}
	_, err := store.Append(ctx,
		r("reach/r/"+user+"/1", "match", audit.KindMatched, "", "", 0),
		r("reach/r/"+user+"/1", "ab", audit.KindSplit, "a", "", time.Second),
		r("reach/r/"+user+"/1", "push", audit.KindDispatched, "sent", "provider 200", 2*time.Second),
		r("reach/r/"+user+"/2", "match", audit.KindMatched, "", "", 3*time.Second),
		r("reach/r/"+user+"/2", "ab", audit.KindSplit, "b", "", 4*time.Second),
		r("reach/r/"+user+"/2", "push", audit.KindSuppressed, "drop", "drop by blacklist: listed", 5*time.Second),
		r("reach/r/"+user+"/3", "match", audit.KindShadowMatched, "", "", 6*time.Second))
	require.NoError(t, err)

	st, err := c.JourneySteps(ctx, connect.NewRequest(&omegav1.JourneyStepsRequest{JourneyId: jid}))
	require.NoError(t, err)
	steps := map[string]*omegav1.StepCount{}
	for _, s := range st.Msg.GetSteps() {
		steps[s.GetStep()] = s
	}
	require.Equal(t, (&omegav1.StepCount{Step: "ab", Entered: 2, Outcomes: map[string]int64{"a": 1, "b": 1}}).String(), steps["ab"].String())
	require.Equal(t, (&omegav1.StepCount{Step: "push", Entered: 2, Sent: 1, Dropped: 1, DroppedBy: map[string]int64{"blacklist": 1}}).String(),
		steps["push"].String())

	f, err := c.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: jid, SplitPath: "b"}))
	require.NoError(t, err)
	require.EqualValues(t, 1, f.Msg.GetMatched())
	require.EqualValues(t, 0, f.Msg.GetSent(), "path b's one reach was dropped")
	f, err = c.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: jid}))
	require.NoError(t, err)
	lift := f.Msg.GetLift()
	require.Len(t, lift, 2, "a path each, in path order")
	require.Equal(t, []string{"a", "b"}, []string{lift[0].GetPath(), lift[1].GetPath()})
	require.EqualValues(t, 1, lift[0].GetReached())
	require.False(t, lift[0].GetCompared() || lift[0].GetWins(), "no holdout: nothing to compare with")

	m, err := c.RuleMatches(ctx, connect.NewRequest(&omegav1.RuleMatchesRequest{RuleIds: []string{rule}}))
	require.NoError(t, err)
	var live, shadow int64
	for _, h := range m.Msg.GetHours() {
		require.Equal(t, rule, h.GetRuleId())
		live, shadow = live+h.GetLive(), shadow+h.GetShadow()
	}
	require.EqualValues(t, 2, live)
	require.EqualValues(t, 1, shadow)
}
