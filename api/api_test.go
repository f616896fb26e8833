package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/IBM/sarama"
	saramamocks "github.com/IBM/sarama/mocks"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	temporalmocks "go.temporal.io/sdk/mocks"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/event"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/workflows"
)

// syncBuffer is a log sink the server goroutines and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is the API served over HTTP with mocked Kafka and Temporal. The audit store has no pool:
// the paths tested here must not reach it.
type fixture struct {
	producer *saramamocks.SyncProducer
	temporal *temporalmocks.Client
	events   omegav1connect.EventServiceClient
	reaches  omegav1connect.ReachServiceClient
	log      *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		producer: saramamocks.NewSyncProducer(t, nil),
		temporal: &temporalmocks.Client{},
		log:      &syncBuffer{},
	}
	h, err := api.NewHandler(api.Config{
		Producer: f.producer,
		Temporal: f.temporal,
		Audit:    audit.NewStore(nil),
		Journeys: func(id string) bool { return id == "cart-reminder" },
		Keys:     testKeys,
		Log:      slog.New(slog.NewTextHandler(f.log, nil)),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		// Every expected produce and Temporal call happened, and no other.
		require.NoError(t, f.producer.Close())
		f.temporal.AssertExpectations(t)
	})
	f.events = omegav1connect.NewEventServiceClient(keyed(srv, adminKey), srv.URL)
	f.reaches = omegav1connect.NewReachServiceClient(keyed(srv, adminKey), srv.URL)
	return f
}

func validEvent(i int) *omegav1.Event {
	return &omegav1.Event{
		EventId: fmt.Sprintf("e%d", i), UserId: fmt.Sprintf("u%d", i), Type: "cart_add", ItemId: "i1",
		Ts: timestamppb.New(time.Now().Add(-time.Minute)),
	}
}

func validEvents(n int) []*omegav1.Event {
	evs := make([]*omegav1.Event, n)
	for i := range evs {
		evs[i] = validEvent(i)
	}
	return evs
}

// requireInvalid asserts err is InvalidArgument and its message starts with the field's name.
func requireInvalid(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "error: %v", err)
	requireInvalidField(t, err, field)
}

// requireInvalidField asserts err's message starts with the field's name and, for
// InvalidArgument, that its BadRequest detail names it first.
func requireInvalidField(t *testing.T, err error, field string) {
	t.Helper()
	var ce *connect.Error
	require.True(t, errors.As(err, &ce))
	require.True(t, strings.HasPrefix(ce.Message(), field+": "), "message %q does not name %s", ce.Message(), field)
	if ce.Code() != connect.CodeInvalidArgument {
		return
	}
	vs := fieldViolations(t, err)
	require.NotEmpty(t, vs, "no BadRequest detail in %v", err)
	require.Equal(t, field, vs[0].GetField())
}

// fieldViolations are the field violations of err's google.rpc.BadRequest detail.
func fieldViolations(t *testing.T, err error) []*errdetails.BadRequest_FieldViolation {
	t.Helper()
	var ce *connect.Error
	require.True(t, errors.As(err, &ce))
	for _, d := range ce.Details() {
		v, derr := d.Value()
		require.NoError(t, derr)
		if br, ok := v.(*errdetails.BadRequest); ok {
			return br.GetFieldViolations()
		}
	}
	return nil
}

func TestNewHandlerRequiresBackends(t *testing.T) {
	_, err := api.NewHandler(api.Config{Producer: saramamocks.NewSyncProducer(t, nil)})
	require.Error(t, err)
}

func TestIngestRejects(t *testing.T) {
	tests := []struct {
		name      string
		events    func() []*omegav1.Event
		wantField string
	}{
		{name: "no events", events: func() []*omegav1.Event { return nil }, wantField: "events"},
		{name: "too many events", events: func() []*omegav1.Event { return validEvents(api.MaxIngestBatch + 1) }, wantField: "events"},
		{name: "missing type", events: func() []*omegav1.Event {
			evs := validEvents(4)
			evs[2].Type = ""
			return evs
		}, wantField: "events[2].type"},
		{name: "missing event id", events: func() []*omegav1.Event {
			evs := validEvents(2)
			evs[1].EventId = ""
			return evs
		}, wantField: "events[1].event_id"},
		{name: "missing ts", events: func() []*omegav1.Event {
			evs := validEvents(1)
			evs[0].Ts = nil
			return evs
		}, wantField: "events[0].ts"},
		{name: "user with slash", events: func() []*omegav1.Event {
			evs := validEvents(1)
			evs[0].UserId = "a/b"
			return evs
		}, wantField: "events[0].user_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t) // no produce expected: a bad batch produces nothing
			_, err := f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: tt.events()}))
			requireInvalid(t, err, tt.wantField)
		})
	}
}

