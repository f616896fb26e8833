package api

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/audit"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// maxFunnelRange bounds one report query (a funnel, step counts, matches per hour).
const maxFunnelRange = 92 * 24 * time.Hour

// period is a report's range [from, to): the last 24 hours when unset, at most maxFunnelRange.
func (s *server) period(from, to *timestamppb.Timestamp) (time.Time, time.Time, error) {
	end := s.now()
	out := [2]time.Time{end.Add(-24 * time.Hour), end}
	for i, ts := range []struct {
		field string
		v     *timestamppb.Timestamp
	}{{"from", from}, {"to", to}} {
		if ts.v == nil {
			continue
		}
		if err := ts.v.CheckValid(); err != nil {
			return time.Time{}, time.Time{}, invalid(ts.field, "%v", err)
		}
		out[i] = ts.v.AsTime()
	}
	switch {
	case !out[0].Before(out[1]):
		return time.Time{}, time.Time{}, invalid("from", "must be before to")
	case out[1].Sub(out[0]) > maxFunnelRange:
		return time.Time{}, time.Time{}, invalid("from", "the range is longer than %d days", int(maxFunnelRange.Hours()/24))
	}
	return out[0], out[1], nil
}

// JourneySteps counts a journey's reaches per step, from the audit trail.
func (s *server) JourneySteps(ctx context.Context, req *connect.Request[omegav1.JourneyStepsRequest]) (*connect.Response[omegav1.JourneyStepsResponse], error) {
	m := req.Msg
	if err := checkID("journey_id", m.GetJourneyId()); err != nil {
		return nil, err
	}
	if m.GetJourneyVersion() < 0 {
		return nil, invalid("journey_version", "must not be negative")
	}
	from, to, err := s.period(m.GetFrom(), m.GetTo())
	if err != nil {
		return nil, err
	}
	steps, err := s.audit.StepCounts(ctx, audit.StepQuery{JourneyID: m.GetJourneyId(), JourneyVersion: int(m.GetJourneyVersion()), From: from, To: to})
	if err != nil {
		return nil, s.internal("count journey steps", err)
	}
	out := &omegav1.JourneyStepsResponse{}
	for _, c := range steps {
		out.Steps = append(out.Steps, &omegav1.StepCount{Step: c.Step, Entered: c.Entered, Waited: c.Waited, Sent: c.Sent,
			Dropped: c.Dropped, DroppedBy: c.DroppedBy, Failed: c.Failed, Converted: c.Converted, Outcomes: c.Outcomes})
	}
	return connect.NewResponse(out), nil
}

// maxRuleMatches bounds the rules of one RuleMatches call.
const maxRuleMatches = 100

// RuleMatches counts rules' live and shadow matches per hour.
func (s *server) RuleMatches(ctx context.Context, req *connect.Request[omegav1.RuleMatchesRequest]) (*connect.Response[omegav1.RuleMatchesResponse], error) {
	m := req.Msg
	if n := len(m.GetRuleIds()); n == 0 || n > maxRuleMatches {
		return nil, invalid("rule_ids", "give 1 to %d rules", maxRuleMatches)
	}
	for _, id := range m.GetRuleIds() {
		if err := checkID("rule_ids", id); err != nil {
			return nil, err
		}
	}
	from, to, err := s.period(m.GetFrom(), m.GetTo())
	if err != nil {
		return nil, err
	}
	hours, err := s.audit.MatchesPerHour(ctx, audit.MatchQuery{RuleIDs: m.GetRuleIds(), From: from, To: to})
	if err != nil {
		return nil, s.internal("count matches per hour", err)
	}
	out := &omegav1.RuleMatchesResponse{}
	for _, h := range hours {
		out.Hours = append(out.Hours, &omegav1.MatchHour{RuleId: h.RuleID, Hour: timestamppb.New(h.Hour), Live: h.Live, Shadow: h.Shadow})
	}
	return connect.NewResponse(out), nil
}
