package api

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/omegareach/omega/cep"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/workflows"
)

// ruleService is RuleService: rules through their store, dry runs against a scratch stage.
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