// TestIngestNamesEveryBadEvent: one answer names every refused event (its first violation each),
// the message the first and how many more; nothing is produced.
func TestIngestNamesEveryBadEvent(t *testing.T) {
	f := newFixture(t)
	evs := validEvents(6)
	evs[1].Type = ""
	evs[3].UserId = "a/b"
	evs[5].Ts = nil
	_, err := f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: evs}))
	requireInvalid(t, err, "events[1].type")
	require.ErrorContains(t, err, "and 2 more violations")
	var fields []string
	for _, v := range fieldViolations(t, err) {
		require.NotEmpty(t, v.GetDescription())
		fields = append(fields, v.GetField())
	}
	require.Equal(t, []string{"events[1].type", "events[3].user_id", "events[5].ts"}, fields)

	// A thousand bad events: the first hundred listed, all counted.
	evs = validEvents(api.MaxIngestBatch)
	for _, e := range evs {
		e.EventId = ""
	}
	_, err = f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: evs}))
	requireInvalid(t, err, "events[0].event_id")
	require.Len(t, fieldViolations(t, err), 100)
	require.ErrorContains(t, err, "and 999 more violations; the error's details list the first 100")
}

// validate_only checks a batch as Ingest would and produces nothing (the fixture's producer
// expects no send).
func TestIngestValidateOnly(t *testing.T) {
	f := newFixture(t)
	res, err := f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: validEvents(3), ValidateOnly: true}))
	require.NoError(t, err)
	require.EqualValues(t, 3, res.Msg.GetAccepted())
	evs := validEvents(3)
	evs[2].Type = ""
	_, err = f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: evs, ValidateOnly: true}))
	requireInvalid(t, err, "events[2].type")
}

func TestIngestProduces(t *testing.T) {
	f := newFixture(t)
	const n = 3
	for i := range n {
		f.producer.ExpectSendMessageWithMessageCheckerFunctionAndSucceed(func(m *sarama.ProducerMessage) error {
			if m.Topic != event.Topic {
				return fmt.Errorf("topic %q", m.Topic)
			}
			key, err := m.Key.Encode()
			if err != nil || string(key) != fmt.Sprintf("u%d", i) {
				return fmt.Errorf("key %q, want the user", key)
			}
			b, err := m.Value.Encode()
			if err != nil {
				return err
			}
			e, err := event.Decode(b)
			if err != nil {
				return fmt.Errorf("value is not a valid event: %w", err)
			}
			if e.EventID != fmt.Sprintf("e%d", i) || e.Type != "cart_add" || e.ItemID != "i1" {
				return fmt.Errorf("value %s", b)
			}
			return nil
		})
	}
	res, err := f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: validEvents(n)}))
	require.NoError(t, err)
	require.EqualValues(t, n, res.Msg.GetAccepted())
}

// A batch the producer gives up on once (a broker that crashed: the idempotent producer's first
// send after it fails) is sent again within the call.
func TestIngestSendsAgain(t *testing.T) {
	f := newFixture(t)
	f.producer.ExpectSendMessageAndFail(sarama.ErrOutOfOrderSequenceNumber)
	f.producer.ExpectSendMessageAndSucceed()
	res, err := f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: validEvents(1)}))
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Msg.GetAccepted())
	require.Contains(t, f.log.String(), "sending again")
}

func TestIngestProducerFailure(t *testing.T) {
	f := newFixture(t)
	internal := "kafka: broker 10.1.2.3:9092 NOT_ENOUGH_REPLICAS"
	for range 3 { // every attempt
		f.producer.ExpectSendMessageAndFail(errors.New(internal))
	}

	_, err := f.events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: validEvents(1)}))
	require.Error(t, err)
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err))
	require.NotContains(t, err.Error(), "10.1.2.3")
	require.NotContains(t, err.Error(), "NOT_ENOUGH_REPLICAS")
	require.Contains(t, f.log.String(), "NOT_ENOUGH_REPLICAS", "the detail goes to the log")
}

