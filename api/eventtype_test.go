package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	saramamocks "github.com/IBM/sarama/mocks"
	"github.com/stretchr/testify/require"
	temporalmocks "go.temporal.io/sdk/mocks"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/versioned"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// memEventTypes is an event catalogue in memory: versions by name, the demo types beneath.
type memEventTypes struct {
	mu    sync.Mutex
	types map[string]event.Type
}

func (m *memEventTypes) Validate(t event.Type) error { return t.ValidateNew() }
func (m *memEventTypes) Apply(_ context.Context, t event.Type) (versioned.Applied, error) {
	if err := t.Validate(); err != nil {
		return versioned.Applied{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Version = m.types[t.Name].Version + 1
	m.types[t.Name] = t
	return versioned.Applied{ID: t.Name, Version: t.Version, Status: "created"}, nil
}
func (m *memEventTypes) Draft(ctx context.Context, t event.Type) (versioned.Applied, error) {
	return m.Apply(ctx, t)
}
func (m *memEventTypes) Activate(context.Context, string, int) error { return versioned.ErrNotFound }
func (m *memEventTypes) Get(_ context.Context, name string) (event.Type, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.types[name]; ok {
		return t, nil
	}
	if t, ok := event.Default().Lookup(name); ok {
		t.Version = 0
		return t, nil
	}
	return event.Type{}, versioned.ErrNotFound
}
func (m *memEventTypes) Version(ctx context.Context, name string, _ int) (event.Type, error) {
	return m.Get(ctx, name)
}
func (m *memEventTypes) List(context.Context) ([]event.Type, error) { return m.Current().Types(), nil }
func (m *memEventTypes) Disable(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.types[name]
	if !ok {
		return versioned.ErrNotFound
	}
	t.Disabled = true
	m.types[name] = t
	return nil
}
func (m *memEventTypes) Current() *event.Catalog {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := make([]event.Type, 0, len(m.types))
	for _, t := range m.types {
		ts = append(ts, t)
	}
	return event.Overlay(event.Default(), ts)
}

type catalogFixture struct {
	producer *saramamocks.SyncProducer
	types    omegav1connect.EventTypeServiceClient
	events   omegav1connect.EventServiceClient
}

func newCatalogFixture(t *testing.T) *catalogFixture {
	t.Helper()
	f := &catalogFixture{producer: saramamocks.NewSyncProducer(t, nil)}
	h, err := api.NewHandler(api.Config{Producer: f.producer, Temporal: &temporalmocks.Client{}, Audit: audit.NewStore(nil),
		Journeys: func(string) bool { return true }, Keys: testKeys, EventTypes: &memEventTypes{types: map[string]event.Type{}},
		Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, f.producer.Close())
	})
	f.types = omegav1connect.NewEventTypeServiceClient(keyed(srv, adminKey), srv.URL)
	f.events = omegav1connect.NewEventServiceClient(keyed(srv, adminKey), srv.URL)
	return f
}

// couponClaimed is a growth team's own type: a trigger with a schema.
var couponClaimed = map[string]any{
	"name": "coupon_claimed", "description": "a user claimed a coupon", "uses": []any{"trigger"},
	"attrs": []any{
		map[string]any{"name": "coupon_id", "type": "string", "required": true},
		map[string]any{"name": "value", "type": "number"},
	},
}

// EventTypeService names the field of an invalid type; an applied type is listed and got, and the
// default types are there without being applied.
func TestEventTypeService(t *testing.T) {
	f := newCatalogFixture(t)
	ctx := context.Background()
	bad := []struct {
		name      string
		typ       map[string]any
		wantField string
	}{
		{name: "no name", typ: map[string]any{"uses": []any{"trigger"}}, wantField: "event_type.name"},
		{name: "bad name", typ: map[string]any{"name": "Coupon Claimed", "uses": []any{"trigger"}}, wantField: "event_type.name"},
		{name: "no uses", typ: map[string]any{"name": "coupon_claimed"}, wantField: "event_type.uses"},
		{name: "unknown use", typ: map[string]any{"name": "coupon_claimed", "uses": []any{"trigger", "teleport"}}, wantField: "event_type.uses[1]"},
		{name: "bad scope", typ: map[string]any{"name": "coupon_claimed", "scope": "shop", "uses": []any{"trigger"}}, wantField: "event_type.scope"},
		{name: "bad attr type", typ: map[string]any{"name": "coupon_claimed", "uses": []any{"trigger"},
			"attrs": []any{map[string]any{"name": "v", "type": "decimal"}}}, wantField: "event_type.attrs[0].type"},
		{name: "unknown field", typ: map[string]any{"name": "coupon_claimed", "uses": []any{"trigger"}, "kind": "x"}, wantField: "event_type.kind"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.types.ValidateEventType(ctx, connect.NewRequest(&omegav1.ValidateEventTypeRequest{EventType: mustStruct(t, tt.typ)}))
			requireInvalid(t, err, tt.wantField)
			_, err = f.types.ApplyEventType(ctx, connect.NewRequest(&omegav1.ApplyEventTypeRequest{EventType: mustStruct(t, tt.typ)}))
			requireInvalid(t, err, tt.wantField)
		})
	}
	res, err := f.types.ApplyEventType(ctx, connect.NewRequest(&omegav1.ApplyEventTypeRequest{EventType: mustStruct(t, couponClaimed)}))
	require.NoError(t, err)
	require.Equal(t, "coupon_claimed", res.Msg.GetApplied().GetId())
	require.EqualValues(t, 1, res.Msg.GetApplied().GetVersion())

	got, err := f.types.GetEventType(ctx, connect.NewRequest(&omegav1.GetEventTypeRequest{Name: "coupon_claimed"}))
	require.NoError(t, err)
	require.Equal(t, "string", got.Msg.GetEventType().GetSpec().AsMap()["attrs"].([]any)[0].(map[string]any)["type"])
	_, err = f.types.GetEventType(ctx, connect.NewRequest(&omegav1.GetEventTypeRequest{Name: "nope"}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))
	_, err = f.types.GetEventType(ctx, connect.NewRequest(&omegav1.GetEventTypeRequest{}))
	requireInvalid(t, err, "name")

	list, err := f.types.ListEventTypes(ctx, connect.NewRequest(&omegav1.ListEventTypesRequest{}))
	require.NoError(t, err)
	var names []string
	for _, s := range list.Msg.GetEventTypes() {
		names = append(names, s.GetId())
	}
	require.Contains(t, names, "coupon_claimed")
	require.Contains(t, names, "push_open", "the default types are listed")
}

