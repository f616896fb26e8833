package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/versioned"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/workflows"
)

// SpecStore keeps rules or journeys as versions (cep.RuleStore, journey.Store).
type SpecStore[T any] interface {
	Validate(T) error
	Apply(ctx context.Context, v T) (versioned.Applied, error)
	Draft(ctx context.Context, v T) (versioned.Applied, error)
	Activate(ctx context.Context, id string, version int) error
	Get(ctx context.Context, id string) (T, error)
	Version(ctx context.Context, id string, version int) (T, error)
	List(ctx context.Context) ([]T, error)
	Disable(ctx context.Context, id string) error
}

// specs serves one kind of data through its store: decoding, errors naming the field, and the
// wire shapes.
type specs[T any] struct {
	kind  string // "rule" or "journey": the request field and the error prefix
	store SpecStore[T]
	parse func([]byte) (T, error)
	meta  func(T) (id string, version int, disabled bool)
	field func(error) (string, bool) // the offending field of a validation error
	srv   *server
	// idField is the request field naming one ("id" when empty).
	idField string
}

func (c *specs[T]) idName() string {
	if c.idField == "" {
		return "id"
	}
	return c.idField
}

func (c *specs[T]) decode(s *structpb.Struct) (T, error) {
	var zero T
	if s == nil {
		return zero, invalid(c.kind, "required: the %s as in its file, as a JSON object", c.kind)
	}
	b, err := protojson.Marshal(s)
	if err != nil {
		return zero, invalid(c.kind, "%v", err)
	}
	v, err := c.parse(b)
	if err != nil {
		return zero, c.mapErr("parse", err)
	}
	return v, nil
}

// mapErr names the field of a validation error, and maps not found and backend failures.
func (c *specs[T]) mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if field, ok := c.field(err); ok {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %w", field, err))
	}
	if errors.Is(err, versioned.ErrNotFound) || errors.Is(err, journey.ErrNotFound) {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s: not found", c.kind))
	}
	return c.srv.internal(what+" "+c.kind, err)
}

func (c *specs[T]) stored(v T) (*omegav1.Stored, error) {
	id, version, disabled := c.meta(v)
	b, err := json.Marshal(v)
	if err != nil {
		return nil, c.srv.internal("encode "+c.kind, err)
	}
	var s structpb.Struct
	if err := protojson.Unmarshal(b, &s); err != nil {
		return nil, c.srv.internal("encode "+c.kind, err)
	}
	return &omegav1.Stored{Id: id, Version: int32(version), Disabled: disabled, Spec: &s}, nil
}

func (c *specs[T]) validate(s *structpb.Struct) error {
	v, err := c.decode(s)
	if err != nil {
		return err
	}
	if err := c.store.Validate(v); err != nil {
		return c.mapErr("validate", err)
	}
	return nil
}

func (c *specs[T]) apply(ctx context.Context, s *structpb.Struct, draft bool) (*omegav1.Applied, error) {
	v, err := c.decode(s)
	if err != nil {
		return nil, err
	}
	apply := c.store.Apply
	if draft {
		apply = c.store.Draft
	}
	a, err := apply(ctx, v)
	if err != nil {
		return nil, c.mapErr("apply", err)
	}
	return &omegav1.Applied{Id: a.ID, Version: int32(a.Version), Status: a.Status}, nil
}

// load returns the active version of id, or the version asked for.
func (c *specs[T]) load(ctx context.Context, idField, id string, version int32) (T, error) {
	var zero T
	switch {
	case id == "":
		return zero, invalid(idField, "required")
	case version < 0:
		return zero, invalid("version", "must not be negative")
	}
	var v T
	var err error
	if version == 0 {
		v, err = c.store.Get(ctx, id)
	} else {
		v, err = c.store.Version(ctx, id, int(version))
	}
	if err != nil {
		return zero, c.mapErr("get", err)
	}
	return v, nil
}

func (c *specs[T]) get(ctx context.Context, id string, version int32) (*omegav1.Stored, error) {
	v, err := c.load(ctx, c.idName(), id, version)
	if err != nil {
		return nil, err
	}
	return c.stored(v)
}

// activate makes a stored version active; one that no longer validates is FailedPrecondition.
func (c *specs[T]) activate(ctx context.Context, id string, version int32) error {
	switch {
	case id == "":
		return invalid(c.idName(), "required")
	case version <= 0:
		return invalid("version", "required: the stored version to activate")
	}
	err := c.store.Activate(ctx, id, int(version))
	if field, ok := c.field(err); ok {
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("version %d no longer validates: %s: %w", version, field, err))
	}
	if err != nil {
		return c.mapErr("activate", err)
	}
	return nil
}