func TestTriggerRejects(t *testing.T) {
	tests := []struct {
		name      string
		req       *omegav1.TriggerRequest
		wantField string
	}{
		{name: "missing user", req: &omegav1.TriggerRequest{JourneyId: "cart-reminder", IdempotencyKey: "k1"}, wantField: "user_id"},
		{name: "user with brace", req: &omegav1.TriggerRequest{UserId: "u{1}", JourneyId: "cart-reminder", IdempotencyKey: "k1"}, wantField: "user_id"},
		{name: "user too long", req: &omegav1.TriggerRequest{UserId: strings.Repeat("u", 201), JourneyId: "cart-reminder", IdempotencyKey: "k1"}, wantField: "user_id"},
		{name: "missing key", req: &omegav1.TriggerRequest{UserId: "u1", JourneyId: "cart-reminder"}, wantField: "idempotency_key"},
		{name: "key with slash", req: &omegav1.TriggerRequest{UserId: "u1", JourneyId: "cart-reminder", IdempotencyKey: "a/b"}, wantField: "idempotency_key"},
		{name: "missing journey", req: &omegav1.TriggerRequest{UserId: "u1", IdempotencyKey: "k1"}, wantField: "journey_id"},
		{name: "unknown journey", req: &omegav1.TriggerRequest{UserId: "u1", JourneyId: "nope", IdempotencyKey: "k1"}, wantField: "journey_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t) // no Temporal call expected
			_, err := f.reaches.Trigger(context.Background(), connect.NewRequest(tt.req))
			requireInvalid(t, err, tt.wantField)
		})
	}
}

