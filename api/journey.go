package api

import (
	"context"
	"errors"
	"fmt"

	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// journeyService is JourneyService.
type journeyService struct{ c *specs[journey.Journey] }

func (h journeyService) ActivateJourney(ctx context.Context, req *connect.Request[omegav1.ActivateJourneyRequest]) (*connect.Response[omegav1.ActivateJourneyResponse], error) {
	if err := h.c.activate(ctx, req.Msg.GetId(), req.Msg.GetVersion()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ActivateJourneyResponse{}), nil
}

func (h journeyService) DryRunJourney(ctx context.Context, req *connect.Request[omegav1.DryRunJourneyRequest]) (*connect.Response[omegav1.DryRunJourneyResponse], error) {
	m := req.Msg
	var j journey.Journey
	var err error
	switch {
	case m.GetJourney() != nil && m.GetJourneyId() != "":
		return nil, invalid("journey", "give either journey or journey_id, not both")
	case m.GetJourney() != nil:
		if j, err = h.c.decode(m.GetJourney()); err == nil {
			err = h.c.mapErr("validate", h.c.store.Validate(j))
		}
	default:
		j, err = h.c.load(ctx, "journey_id", m.GetJourneyId(), m.GetVersion())
	}
	if err != nil {
		return nil, err
	}
	if err := checkID("user_id", m.GetUserId()); err != nil {
		return nil, err
	}
	in := journey.WalkInput{UserID: m.GetUserId(), Match: m.GetMatch().AsMap(), Locale: m.GetLocale(), Failed: m.GetFailedChannels()}
	if m.GetProfile() != nil {
		in.Profile = m.GetProfile().AsMap()
	}
	for i, r := range m.GetResponses() {
		if cat := h.c.srv.catalog(); !cat.Routed(r.GetType()) {
			return nil, invalid(fmt.Sprintf("responses[%d].type", i), "%q is not a response or goal event (%s)", r.GetType(),
				strings.Join(routedNames(cat), ", "))
		}
		wr := journey.WalkResponse{Type: r.GetType()}
		if r.GetAfter() != "" {
			d, err := time.ParseDuration(r.GetAfter())
			if err != nil || d < 0 {
				return nil, invalid(fmt.Sprintf("responses[%d].after", i), "not a duration (30m, 2h)")
			}
			wr.After = journey.Duration(d)
		}
		in.Responses = append(in.Responses, wr)
	}
	w, err := journey.WalkPath(j, in)
	var je *journey.Error
	if errors.As(err, &je) && je.Step == "" && strings.HasPrefix(je.Field, "match.") {
		return nil, invalid(je.Field, "%s", je.Reason) // the request's match, not the journey
	}
	if err != nil {
		return nil, h.c.mapErr("walk", err)
	}
	out := &omegav1.DryRunJourneyResponse{Status: w.Status, JourneyVersion: int32(j.Version)}
	for _, st := range w.Steps {
		out.Steps = append(out.Steps, &omegav1.WalkStep{Step: st.Step, Kind: st.Kind, Outcome: st.Outcome, Channel: st.Channel,
			Title: st.Title, Body: st.Body, Next: st.Next})
	}
	return connect.NewResponse(out), nil
}

func (h journeyService) ValidateJourney(_ context.Context, req *connect.Request[omegav1.ValidateJourneyRequest]) (*connect.Response[omegav1.ValidateJourneyResponse], error) {
	if err := h.c.validate(req.Msg.GetJourney()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ValidateJourneyResponse{}), nil
}

func (h journeyService) ApplyJourney(ctx context.Context, req *connect.Request[omegav1.ApplyJourneyRequest]) (*connect.Response[omegav1.ApplyJourneyResponse], error) {
	a, err := h.c.apply(ctx, req.Msg.GetJourney(), req.Msg.GetDraft())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ApplyJourneyResponse{Applied: a}), nil
}

func (h journeyService) GetJourney(ctx context.Context, req *connect.Request[omegav1.GetJourneyRequest]) (*connect.Response[omegav1.GetJourneyResponse], error) {
	s, err := h.c.get(ctx, req.Msg.GetId(), req.Msg.GetVersion())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.GetJourneyResponse{Journey: s}), nil
}

func (h journeyService) ListJourneys(ctx context.Context, _ *connect.Request[omegav1.ListJourneysRequest]) (*connect.Response[omegav1.ListJourneysResponse], error) {
	ss, err := h.c.list(ctx)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ListJourneysResponse{Journeys: ss}), nil
}

func (h journeyService) DisableJourney(ctx context.Context, req *connect.Request[omegav1.DisableJourneyRequest]) (*connect.Response[omegav1.DisableJourneyResponse], error) {
	if err := h.c.disable(ctx, req.Msg.GetId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.DisableJourneyResponse{}), nil
}
