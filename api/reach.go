package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/tracing"
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
		return nil, invalid("journey_id", "no active journey %q (unknown, or disabled: omega journeys list)", m.GetJourneyId())
	}
	ctx, span := traced(ctx, req.Header(), "omega.Trigger")
	defer span.End()
	now := s.now().UTC()
	match := workflows.Match{RuleID: workflows.APIRuleID, UserID: m.GetUserId(), JourneyID: m.GetJourneyId(),
		MatchKey: m.GetIdempotencyKey(), MatchedAt: now, ReceivedAt: now,
		TraceID: tracing.ID(ctx), TraceParent: traceParent(ctx)}
	if m.GetAttrs() != nil {
		match.Attrs = m.GetAttrs().AsMap()
	}
	opts := workflows.StartOptions(match, s.taskQueue)
	id := opts.ID
	_, err := s.temporal.ExecuteWorkflow(ctx, opts, workflows.ReachWorkflow, workflows.NewReachInput(match))
	created := true
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &already):
		metrics.WorkflowStarts.WithLabelValues("api", "duplicate").Inc()
		created, err = false, s.sameJourney(ctx, id, m.GetJourneyId())
	case err != nil:
		metrics.WorkflowStarts.WithLabelValues("api", "error").Inc()
	default:
		metrics.WorkflowStarts.WithLabelValues("api", "started").Inc()
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return nil, err
	}
	if err != nil {
		return nil, s.internal("start reach", err)
	}
	return connect.NewResponse(&omegav1.TriggerResponse{ReachId: id, Created: created}), nil
}

// sameJourney refuses an idempotency key used before for another journey: the caller means a
// different reach and must not get the old one back as if it were theirs.
func (s *server) sameJourney(ctx context.Context, id, journeyID string) error {
	d, err := s.temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return err
	}
	p := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[workflows.SearchJourneyID.GetName()]
	var got string
	if p == nil || converter.GetDefaultDataConverter().FromPayload(p, &got) != nil || got == journeyID {
		return nil
	}
	return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("idempotency_key: already used for journey %q", got))
}

// Cancel signals one open reach, or every open reach of a user for a rule or journey, to stop;
// each one's trail records the reason.
func (s *server) Cancel(ctx context.Context, req *connect.Request[omegav1.CancelRequest]) (*connect.Response[omegav1.CancelResponse], error) {
	m := req.Msg
	reason := m.GetReason()
	if reason == "" {
		reason = "cancelled through the API"
	}
	if len(reason) > 500 {
		return nil, invalid("reason", "longer than 500 bytes")
	}
	var ids []string
	var truncated bool
	if m.GetReachId() != "" {
		if m.GetUserId() != "" || m.GetRuleId() != "" || m.GetJourneyId() != "" {
			return nil, invalid("reach_id", "give either reach_id, or user_id with rule_id and/or journey_id, not both")
		}
		if err := checkReachID(m.GetReachId()); err != nil {
			return nil, err
		}
		ids = []string{m.GetReachId()}
	} else {
		var err error
		if ids, truncated, err = s.openReaches(ctx, m.GetUserId(), m.GetRuleId(), m.GetJourneyId()); err != nil {
			return nil, err
		}
	}
	out := &omegav1.CancelResponse{Truncated: truncated}
	for _, id := range ids {
		err := s.temporal.SignalWorkflow(ctx, id, "", workflows.SignalCancel, workflows.CancelSignal{Reason: reason})
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf) && m.GetReachId() != "":
			return nil, s.notOpen(ctx, id)
		case errors.As(err, &nf):
			continue // finished since the listing
		case err != nil:
			return nil, s.internal("cancel reach", err)
		}
		out.Cancelled = append(out.Cancelled, id)
	}
	return connect.NewResponse(out), nil
}

// notOpen says why a reach took no signal: NotFound for an ID that never ran, FailedPrecondition
// for one that finished.
func (s *server) notOpen(ctx context.Context, id string) error {
	_, err := s.temporal.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return connect.NewError(connect.CodeNotFound, errors.New("reach_id: no reach with this ID"))
	case err != nil:
		return s.internal("describe reach", err)
	}
	return connect.NewError(connect.CodeFailedPrecondition, errors.New("reach_id: the reach has finished"))
}

// maxCancelAll bounds one cancel-by-user call.
const maxCancelAll = 1000