// Ingest checks each event against its type in the catalogue: declared, scope, attribute schema;
// the error names events[i] and the field.
func TestIngestChecksTheCatalogue(t *testing.T) {
	f := newCatalogFixture(t)
	ctx := context.Background()
	_, err := f.types.ApplyEventType(ctx, connect.NewRequest(&omegav1.ApplyEventTypeRequest{EventType: mustStruct(t, couponClaimed)}))
	require.NoError(t, err)
	ev := func(typ string, attrs map[string]any) *omegav1.Event {
		e := &omegav1.Event{EventId: "e-" + typ, UserId: "u1", Type: typ, Ts: timestamppb.New(time.Now().Add(-time.Minute))}
		if attrs != nil {
			e.Attrs = mustStruct(t, attrs)
		}
		return e
	}
	ok := ev("coupon_claimed", map[string]any{"coupon_id": "c-1", "value": 5, "extra": "allowed"})
	tests := []struct {
		name      string
		bad       *omegav1.Event
		wantField string
	}{
		{name: "undeclared type", bad: ev("coupon_used", nil), wantField: "events[1].type"},
		{name: "required attribute missing", bad: ev("coupon_claimed", map[string]any{"value": 5}), wantField: "events[1].attrs.coupon_id"},
		{name: "attribute of the wrong type", bad: ev("coupon_claimed", map[string]any{"coupon_id": "c-1", "value": "five"}), wantField: "events[1].attrs.value"},
		{name: "required attribute null", bad: ev("coupon_claimed", map[string]any{"coupon_id": nil}), wantField: "events[1].attrs.coupon_id"},
		{name: "item-scoped without item", bad: ev("price_drop", nil), wantField: "events[1].item_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.events.Ingest(ctx, connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{ok, tt.bad}}))
			requireInvalid(t, err, tt.wantField)
		})
	}
	// Without user_id or item_id, the type says which it needs (not "unless item-scoped" for a
	// user's type, which then set item_id and was refused again).
	for typ, want := range map[string]string{"coupon_claimed": "events[0].user_id: required: coupon_claimed is user-scoped",
		"price_drop": "events[0].item_id: required: price_drop is item-scoped"} {
		nobody := ev(typ, map[string]any{"coupon_id": "c-1"})
		nobody.UserId = ""
		_, err = f.events.Ingest(ctx, connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{nobody}}))
		require.ErrorContains(t, err, want)
	}
	f.producer.ExpectSendMessageAndSucceed()
	res, err := f.events.Ingest(ctx, connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{ok}}))
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Msg.GetAccepted())

	// Disabled, the type is undeclared again.
	_, err = f.types.DisableEventType(ctx, connect.NewRequest(&omegav1.DisableEventTypeRequest{Name: "coupon_claimed"}))
	require.NoError(t, err)
	_, err = f.events.Ingest(ctx, connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{ok}}))
	requireInvalid(t, err, "events[0].type")
}

// unreadEventTypes is a store whose database never answered: no catalogue read yet.
type unreadEventTypes struct{ memEventTypes }

func (*unreadEventTypes) Current() *event.Catalog { return nil }

// Before the catalogue could be read, an event of a type the default catalogue lacks is
// Unavailable (retry), not InvalidArgument (never again); the default types go through.
func TestIngestBeforeTheCatalogueIsRead(t *testing.T) {
	producer := saramamocks.NewSyncProducer(t, nil)
	h, err := api.NewHandler(api.Config{Producer: producer, Temporal: &temporalmocks.Client{}, Audit: audit.NewStore(nil),
		Journeys: func(string) bool { return true }, Keys: testKeys, EventTypes: &unreadEventTypes{},
		Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); require.NoError(t, producer.Close()) })
	events := omegav1connect.NewEventServiceClient(keyed(srv, adminKey), srv.URL)
	ts := timestamppb.New(time.Now().Add(-time.Minute))
	_, err = events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{
		{EventId: "e1", UserId: "u1", Type: "coupon_claimed", Ts: ts}}}))
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "%v", err)
	producer.ExpectSendMessageAndSucceed()
	_, err = events.Ingest(context.Background(), connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{
		{EventId: "e2", UserId: "u1", Type: "cart_add", Ts: ts}}}))
	require.NoError(t, err)
}
