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

func TestFunnelAndTimelineReject(t *testing.T) {
	srv := serve(t, api.Config{Audit: audit.NewStore(nil)})
	c := omegav1connect.NewReachServiceClient(keyed(srv, readKey), srv.URL)
	ctx := context.Background()
	now := time.Now()
	for field, req := range map[string]*omegav1.FunnelRequest{
		"rule_id":         {},
		"journey_version": {JourneyId: "j", JourneyVersion: -1},
		"from":            {JourneyId: "j", From: timestamppb.New(now), To: timestamppb.New(now.Add(-time.Hour))},
		"to":              {JourneyId: "j", To: &timestamppb.Timestamp{Seconds: -1 << 62}},
	} {
		_, err := c.Funnel(ctx, connect.NewRequest(req))
		requireInvalid(t, err, field)
	}
	_, err := c.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: "j", From: timestamppb.New(now.Add(-200 * 24 * time.Hour))}))
	requireInvalid(t, err, "from")
	_, err = c.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{}))
	requireInvalid(t, err, "user_id")
	_, err = c.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: "u", PageSize: -1}))
	requireInvalid(t, err, "page_size")
}

// The read models over the real audit table, through the API.
func TestFunnelAndTimeline(t *testing.T) {
	env := testenv.Require(t)
	store := env.Audit(t)
	quiet := testenv.Unique("fq-") // a journey that exists and reached nobody yet
	srv := serve(t, api.Config{Audit: store, Journeys: func(id string) bool { return id == quiet }})
	c := omegav1connect.NewReachServiceClient(keyed(srv, readKey), srv.URL)
	ctx := context.Background()
	jid, user := testenv.Unique("fj-"), testenv.Unique("fu-")
	at := time.Now().Add(-time.Minute).UTC()
	r := func(id, step, kind, outcome, reason string, d time.Duration) audit.Record {
		return audit.Record{ReachID: id, Step: step, Kind: kind, Outcome: outcome, Reason: reason, UserID: user, RuleID: "r", JourneyID: jid, At: at.Add(d)}
	}
	_, err := store.Append(ctx,
		r("reach/r/"+user+"/1", "match", audit.KindMatched, "", "", 0),
		r("reach/r/"+user+"/1", "push", audit.KindDispatched, "sent", "provider 200", time.Second),
		r("reach/r/"+user+"/1", "end", audit.KindCompleted, "sent", "", 2*time.Second),
		r("reach/r/"+user+"/2", "match", audit.KindMatched, "", "", 3*time.Second),
		r("reach/r/"+user+"/2", "push", audit.KindFiltered, "drop", "drop by blacklist: listed", 4*time.Second),
		r("reach/r/"+user+"/2", "end", audit.KindCompleted, "suppressed", "", 5*time.Second))
	require.NoError(t, err)

	f, err := c.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: jid}))
	require.NoError(t, err)
	require.Equal(t, (&omegav1.FunnelResponse{Matched: 2, Sent: 1, Suppressed: 1, SuppressedBy: map[string]int64{"blacklist": 1}}).String(), f.Msg.String(),
		"a journey since removed keeps its funnel")
	f, err = c.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: quiet}))
	require.NoError(t, err)
	require.Zero(t, f.Msg.GetMatched(), "a journey that reached nobody yet: an empty funnel")
	_, err = c.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: "no-such-journey"}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "an unknown journey: %v", err)
	require.Contains(t, err.Error(), "journey_id")

	tl, err := c.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: user, PageSize: 4}))
	require.NoError(t, err)
	require.Len(t, tl.Msg.GetRecords(), 4)
	require.Equal(t, "reach/r/"+user+"/2", tl.Msg.GetRecords()[0].GetReachId())
	require.Equal(t, "completed", tl.Msg.GetRecords()[0].GetRecord().GetKind())
	tl, err = c.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: user, PageSize: 4, PageToken: tl.Msg.GetNextPageToken()}))
	require.NoError(t, err)
	require.Len(t, tl.Msg.GetRecords(), 2)
	require.Empty(t, tl.Msg.GetNextPageToken())
}