func (c *specs[T]) list(ctx context.Context) ([]*omegav1.Stored, error) {
	vs, err := c.store.List(ctx)
	if err != nil {
		return nil, c.mapErr("list", err)
	}
	out := make([]*omegav1.Stored, 0, len(vs))
	for _, v := range vs {
		s, err := c.stored(v)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (c *specs[T]) disable(ctx context.Context, id string) error {
	if id == "" {
		return invalid(c.idName(), "required")
	}
	if err := c.store.Disable(ctx, id); err != nil {
		return c.mapErr("disable", err)
	}
	return nil
}

func ruleSpecs(s *server, st SpecStore[cep.Rule]) *specs[cep.Rule] {
	return &specs[cep.Rule]{kind: "rule", store: st, parse: cep.ParseRule, srv: s,
		meta: func(r cep.Rule) (string, int, bool) { return r.ID, r.Version, r.Disabled },
		field: func(err error) (string, bool) {
			var re *cep.RuleError
			if errors.As(err, &re) {
				return "rule." + re.Field, true
			}
			return "", false
		}}
}

func journeySpecs(s *server, st SpecStore[journey.Journey]) *specs[journey.Journey] {
	return &specs[journey.Journey]{kind: "journey", store: st, parse: journey.Parse, srv: s,
		meta: func(j journey.Journey) (string, int, bool) { return j.ID, j.Version, j.Disabled },
		field: func(err error) (string, bool) {
			var je *journey.Error
			if !errors.As(err, &je) {
				return "", false
			}
			if je.Step != "" {
				return "journey.steps[" + je.Step + "]." + je.Field, true
			}
			return "journey." + je.Field, true
		}}
}

// ruleService and journeyService are the connect handlers.
type ruleService struct {
	c        *specs[cep.Rule]
	rdb      redis.UniversalClient // scratch state of dry runs
	backfill Backfiller            // nil: BackfillRule is Unimplemented
}

func (h ruleService) ValidateRule(_ context.Context, req *connect.Request[omegav1.ValidateRuleRequest]) (*connect.Response[omegav1.ValidateRuleResponse], error) {
	if err := h.c.validate(req.Msg.GetRule()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ValidateRuleResponse{}), nil
}

func (h ruleService) ApplyRule(ctx context.Context, req *connect.Request[omegav1.ApplyRuleRequest]) (*connect.Response[omegav1.ApplyRuleResponse], error) {
	a, err := h.c.apply(ctx, req.Msg.GetRule(), req.Msg.GetDraft())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ApplyRuleResponse{Applied: a}), nil
}

func (h ruleService) GetRule(ctx context.Context, req *connect.Request[omegav1.GetRuleRequest]) (*connect.Response[omegav1.GetRuleResponse], error) {
	s, err := h.c.get(ctx, req.Msg.GetId(), req.Msg.GetVersion())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.GetRuleResponse{Rule: s}), nil
}

func (h ruleService) ListRules(ctx context.Context, _ *connect.Request[omegav1.ListRulesRequest]) (*connect.Response[omegav1.ListRulesResponse], error) {
	ss, err := h.c.list(ctx)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ListRulesResponse{Rules: ss}), nil
}

func (h ruleService) DisableRule(ctx context.Context, req *connect.Request[omegav1.DisableRuleRequest]) (*connect.Response[omegav1.DisableRuleResponse], error) {
	if err := h.c.disable(ctx, req.Msg.GetId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.DisableRuleResponse{}), nil
}

func (h ruleService) ActivateRule(ctx context.Context, req *connect.Request[omegav1.ActivateRuleRequest]) (*connect.Response[omegav1.ActivateRuleResponse], error) {
	if err := h.c.activate(ctx, req.Msg.GetId(), req.Msg.GetVersion()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ActivateRuleResponse{}), nil
}

// maxDryRunEvents bounds one DryRunRule call.
const maxDryRunEvents = 10000

func (h ruleService) DryRunRule(ctx context.Context, req *connect.Request[omegav1.DryRunRuleRequest]) (*connect.Response[omegav1.DryRunRuleResponse], error) {
	m := req.Msg
	if h.rdb == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("dry runs need Redis, which this server is not given"))
	}
	var r cep.Rule
	var err error
	switch {
	case m.GetRule() != nil && m.GetRuleId() != "":
		return nil, invalid("rule", "give either rule or rule_id, not both")
	case m.GetRule() != nil:
		if r, err = h.c.decode(m.GetRule()); err == nil {
			err = h.c.mapErr("validate", h.c.store.Validate(r))
		}
	default:
		r, err = h.c.load(ctx, "rule_id", m.GetRuleId(), 0)
	}
	if err != nil {
		return nil, err
	}
	evs, err := h.c.srv.decodeEvents(m.GetEvents(), maxDryRunEvents)
	if err != nil {
		return nil, err
	}
	r.Disabled, r.Shadow = false, false
	ms, err := cep.DryRun(ctx, h.rdb, []cep.Rule{r}, evs)
	if err != nil {
		return nil, h.c.srv.internal("dry run", err)
	}
	out := &omegav1.DryRunRuleResponse{}
	for _, mt := range ms {
		dm := &omegav1.DryRunMatch{RuleId: mt.RuleID, UserId: mt.UserID, JourneyId: mt.JourneyID, MatchKey: mt.MatchKey,
			ReachId: workflows.ReachID(mt.RuleID, mt.UserID, mt.MatchKey)}
		if len(mt.Attrs) > 0 {
			dm.Attrs, _ = structpb.NewStruct(mt.Attrs)
		}
		out.Matches = append(out.Matches, dm)
	}
	return connect.NewResponse(out), nil
}

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

type templateService struct{ c *specs[journey.Journey] }

func (h templateService) RenderPreview(ctx context.Context, req *connect.Request[omegav1.RenderPreviewRequest]) (*connect.Response[omegav1.RenderPreviewResponse], error) {
	m := req.Msg
	if m.GetJourneyId() == "" {
		return nil, invalid("journey_id", "required")
	}
	if m.GetTemplateId() == "" {
		return nil, invalid("template_id", "required")
	}
	j, err := h.c.store.Get(ctx, m.GetJourneyId())
	if err != nil {
		return nil, h.c.mapErr("get", err)
	}
	t, ok := j.Templates[m.GetTemplateId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("template_id: journey %s has no template %q", j.ID, m.GetTemplateId()))
	}
	title, body, err := t.Render(m.GetLocale(), m.GetFields().AsMap())
	if err != nil {
		return nil, invalid("fields", "%v", err)
	}
	return connect.NewResponse(&omegav1.RenderPreviewResponse{Title: title, Body: body, JourneyVersion: int32(j.Version)}), nil
}