// openReaches lists a user's running reaches of a rule and/or journey through Temporal's
// visibility (the search attributes every run carries), which may lag a just-started run by a
// moment.
func (s *server) openReaches(ctx context.Context, user, rule, journeyID string) (ids []string, truncated bool, err error) {
	if user == "" {
		return nil, false, invalid("user_id", "required when reach_id is empty")
	}
	if rule == "" && journeyID == "" {
		return nil, false, invalid("rule_id", "give rule_id or journey_id (or both) with user_id")
	}
	q := "ExecutionStatus = 'Running'"
	for _, f := range []struct{ field, attr, v string }{
		{"user_id", workflows.SearchUserID.GetName(), user},
		{"rule_id", workflows.SearchRuleID.GetName(), rule},
		{"journey_id", workflows.SearchJourneyID.GetName(), journeyID},
	} {
		if f.v == "" {
			continue
		}
		if err := checkID(f.field, f.v); err != nil {
			return nil, false, err
		}
		if strings.ContainsAny(f.v, `'"\`) {
			return nil, false, invalid(f.field, "must not contain quotes or backslashes")
		}
		q += fmt.Sprintf(" AND %s = '%s'", f.attr, f.v)
	}
	var token []byte
	for {
		resp, err := s.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: 200, NextPageToken: token})
		if err != nil {
			return nil, false, s.internal("list open reaches", err)
		}
		for _, e := range resp.GetExecutions() {
			ids = append(ids, e.GetExecution().GetWorkflowId())
		}
		token = resp.GetNextPageToken()
		if len(ids) >= maxCancelAll {
			return ids[:maxCancelAll], len(ids) > maxCancelAll || len(token) > 0, nil
		}
		if len(token) == 0 {
			return ids, false, nil
		}
	}
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
		_, derr := s.temporal.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case derr == nil:
			out := &omegav1.Reach{ReachId: id, Status: workflows.StatusRunning}
			s.addLiveState(ctx, out)
			return connect.NewResponse(&omegav1.GetResponse{Reach: out}), nil
		case !errors.As(derr, &nf):
			return nil, s.internal("describe reach", derr) // Temporal is down: not a NotFound
		default:
			return nil, connect.NewError(connect.CodeNotFound, errors.New("reach_id: no reach with this ID"))
		}
	}
	if err != nil {
		return nil, s.internal("get reach", err)
	}
	out := toProto(r)
	if r.Status == workflows.StatusRunning || r.Status == workflows.StatusWaiting {
		s.addLiveState(ctx, out)
	}
	return connect.NewResponse(&omegav1.GetResponse{Reach: out}), nil
}

// addLiveState asks a running reach where it is (the state query, answered by a worker). A run
// whose worker does not answer within a moment is reported from its trail alone.
func (s *server) addLiveState(ctx context.Context, r *omegav1.Reach) {
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := s.temporal.QueryWorkflow(qctx, r.GetReachId(), "", workflows.QueryState)
	var st workflows.State
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		s.log.Debug("reach state query", "reach_id", r.GetReachId(), "err", err)
		return
	}
	r.CurrentStep, r.JourneyVersion = st.Current, int32(st.JourneyVersion)
	if st.Status != "" {
		r.Status = st.Status
	}
}

// List returns a user's reaches, newest first.
func (s *server) List(ctx context.Context, req *connect.Request[omegav1.ListRequest]) (*connect.Response[omegav1.ListResponse], error) {
	m := req.Msg
	if err := checkID("user_id", m.GetUserId()); err != nil {
		return nil, err
	}
	size, err := pageSize(m.GetPageSize(), 20, 100)
	if err != nil {
		return nil, err
	}
	if st := m.GetStatus(); st != "" && !slices.Contains(listStatuses, st) {
		return nil, invalid("status", "unknown status %q (want %s)", st, strings.Join(listStatuses, ", "))
	}
	rs, next, err := s.audit.List(ctx, audit.Query{UserID: m.GetUserId(), Status: m.GetStatus(), Limit: size, PageToken: m.GetPageToken()})
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

// pageSize is a request's page_size: def when unset, at most max.
func pageSize(v int32, def, max int) (int, error) {
	switch {
	case v < 0:
		return 0, invalid("page_size", "must not be negative")
	case v == 0:
		return def, nil
	}
	return min(int(v), max), nil
}

// listStatuses are the statuses List filters by: the audit trail's view, where a reach is running
// or waiting (a wait began and no later step record) until its final record.
var listStatuses = []string{workflows.StatusRunning, workflows.StatusWaiting, workflows.StatusSent, workflows.StatusSuppressed, workflows.StatusConverted,
	workflows.StatusFailed, workflows.StatusCancelled, workflows.StatusCompleted, "shadow"}

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
	if strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return invalid("reach_id", "must be printable ASCII: a reach ID percent-encodes any other character of its parts, as Trigger and List return it")
	}
	return nil
}

func toProto(r audit.Reach) *omegav1.Reach {
	out := &omegav1.Reach{
		ReachId: r.ID, UserId: r.UserID, RuleId: r.RuleID, JourneyId: r.JourneyID, Status: r.Status,
		Channel: r.Channel, StartedAt: timestamppb.New(r.StartedAt), UpdatedAt: timestamppb.New(r.UpdatedAt),
	}
	for _, rec := range r.Records {
		out.Audit = append(out.Audit, toProtoRecord(rec))
	}
	return out
}

func toProtoRecord(rec audit.Record) *omegav1.AuditRecord {
	return &omegav1.AuditRecord{Step: rec.Step, Kind: rec.Kind, Outcome: rec.Outcome, Reason: rec.Reason, Channel: rec.Channel,
		IdempotencyKey: rec.IdempotencyKey, At: timestamppb.New(rec.At), TraceId: rec.TraceID, RuleVersion: int32(rec.RuleVersion),
		JourneyVersion: int32(rec.JourneyVersion), EventId: rec.EventID, Retryable: rec.Retryable}
}

// Signal records a response for one open reach.
func (s *server) Signal(ctx context.Context, req *connect.Request[omegav1.SignalRequest]) (*connect.Response[omegav1.SignalResponse], error) {
	m := req.Msg
	if err := checkReachID(m.GetReachId()); err != nil {
		return nil, err
	}
	if cat := s.catalog(); !cat.Routed(m.GetEventType()) {
		return nil, invalid("event_type", "%q is not a response or goal event (%s)", m.GetEventType(), strings.Join(routedNames(cat), ", "))
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
			return nil, s.notOpen(ctx, m.GetReachId())
		}
		return nil, s.internal("signal reach", err)
	}
	return connect.NewResponse(&omegav1.SignalResponse{}), nil
}

// Timeline returns a user's audit records across their reaches, newest first.
func (s *server) Timeline(ctx context.Context, req *connect.Request[omegav1.TimelineRequest]) (*connect.Response[omegav1.TimelineResponse], error) {
	m := req.Msg
	if err := checkID("user_id", m.GetUserId()); err != nil {
		return nil, err
	}
	size, err := pageSize(m.GetPageSize(), 100, 500)
	if err != nil {
		return nil, err
	}
	recs, next, err := s.audit.Timeline(ctx, m.GetUserId(), size, m.GetPageToken())
	if errors.Is(err, audit.ErrBadPageToken) {
		return nil, invalid("page_token", "not a token from a previous Timeline")
	}
	if err != nil {
		return nil, s.internal("read timeline", err)
	}
	out := &omegav1.TimelineResponse{NextPageToken: next}
	for _, r := range recs {
		out.Records = append(out.Records, &omegav1.TimelineRecord{ReachId: r.ReachID, RuleId: r.RuleID, JourneyId: r.JourneyID,
			Record: toProtoRecord(r)})
	}
	return connect.NewResponse(out), nil
}

// Funnel counts a rule's or journey's reaches by how far they got.
func (s *server) Funnel(ctx context.Context, req *connect.Request[omegav1.FunnelRequest]) (*connect.Response[omegav1.FunnelResponse], error) {
	m := req.Msg
	if m.GetRuleId() == "" && m.GetJourneyId() == "" {
		return nil, invalid("rule_id", "give rule_id or journey_id (or both)")
	}
	if m.GetJourneyVersion() < 0 {
		return nil, invalid("journey_version", "must not be negative")
	}
	if len(m.GetSplitPath()) > maxKeyLen {
		return nil, invalid("split_path", "longer than %d bytes", maxKeyLen)
	}
	from, to, err := s.period(m.GetFrom(), m.GetTo())
	if err != nil {
		return nil, err
	}
	q := audit.FunnelQuery{RuleID: m.GetRuleId(), JourneyID: m.GetJourneyId(), JourneyVersion: int(m.GetJourneyVersion()),
		SplitPath: m.GetSplitPath(), From: from, To: to}
	f, err := s.audit.Funnel(ctx, q)
	if err != nil {
		return nil, s.internal("read funnel", err)
	}
	if f.Matched == 0 && m.GetJourneyId() != "" && s.journeys != nil && !s.journeys(m.GetJourneyId()) {
		// No reach and no such journey: a typo, not a journey that reached nobody.
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("journey_id: no journey %q", m.GetJourneyId()))
	}
	out := funnelProto(f)
	for path, pf := range f.BySplitPath {
		if out.BySplitPath == nil {
			out.BySplitPath = map[string]*omegav1.FunnelResponse{}
		}
		out.BySplitPath[path] = funnelProto(pf)
	}
	for _, p := range audit.Lift(f) {
		out.Lift = append(out.Lift, &omegav1.PathLift{Path: p.Path, Reached: p.Reached, Converted: p.Converted, Rate: p.Rate,
			RateLow: p.RateLow, RateHigh: p.RateHigh, Compared: p.Compared, Lift: p.Lift, Diff: p.Diff, DiffLow: p.DiffLow,
			DiffHigh: p.DiffHigh, PValue: p.P, Wins: p.Wins})
	}
	return connect.NewResponse(out), nil
}

func funnelProto(f audit.Funnel) *omegav1.FunnelResponse {
	return &omegav1.FunnelResponse{Matched: f.Matched, Sent: f.Sent, Opened: f.Opened, Converted: f.Converted,
		Suppressed: f.Suppressed, SuppressedBy: f.SuppressedBy, Failed: f.Failed, Cancelled: f.Cancelled, Running: f.Running,
		HeldOut: f.HeldOut}
}
