package api

import (
	"context"
	"errors"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/event"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/workflows"
)

const maxKeyLen = 200

// Trigger starts a journey for a user; the same idempotency key twice is one reach.
func (s *server) Trigger(ctx context.Context, req *connect.Request[omegav1.TriggerRequest]) (*connect.Response[omegav1.TriggerResponse], error) {
	m := req.Msg
	if err := checkID("user_id", m.GetUserId()); err != nil {
		return nil, err
	}
	if err := checkID("idempotency_key", m.GetIdempotencyKey()); err != nil {
		return nil, err
	}
	if m.GetJourneyId() == "" {
		return nil, invalid("journey_id", "required")
	}
	if !s.journeys(m.GetJourneyId()) {
		return nil, invalid("journey_id", "no journey %q", m.GetJourneyId())
	}
	match := workflows.Match{RuleID: workflows.APIRuleID, UserID: m.GetUserId(), JourneyID: m.GetJourneyId(),
		MatchKey: m.GetIdempotencyKey(), MatchedAt: s.now().UTC()}
	if m.GetAttrs() != nil {
		match.Attrs = m.GetAttrs().AsMap()
	}
	opts := workflows.StartOptions(match, s.taskQueue)
	id := opts.ID
	_, err := s.temporal.ExecuteWorkflow(ctx, opts, workflows.ReachWorkflow, workflows.ReachInput{Match: match})
	created := true
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		created, err = false, nil
	}
	if err != nil {
		return nil, s.internal("start reach", err)
	}
	return connect.NewResponse(&omegav1.TriggerResponse{ReachId: id, Created: created}), nil
}

// Cancel signals an open reach to stop; its trail records the reason.
func (s *server) Cancel(ctx context.Context, req *connect.Request[omegav1.CancelRequest]) (*connect.Response[omegav1.CancelResponse], error) {
	if err := checkReachID(req.Msg.GetReachId()); err != nil {
		return nil, err
	}
	reason := req.Msg.GetReason()
	if reason == "" {
		reason = "cancelled through the API"
	}
	err := s.temporal.SignalWorkflow(ctx, req.Msg.GetReachId(), "", workflows.SignalCancel, workflows.CancelSignal{Reason: reason})
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("reach_id: no open reach with this ID (unknown or already finished)"))
		}
		return nil, s.internal("cancel reach", err)
	}
	return connect.NewResponse(&omegav1.CancelResponse{}), nil
}

// Get returns one reach with its audit trail.
func (s *server) Get(ctx context.Context, req *connect.Request[omegav1.GetRequest]) (*connect.Response[omegav1.GetResponse], error) {
	id := req.Msg.GetReachId()
	if err := checkReachID(id); err != nil {
		return nil, err
	}
	r, err := s.audit.Get(ctx, id)
	if errors.Is(err, audit.ErrNotFound) {
		// Started but nothing audited yet: the run itself says so.
		if _, derr := s.temporal.DescribeWorkflowExecution(ctx, id, ""); derr == nil {
			return connect.NewResponse(&omegav1.GetResponse{Reach: &omegav1.Reach{ReachId: id, Status: workflows.StatusRunning}}), nil
		}
	}
	if err != nil {
		return nil, s.internal("get reach", err)
	}
	return connect.NewResponse(&omegav1.GetResponse{Reach: toProto(r)}), nil
}

// List returns a user's reaches, newest first.
func (s *server) List(ctx context.Context, req *connect.Request[omegav1.ListRequest]) (*connect.Response[omegav1.ListResponse], error) {
	m := req.Msg
	if err := checkID("user_id", m.GetUserId()); err != nil {
		return nil, err
	}
	size := int(m.GetPageSize())
	switch {
	case size < 0:
		return nil, invalid("page_size", "must not be negative")
	case size == 0:
		size = 20
	case size > 100:
		size = 100
	}
	rs, next, err := s.audit.ListByUser(ctx, m.GetUserId(), size, m.GetPageToken())
	if errors.Is(err, audit.ErrBadPageToken) {
		return nil, invalid("page_token", "not a token from a previous List")
	}
	if err != nil {
		return nil, s.internal("list reaches", err)
	}
	out := &omegav1.ListResponse{NextPageToken: next}
	for _, r := range rs {
		out.Reaches = append(out.Reaches, toProto(r))
	}
	return connect.NewResponse(out), nil
}

func checkID(field, v string) error {
	switch {
	case v == "":
		return invalid(field, "required")
	case len(v) > maxKeyLen:
		return invalid(field, "longer than %d bytes", maxKeyLen)
	case strings.ContainsAny(v, "/{}"):
		return invalid(field, "must not contain '/', '{' or '}'")
	}
	return nil
}

func checkReachID(id string) error {
	if id == "" {
		return invalid("reach_id", "required")
	}
	if !strings.HasPrefix(id, "reach/") || len(id) > 1000 {
		return invalid("reach_id", "not a reach ID (reach/<rule>/<user>/<key>)")
	}
	return nil
}

func toProto(r audit.Reach) *omegav1.Reach {
	out := &omegav1.Reach{
		ReachId: r.ID, UserId: r.UserID, RuleId: r.RuleID, JourneyId: r.JourneyID, Status: r.Status,
		Channel: r.Channel, StartedAt: timestamppb.New(r.StartedAt), UpdatedAt: timestamppb.New(r.UpdatedAt),
	}
	for _, rec := range r.Records {
		out.Audit = append(out.Audit, &omegav1.AuditRecord{
			Step: rec.Step, Kind: rec.Kind, Outcome: rec.Outcome, Reason: rec.Reason, Channel: rec.Channel,
			IdempotencyKey: rec.IdempotencyKey, At: timestamppb.New(rec.At),
		})
	}
	return out
}

// Signal records a response for one open reach.
func (s *server) Signal(ctx context.Context, req *connect.Request[omegav1.SignalRequest]) (*connect.Response[omegav1.SignalResponse], error) {
	m := req.Msg
	if err := checkReachID(m.GetReachId()); err != nil {
		return nil, err
	}
	if !slices.Contains(event.ResponseTypes, m.GetEventType()) {
		return nil, invalid("event_type", "%q is not a response event (%s)", m.GetEventType(), strings.Join(event.ResponseTypes, ", "))
	}
	if err := checkID("event_id", m.GetEventId()); err != nil {
		return nil, err
	}
	at := s.now().UTC()
	if m.GetTs() != nil {
		if err := m.GetTs().CheckValid(); err != nil {
			return nil, invalid("ts", "%v", err)
		}
		at = m.GetTs().AsTime()
	}
	r := workflows.Response{EventID: m.GetEventId(), Type: m.GetEventType(), At: at}
	if m.GetAttrs() != nil {
		r.Attrs = m.GetAttrs().AsMap()
	}
	if err := s.temporal.SignalWorkflow(ctx, m.GetReachId(), "", workflows.SignalResponse, r); err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("reach_id: no open reach with this ID (unknown or already finished)"))
		}
		return nil, s.internal("signal reach", err)
	}
	return connect.NewResponse(&omegav1.SignalResponse{}), nil
}
