package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	saramamocks "github.com/IBM/sarama/mocks"
	"github.com/stretchr/testify/require"
	temporalmocks "go.temporal.io/sdk/mocks"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// serve runs the API over HTTP with the backends cfg names, and mocks of Kafka and Temporal (which
// the services under test must not call) for the rest.
func serve(t *testing.T, cfg api.Config) *httptest.Server {
	t.Helper()
	cfg.Producer = saramamocks.NewSyncProducer(t, nil)
	cfg.Temporal = &temporalmocks.Client{}
	if cfg.Journeys == nil {
		cfg.Journeys = func(string) bool { return true }
	}
	cfg.Log = slog.New(slog.DiscardHandler)
	h, err := api.NewHandler(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func mustStruct(t *testing.T, v map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(v)
	require.NoError(t, err)
	return s
}

// RuleService and JourneyService on the real PostgreSQL: apply as data, versions, validation
// errors naming the field.
func TestRuleAndJourneyServices(t *testing.T) {
	env := testenv.Require(t)
	store := env.Audit(t)
	journeys := journey.NewStore(store.Pool(), journey.Catalog{Channels: []string{"push", "sms"}})
	rules := cep.NewRuleStore(store.Pool(), cep.Catalog{Journey: func(id string) bool {
		_, err := journeys.Active(context.Background(), id)
		return err == nil
	}})
	srv := serve(t, api.Config{Audit: store, RuleStore: rules, JourneyStore: journeys})
	jc := omegav1connect.NewJourneyServiceClient(srv.Client(), srv.URL)
	rc := omegav1connect.NewRuleServiceClient(srv.Client(), srv.URL)
	ctx := context.Background()

	jid := testenv.Unique("j-")
	spec := func(channel string) map[string]any {
		return map[string]any{"id": jid, "templates": map[string]any{"t": map[string]any{"body": "hi"}},
			"steps": []any{map[string]any{"id": "push", "send": map[string]any{"channel": channel, "template": "t"}}}}
	}

	_, err := jc.ValidateJourney(ctx, connect.NewRequest(&omegav1.ValidateJourneyRequest{Journey: mustStruct(t, spec("pigeon"))}))
	requireInvalid(t, err, "journey.steps[push].send.channel")
	_, err = jc.ApplyJourney(ctx, connect.NewRequest(&omegav1.ApplyJourneyRequest{}))
	requireInvalid(t, err, "journey")
	bad := spec("push")
	bad["stpes"] = []any{}
	_, err = jc.ApplyJourney(ctx, connect.NewRequest(&omegav1.ApplyJourneyRequest{Journey: mustStruct(t, bad)}))
	requireInvalid(t, err, "journey.(document)")

	_, err = jc.ValidateJourney(ctx, connect.NewRequest(&omegav1.ValidateJourneyRequest{Journey: mustStruct(t, spec("push"))}))
	require.NoError(t, err)
	for _, want := range []*omegav1.Applied{{Id: jid, Version: 1, Status: "created"}, {Id: jid, Version: 1, Status: "unchanged"}} {
		res, err := jc.ApplyJourney(ctx, connect.NewRequest(&omegav1.ApplyJourneyRequest{Journey: mustStruct(t, spec("push"))}))
		require.NoError(t, err)
		require.Equal(t, want.String(), res.Msg.GetApplied().String())
	}
	res, err := jc.ApplyJourney(ctx, connect.NewRequest(&omegav1.ApplyJourneyRequest{Journey: mustStruct(t, spec("sms"))}))
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Msg.GetApplied().GetVersion())

	got, err := jc.GetJourney(ctx, connect.NewRequest(&omegav1.GetJourneyRequest{Id: jid}))
	require.NoError(t, err)
	require.EqualValues(t, 2, got.Msg.GetJourney().GetVersion())
	steps := got.Msg.GetJourney().GetSpec().AsMap()["steps"].([]any)
	require.Equal(t, "sms", steps[0].(map[string]any)["send"].(map[string]any)["channel"])
	_, err = jc.GetJourney(ctx, connect.NewRequest(&omegav1.GetJourneyRequest{Id: jid + "-nope"}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))

	// Preview a template of the journey's active version.
	tc := omegav1connect.NewTemplateServiceClient(srv.Client(), srv.URL)
	withVars := spec("sms")
	withVars["templates"] = map[string]any{"t": map[string]any{"body": "Hi {{.name}}, {{.item_id}} is back",
		"defaults": map[string]any{"name": "there"}, "locales": map[string]any{"de": map[string]any{"body": "Hallo {{.name}}, {{.item_id}} ist da"}}}}
	_, err = jc.ApplyJourney(ctx, connect.NewRequest(&omegav1.ApplyJourneyRequest{Journey: mustStruct(t, withVars)}))
	require.NoError(t, err)
	pv, err := tc.RenderPreview(ctx, connect.NewRequest(&omegav1.RenderPreviewRequest{JourneyId: jid, TemplateId: "t", Locale: "de-CH",
		Fields: mustStruct(t, map[string]any{"item_id": "sku-1"})}))
	require.NoError(t, err)
	require.Equal(t, "Hallo there, sku-1 ist da", pv.Msg.GetBody())
	require.EqualValues(t, 3, pv.Msg.GetJourneyVersion())
	_, err = tc.RenderPreview(ctx, connect.NewRequest(&omegav1.RenderPreviewRequest{JourneyId: jid, TemplateId: "t", Fields: mustStruct(t, map[string]any{})}))
	requireInvalid(t, err, "fields")
	require.Contains(t, err.Error(), "item_id")
	_, err = tc.RenderPreview(ctx, connect.NewRequest(&omegav1.RenderPreviewRequest{JourneyId: jid, TemplateId: "nope"}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))

	// A rule that starts the journey; validation names the rule's field.
	rule := func(where string) map[string]any {
		return map[string]any{"id": jid + "-rule", "steps": []any{map[string]any{"type": "cart_add", "where": where}}, "journey_id": jid}
	}
	_, err = rc.ApplyRule(ctx, connect.NewRequest(&omegav1.ApplyRuleRequest{Rule: mustStruct(t, rule("event.attrs.x +"))}))
	requireInvalid(t, err, "rule.steps[0].where")
	noJourney := rule("true")
	noJourney["journey_id"] = "nope"
	_, err = rc.ValidateRule(ctx, connect.NewRequest(&omegav1.ValidateRuleRequest{Rule: mustStruct(t, noJourney)}))
	requireInvalid(t, err, "rule.journey_id")
	ar, err := rc.ApplyRule(ctx, connect.NewRequest(&omegav1.ApplyRuleRequest{Rule: mustStruct(t, rule(`event.item_id != ""`))}))
	require.NoError(t, err)
	require.Equal(t, "created", ar.Msg.GetApplied().GetStatus())
	list, err := rc.ListRules(ctx, connect.NewRequest(&omegav1.ListRulesRequest{}))
	require.NoError(t, err)
	found := false
	for _, r := range list.Msg.GetRules() {
		found = found || r.GetId() == jid+"-rule"
	}
	require.True(t, found)

	// Disabling the journey stops new runs and makes rules that start it invalid.
	_, err = jc.DisableJourney(ctx, connect.NewRequest(&omegav1.DisableJourneyRequest{Id: jid}))
	require.NoError(t, err)
	lj, err := jc.ListJourneys(ctx, connect.NewRequest(&omegav1.ListJourneysRequest{}))
	require.NoError(t, err)
	for _, j := range lj.Msg.GetJourneys() {
		if j.GetId() == jid {
			require.True(t, j.GetDisabled())
		}
	}
	_, err = rc.DisableRule(ctx, connect.NewRequest(&omegav1.DisableRuleRequest{Id: jid + "-rule"}))
	require.NoError(t, err)
	_, err = rc.DisableRule(ctx, connect.NewRequest(&omegav1.DisableRuleRequest{}))
	requireInvalid(t, err, "id")
}
