package api

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/omegareach/omega/event"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// EventTypeStore keeps the event catalogue (eventtype.Store): the types as versions, and the
// effective catalogue that rules, journeys and ingested events are validated against.
type EventTypeStore interface {
	SpecStore[event.Type]
	// Current is the effective catalogue; it must answer while the database is away: the last one
	// read, nil (the default one) when none could be read yet.
	Current() *event.Catalog
}

func eventTypeSpecs(s *server, st SpecStore[event.Type]) *specs[event.Type] {
	return &specs[event.Type]{kind: "event_type", idField: "name", store: st, parse: event.ParseType, srv: s,
		meta: func(t event.Type) (string, int, bool) { return t.Name, t.Version, t.Disabled },
		field: func(err error) (string, bool) {
			var te *event.TypeError
			if errors.As(err, &te) {
				return "event_type." + te.Field, true
			}
			return "", false
		}}
}

// eventTypeService is the connect handler of EventTypeService.
type eventTypeService struct{ c *specs[event.Type] }

func (h eventTypeService) ValidateEventType(_ context.Context, req *connect.Request[omegav1.ValidateEventTypeRequest]) (*connect.Response[omegav1.ValidateEventTypeResponse], error) {
	if err := h.c.validate(req.Msg.GetEventType()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ValidateEventTypeResponse{}), nil
}

func (h eventTypeService) ApplyEventType(ctx context.Context, req *connect.Request[omegav1.ApplyEventTypeRequest]) (*connect.Response[omegav1.ApplyEventTypeResponse], error) {
	a, err := h.c.apply(ctx, req.Msg.GetEventType(), false)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ApplyEventTypeResponse{Applied: a}), nil
}

func (h eventTypeService) ActivateEventType(ctx context.Context, req *connect.Request[omegav1.ActivateEventTypeRequest]) (*connect.Response[omegav1.ActivateEventTypeResponse], error) {
	if err := h.c.activate(ctx, req.Msg.GetName(), req.Msg.GetVersion()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ActivateEventTypeResponse{}), nil
}

func (h eventTypeService) GetEventType(ctx context.Context, req *connect.Request[omegav1.GetEventTypeRequest]) (*connect.Response[omegav1.GetEventTypeResponse], error) {
	s, err := h.c.get(ctx, req.Msg.GetName(), req.Msg.GetVersion())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.GetEventTypeResponse{EventType: s}), nil
}

func (h eventTypeService) ListEventTypes(ctx context.Context, _ *connect.Request[omegav1.ListEventTypesRequest]) (*connect.Response[omegav1.ListEventTypesResponse], error) {
	ss, err := h.c.list(ctx)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ListEventTypesResponse{EventTypes: ss}), nil
}

func (h eventTypeService) DisableEventType(ctx context.Context, req *connect.Request[omegav1.DisableEventTypeRequest]) (*connect.Response[omegav1.DisableEventTypeResponse], error) {
	if err := h.c.disable(ctx, req.Msg.GetName()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.DisableEventTypeResponse{}), nil
}

// catalog is the event catalogue requests are validated against: the default one without a store,
// nil (the default one too) when the store has not been read yet.
func (s *server) catalog() *event.Catalog {
	if s.eventTypes == nil {
		return event.Default()
	}
	return s.eventTypes.Current()
}

// routedNames are the types a response may have: responses and goals.
func routedNames(c *event.Catalog) []string {
	var out []string
	for _, t := range c.Types() {
		if c.Routed(t.Name) {
			out = append(out, t.Name)
		}
	}
	return out
}