func TestTriggerStarts(t *testing.T) {
	tests := []struct {
		name        string
		startErr    error
		startedFor  string // the journey of the reach the key started before
		wantCreated bool
		wantCode    connect.Code // zero: success
	}{
		{name: "new reach", wantCreated: true},
		{name: "same key again", startErr: serviceerror.NewWorkflowExecutionAlreadyStarted("started", "", "run-1"), startedFor: "cart-reminder"},
		{name: "same key, other journey", startErr: serviceerror.NewWorkflowExecutionAlreadyStarted("started", "", "run-1"),
			startedFor: "price-drop", wantCode: connect.CodeAlreadyExists},
		{name: "temporal down", startErr: errors.New("dial tcp 10.1.2.3:7233: connection refused"), wantCode: connect.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			wantID := "reach/api/u1/order-7"
			f.temporal.On("ExecuteWorkflow", mock.Anything,
				mock.MatchedBy(func(o client.StartWorkflowOptions) bool {
					return o.ID == wantID && o.TaskQueue == workflows.TaskQueue && o.WorkflowExecutionErrorWhenAlreadyStarted
				}),
				mock.Anything,
				mock.MatchedBy(func(in workflows.ReachInput) bool {
					m := in.Match
					return m.RuleID == workflows.APIRuleID && m.UserID == "u1" && m.JourneyID == "cart-reminder" &&
						m.MatchKey == "order-7" && m.Attrs["coupon"] == "X1" && !m.MatchedAt.IsZero()
				}),
			).Return(&temporalmocks.WorkflowRun{}, tt.startErr).Once()
			if tt.startedFor != "" {
				p, err := converter.GetDefaultDataConverter().ToPayload(tt.startedFor)
				require.NoError(t, err)
				f.temporal.On("DescribeWorkflowExecution", mock.Anything, wantID, "").Return(&workflowservice.DescribeWorkflowExecutionResponse{
					WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{SearchAttributes: &commonpb.SearchAttributes{
						IndexedFields: map[string]*commonpb.Payload{workflows.SearchJourneyID.GetName(): p}}}}, nil).Once()
			}

			attrs, err := structpb.NewStruct(map[string]any{"coupon": "X1"})
			require.NoError(t, err)
			res, err := f.reaches.Trigger(context.Background(), connect.NewRequest(&omegav1.TriggerRequest{
				UserId: "u1", JourneyId: "cart-reminder", IdempotencyKey: "order-7", Attrs: attrs,
			}))
			if tt.wantCode != 0 {
				require.Equal(t, tt.wantCode, connect.CodeOf(err), "error: %v", err)
				require.NotContains(t, err.Error(), "10.1.2.3")
				if tt.wantCode == connect.CodeAlreadyExists {
					requireInvalidField(t, err, "idempotency_key")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, wantID, res.Msg.GetReachId())
			require.Equal(t, tt.wantCreated, res.Msg.GetCreated())
		})
	}
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name        string
		req         *omegav1.CancelRequest
		signalErr   error // nil with wantReason set: the signal is sent
		describeErr error // asked when the signal finds no open run
		wantReason  string
		wantCode    connect.Code
		wantField   string
	}{
		{name: "missing id", req: &omegav1.CancelRequest{}, wantField: "user_id"},
		{name: "id and user", req: &omegav1.CancelRequest{ReachId: "reach/api/u1/k1", UserId: "u1"}, wantField: "reach_id"},
		{name: "user without rule or journey", req: &omegav1.CancelRequest{UserId: "u1"}, wantField: "rule_id"},
		{name: "quote in journey", req: &omegav1.CancelRequest{UserId: "u1", JourneyId: "j' OR 1=1"}, wantField: "journey_id"},
		{name: "slash in rule", req: &omegav1.CancelRequest{UserId: "u1", RuleId: "a/b"}, wantField: "rule_id"},
		{name: "long reason", req: &omegav1.CancelRequest{ReachId: "reach/api/u1/k1", Reason: strings.Repeat("x", 501)}, wantField: "reason"},
		{name: "not a reach id", req: &omegav1.CancelRequest{ReachId: "x"}, wantField: "reach_id"},
		{name: "with reason", req: &omegav1.CancelRequest{ReachId: "reach/api/u1/k1", Reason: "user unsubscribed"}, wantReason: "user unsubscribed"},
		{name: "default reason", req: &omegav1.CancelRequest{ReachId: "reach/api/u1/k1"}, wantReason: "cancelled through the API"},
		{name: "finished reach", req: &omegav1.CancelRequest{ReachId: "reach/api/u1/k1"}, signalErr: serviceerror.NewNotFound("workflow not found"),
			describeErr: nil, wantReason: "cancelled through the API", wantCode: connect.CodeFailedPrecondition},
		{name: "unknown reach", req: &omegav1.CancelRequest{ReachId: "reach/api/u1/k1"}, signalErr: serviceerror.NewNotFound("workflow not found"),
			describeErr: serviceerror.NewNotFound("workflow not found"), wantReason: "cancelled through the API", wantCode: connect.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.wantReason != "" {
				f.temporal.On("SignalWorkflow", mock.Anything, tt.req.GetReachId(), "", workflows.SignalCancel,
					workflows.CancelSignal{Reason: tt.wantReason}).Return(tt.signalErr).Once()
			}
			if tt.signalErr != nil {
				f.temporal.On("DescribeWorkflowExecution", mock.Anything, tt.req.GetReachId(), "").
					Return(&workflowservice.DescribeWorkflowExecutionResponse{}, tt.describeErr).Once()
			}
			_, err := f.reaches.Cancel(context.Background(), connect.NewRequest(tt.req))
			switch {
			case tt.wantField != "":
				requireInvalid(t, err, tt.wantField)
			case tt.wantCode != 0:
				require.Equal(t, tt.wantCode, connect.CodeOf(err), "error: %v", err)
			default:
				require.NoError(t, err)
			}
		})
	}
}

// Cancel by user and journey: every open run Temporal's visibility lists is signalled; one that
// finished since the listing is skipped, not an error.
func TestCancelByUser(t *testing.T) {
	f := newFixture(t)
	exec := func(id string) *workflowpb.WorkflowExecutionInfo {
		return &workflowpb.WorkflowExecutionInfo{Execution: &commonpb.WorkflowExecution{WorkflowId: id}}
	}
	f.temporal.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
		return r.GetQuery() == "ExecutionStatus = 'Running' AND UserId = 'u1' AND RuleId = 'cart' AND JourneyId = 'cart-retarget'" && len(r.GetNextPageToken()) == 0
	})).Return(&workflowservice.ListWorkflowExecutionsResponse{Executions: []*workflowpb.WorkflowExecutionInfo{exec("reach/cart/u1/a")},
		NextPageToken: []byte("p2")}, nil).Once()
	f.temporal.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
		return string(r.GetNextPageToken()) == "p2"
	})).Return(&workflowservice.ListWorkflowExecutionsResponse{Executions: []*workflowpb.WorkflowExecutionInfo{exec("reach/cart/u1/b")}}, nil).Once()
	sig := workflows.CancelSignal{Reason: "user paid elsewhere"}
	f.temporal.On("SignalWorkflow", mock.Anything, "reach/cart/u1/a", "", workflows.SignalCancel, sig).Return(nil).Once()
	f.temporal.On("SignalWorkflow", mock.Anything, "reach/cart/u1/b", "", workflows.SignalCancel, sig).
		Return(serviceerror.NewNotFound("workflow not found")).Once()
	res, err := f.reaches.Cancel(context.Background(), connect.NewRequest(&omegav1.CancelRequest{UserId: "u1", RuleId: "cart",
		JourneyId: "cart-retarget", Reason: "user paid elsewhere"}))
	require.NoError(t, err)
	require.Equal(t, []string{"reach/cart/u1/a"}, res.Msg.GetCancelled())
}

func TestGetRejects(t *testing.T) {
	tests := []struct {
		name    string
		reachID string
	}{
		{name: "missing", reachID: ""},
		{name: "not a reach id", reachID: "x"},
		{name: "too long", reachID: "reach/" + strings.Repeat("x", 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.reaches.Get(context.Background(), connect.NewRequest(&omegav1.GetRequest{ReachId: tt.reachID}))
			requireInvalid(t, err, "reach_id")
		})
	}
}

func TestListRejects(t *testing.T) {
	tests := []struct {
		name      string
		req       *omegav1.ListRequest
		wantField string
	}{
		{name: "negative page size", req: &omegav1.ListRequest{UserId: "u1", PageSize: -1}, wantField: "page_size"},
		{name: "missing user", req: &omegav1.ListRequest{PageSize: 10}, wantField: "user_id"},
		{name: "user with slash", req: &omegav1.ListRequest{UserId: "a/b"}, wantField: "user_id"},
		{name: "unknown status", req: &omegav1.ListRequest{UserId: "u1", Status: "lost"}, wantField: "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.reaches.List(context.Background(), connect.NewRequest(tt.req))
			requireInvalid(t, err, tt.wantField)
		})
	}
}

func TestSignal(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		req        *omegav1.SignalRequest
		signalErr  error
		wantSignal *workflows.Response
		wantCode   connect.Code
		wantField  string
	}{
		{name: "missing reach", req: &omegav1.SignalRequest{EventType: "push_open", EventId: "e"}, wantField: "reach_id"},
		{name: "not a response", req: &omegav1.SignalRequest{ReachId: "reach/api/u1/k", EventType: "view", EventId: "e"}, wantField: "event_type"},
		{name: "missing event id", req: &omegav1.SignalRequest{ReachId: "reach/api/u1/k", EventType: "push_open"}, wantField: "event_id"},
		{name: "delivered", req: &omegav1.SignalRequest{ReachId: "reach/api/u1/k", EventType: "push_open", EventId: "e1", Ts: timestamppb.New(at)},
			wantSignal: &workflows.Response{EventID: "e1", Type: "push_open", At: at}},
		{name: "finished reach", req: &omegav1.SignalRequest{ReachId: "reach/api/u1/k", EventType: "order_paid", EventId: "e2", Ts: timestamppb.New(at)},
			signalErr: serviceerror.NewNotFound("gone"), wantSignal: &workflows.Response{EventID: "e2", Type: "order_paid", At: at},
			wantCode: connect.CodeFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.wantSignal != nil {
				f.temporal.On("SignalWorkflow", mock.Anything, tt.req.GetReachId(), "", workflows.SignalResponse, *tt.wantSignal).
					Return(tt.signalErr).Once()
			}
			if tt.signalErr != nil {
				f.temporal.On("DescribeWorkflowExecution", mock.Anything, tt.req.GetReachId(), "").
					Return(&workflowservice.DescribeWorkflowExecutionResponse{}, nil).Once()
			}
			_, err := f.reaches.Signal(context.Background(), connect.NewRequest(tt.req))
			switch {
			case tt.wantField != "":
				requireInvalid(t, err, tt.wantField)
			case tt.wantCode != 0:
				require.Equal(t, tt.wantCode, connect.CodeOf(err), "error: %v", err)
			default:
				require.NoError(t, err)
			}
		})
	}
}
