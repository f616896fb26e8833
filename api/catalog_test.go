package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	saramamocks "github.com/IBM/sarama/mocks"
	"github.com/stretchr/testify/require"
	temporalmocks "go.temporal.io/sdk/mocks"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/apikey"
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
	if cfg.Keys == nil {
		cfg.Keys = testKeys
	}
	h, err := api.NewHandler(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// Test keys: admin grants every scope; the others one scope each.
const (
	adminKey   = "omk_test-admin"
	ingestKey  = "omk_test-ingest"
	triggerKey = "omk_test-trigger"
	readKey    = "omk_test-read"
)

var testKeys = apikey.Static{
	adminKey:   {ID: "a1", Name: "test-admin", Scopes: []string{apikey.ScopeAdmin}},
	ingestKey:  {ID: "i1", Name: "test-ingest", Scopes: []string{apikey.ScopeIngest}},
	triggerKey: {ID: "t1", Name: "test-trigger", Scopes: []string{apikey.ScopeTrigger}},
	readKey:    {ID: "r1", Name: "test-read", Scopes: []string{apikey.ScopeRead}},
}

// keyed is an HTTP client that sends key with every request.
func keyed(srv *httptest.Server, key string) *http.Client {
	c := *srv.Client()
	c.Transport = keyTransport{key: key, next: srv.Client().Transport}
	return &c
}

type keyTransport struct {
	key  string
	next http.RoundTripper
}

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+k.key)
	return k.next.RoundTrip(r)
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
	jc := omegav1connect.NewJourneyServiceClient(keyed(srv, adminKey), srv.URL)
	rc := omegav1connect.NewRuleServiceClient(keyed(srv, adminKey), srv.URL)
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
	requireInvalid(t, err, "journey.stpes")

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
	tc := omegav1connect.NewTemplateServiceClient(keyed(srv, adminKey), srv.URL)
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

// Versions as data: a draft is stored but not taken; activate moves the head (a rollback too); a
// version that no longer validates is FailedPrecondition. Dry runs of rules over sample events.
func TestDraftActivateAndDryRunRule(t *testing.T) {
	env := testenv.Require(t)
	store := env.Audit(t)
	journeys := journey.NewStore(store.Pool(), journey.Catalog{Channels: []string{"push", "sms"}})
	rules := cep.NewRuleStore(store.Pool(), cep.Catalog{Journey: func(id string) bool {
		_, err := journeys.Active(context.Background(), id)
		return err == nil
	}})
	srv := serve(t, api.Config{Audit: store, RuleStore: rules, JourneyStore: journeys, Redis: env.Redis(t)})
	jc := omegav1connect.NewJourneyServiceClient(keyed(srv, adminKey), srv.URL)
	rc := omegav1connect.NewRuleServiceClient(keyed(srv, adminKey), srv.URL)
	ctx := context.Background()
	jid := testenv.Unique("jd-")
	spec := func(channel string) *structpb.Struct {
		return mustStruct(t, map[string]any{"id": jid, "templates": map[string]any{"t": map[string]any{"body": "hi"}},
			"steps": []any{map[string]any{"id": "s", "send": map[string]any{"channel": channel, "template": "t"}}}})
	}
	channelOf := func(version int32) string {
		t.Helper()
		got, err := jc.GetJourney(ctx, connect.NewRequest(&omegav1.GetJourneyRequest{Id: jid, Version: version}))
		require.NoError(t, err)
		return got.Msg.GetJourney().GetSpec().AsMap()["steps"].([]any)[0].(map[string]any)["send"].(map[string]any)["channel"].(string)
	}

	_, err := jc.ApplyJourney(ctx, connect.NewRequest(&omegav1.ApplyJourneyRequest{Journey: spec("push")}))
	require.NoError(t, err)
	d, err := jc.ApplyJourney(ctx, connect.NewRequest(&omegav1.ApplyJourneyRequest{Journey: spec("sms"), Draft: true}))
	require.NoError(t, err)
	require.Equal(t, (&omegav1.Applied{Id: jid, Version: 2, Status: "draft"}).String(), d.Msg.GetApplied().String())
	require.Equal(t, "push", channelOf(0), "a draft is not active")
	require.Equal(t, "sms", channelOf(2))

	_, err = jc.ActivateJourney(ctx, connect.NewRequest(&omegav1.ActivateJourneyRequest{Id: jid, Version: 2}))
	require.NoError(t, err)
	require.Equal(t, "sms", channelOf(0))
	_, err = jc.ActivateJourney(ctx, connect.NewRequest(&omegav1.ActivateJourneyRequest{Id: jid, Version: 1}))
	require.NoError(t, err)
	require.Equal(t, "push", channelOf(0), "rolled back")

	_, err = jc.ActivateJourney(ctx, connect.NewRequest(&omegav1.ActivateJourneyRequest{Id: jid, Version: 9}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
	_, err = jc.ActivateJourney(ctx, connect.NewRequest(&omegav1.ActivateJourneyRequest{Id: jid}))
	requireInvalid(t, err, "version")
	_, err = jc.GetJourney(ctx, connect.NewRequest(&omegav1.GetJourneyRequest{Id: jid, Version: -1}))
	requireInvalid(t, err, "version")

	// A version stored when the catalog had a channel that is gone now cannot be activated.
	wider := journey.NewStore(store.Pool(), journey.Catalog{Channels: []string{"push", "sms", "pigeon"}})
	var pj journey.Journey
	require.NoError(t, json.Unmarshal([]byte(`{"id":"`+jid+`","templates":{"t":{"body":"coo"}},"steps":[{"id":"s","send":{"channel":"pigeon","template":"t"}}]}`), &pj))
	old, err := wider.Draft(ctx, pj)
	require.NoError(t, err)
	_, err = jc.ActivateJourney(ctx, connect.NewRequest(&omegav1.ActivateJourneyRequest{Id: jid, Version: int32(old.Version)}))
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "%v", err)
	require.Contains(t, err.Error(), "journey.steps[s].send.channel")
	require.Equal(t, "push", channelOf(0))

	// Dry-run a rule inline and by ID.
	rule := mustStruct(t, map[string]any{"id": jid + "-r", "kind": "count", "count": 2, "within": "1h", "journey_id": jid,
		"steps": []any{map[string]any{"type": "view", "where": `event.attrs.price > 10`}}})
	ev := func(id, user string, price float64, at time.Time) *omegav1.Event {
		return &omegav1.Event{EventId: id, UserId: user, Type: "view", ItemId: "i1", Ts: timestamppb.New(at), Attrs: mustStruct(t, map[string]any{"price": price})}
	}
	now := time.Now().Add(-time.Hour)
	evs := []*omegav1.Event{ev("e1", "ann", 20, now), ev("e2", "bob", 20, now), ev("e3", "ann", 5, now.Add(time.Minute)),
		ev("e4", "ann", 30, now.Add(2*time.Minute))}
	rd := omegav1connect.NewRuleServiceClient(keyed(srv, readKey), srv.URL)
	res, err := rd.DryRunRule(ctx, connect.NewRequest(&omegav1.DryRunRuleRequest{Rule: rule, Events: evs}))
	require.NoError(t, err)
	require.Len(t, res.Msg.GetMatches(), 1)
	m := res.Msg.GetMatches()[0]
	require.Equal(t, "ann", m.GetUserId())
	require.Equal(t, jid, m.GetJourneyId())
	require.True(t, strings.HasPrefix(m.GetReachId(), "reach/"+jid+"-r/ann/"), m.GetReachId())

	_, err = rc.ApplyRule(ctx, connect.NewRequest(&omegav1.ApplyRuleRequest{Rule: rule}))
	require.NoError(t, err)
	byID, err := rd.DryRunRule(ctx, connect.NewRequest(&omegav1.DryRunRuleRequest{RuleId: jid + "-r", Events: evs}))
	require.NoError(t, err)
	require.Len(t, byID.Msg.GetMatches(), 1)

	bad := []*omegav1.Event{ev("e1", "ann", 20, now), {EventId: "e2", UserId: "ann", Type: "View!", Ts: timestamppb.New(now)}}
	_, err = rd.DryRunRule(ctx, connect.NewRequest(&omegav1.DryRunRuleRequest{RuleId: jid + "-r", Events: bad}))
	requireInvalid(t, err, "events[1].type")
	_, err = rd.DryRunRule(ctx, connect.NewRequest(&omegav1.DryRunRuleRequest{Rule: rule, RuleId: "x", Events: evs}))
	requireInvalid(t, err, "rule")
	_, err = rd.DryRunRule(ctx, connect.NewRequest(&omegav1.DryRunRuleRequest{Events: evs}))
	requireInvalid(t, err, "rule_id")
	_, err = rd.DryRunRule(ctx, connect.NewRequest(&omegav1.DryRunRuleRequest{RuleId: "nope-" + jid, Events: evs}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))
	_, err = rd.DryRunRule(ctx, connect.NewRequest(&omegav1.DryRunRuleRequest{RuleId: jid + "-r"}))
	requireInvalid(t, err, "events")
	// Rule versions: get one, draft and activate, roll back; one whose journey is gone now cannot
	// be activated.
	ruleOn := func(journeyID string) *structpb.Struct {
		return mustStruct(t, map[string]any{"id": jid + "-r", "kind": "count", "count": 3, "within": "1h", "journey_id": journeyID,
			"steps": []any{map[string]any{"type": "view"}}})
	}
	d2, err := rc.ApplyRule(ctx, connect.NewRequest(&omegav1.ApplyRuleRequest{Rule: ruleOn(jid), Draft: true}))
	require.NoError(t, err)
	require.Equal(t, "draft", d2.Msg.GetApplied().GetStatus())
	v2 := d2.Msg.GetApplied().GetVersion()
	got1, err := rd.GetRule(ctx, connect.NewRequest(&omegav1.GetRuleRequest{Id: jid + "-r"}))
	require.NoError(t, err)
	require.EqualValues(t, 2, got1.Msg.GetRule().GetSpec().AsMap()["count"], "the draft is not active")
	_, err = rc.ActivateRule(ctx, connect.NewRequest(&omegav1.ActivateRuleRequest{Id: jid + "-r", Version: v2}))
	require.NoError(t, err)
	gotV, err := rd.GetRule(ctx, connect.NewRequest(&omegav1.GetRuleRequest{Id: jid + "-r"}))
	require.NoError(t, err)
	require.Equal(t, v2, gotV.Msg.GetRule().GetVersion())
	_, err = rc.ActivateRule(ctx, connect.NewRequest(&omegav1.ActivateRuleRequest{Id: jid + "-r", Version: 1}))
	require.NoError(t, err, "roll back")
	old1, err := rd.GetRule(ctx, connect.NewRequest(&omegav1.GetRuleRequest{Id: jid + "-r", Version: v2}))
	require.NoError(t, err)
	require.EqualValues(t, 3, old1.Msg.GetRule().GetSpec().AsMap()["count"])
	for field, req := range map[string]*omegav1.ActivateRuleRequest{"id": {Version: 1}, "version": {Id: jid + "-r", Version: -2}} {
		_, err = rc.ActivateRule(ctx, connect.NewRequest(req))
		requireInvalid(t, err, field)
	}
	_, err = rc.ActivateRule(ctx, connect.NewRequest(&omegav1.ActivateRuleRequest{Id: jid + "-r", Version: 99}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))
	_, err = rd.GetRule(ctx, connect.NewRequest(&omegav1.GetRuleRequest{Id: jid + "-r", Version: 99}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))
	_, err = rd.GetRule(ctx, connect.NewRequest(&omegav1.GetRuleRequest{}))
	requireInvalid(t, err, "id")
	_, err = jc.DisableJourney(ctx, connect.NewRequest(&omegav1.DisableJourneyRequest{Id: jid}))
	require.NoError(t, err)
	_, err = rc.ActivateRule(ctx, connect.NewRequest(&omegav1.ActivateRuleRequest{Id: jid + "-r", Version: v2}))
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "its journey is disabled now: %v", err)
	require.Contains(t, err.Error(), "rule.journey_id")

	// A read key may dry-run but not apply.
	_, err = rd.ApplyRule(ctx, connect.NewRequest(&omegav1.ApplyRuleRequest{Rule: rule}))
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err))
}

// DryRunJourney walks the retargeting journey for a hypothetical user: no response means push then
// SMS; a push_open within the timeout ends after the push; a refused push falls back; a missing
// template variable names the step.
func TestDryRunJourney(t *testing.T) {
	var spec map[string]any
	for _, j := range journey.Demo() {
		if j.ID == "cart-retarget" {
			b, err := json.Marshal(j)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &spec))
		}
	}
	require.NotNil(t, spec)
	srv := serve(t, api.Config{Audit: audit.NewStore(nil), JourneyStore: nopSpecs[journey.Journey]{}})
	jc := omegav1connect.NewJourneyServiceClient(keyed(srv, readKey), srv.URL)
	ctx := context.Background()
	walk := func(req *omegav1.DryRunJourneyRequest) ([]string, string, error) {
		req.Journey = mustStruct(t, spec)
		res, err := jc.DryRunJourney(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, "", err
		}
		var steps []string
		for _, s := range res.Msg.GetSteps() {
			steps = append(steps, s.GetStep()+":"+s.GetOutcome())
		}
		return steps, res.Msg.GetStatus(), nil
	}
	match := mustStruct(t, map[string]any{"item_id": "sku-9"})

	steps, status, err := walk(&omegav1.DryRunJourneyRequest{UserId: "ann", Match: match})
	require.NoError(t, err)
	require.Equal(t, []string{"push:sent", "wait_open:timeout", "sms:sent"}, steps)
	require.Equal(t, "sent", status)

	steps, _, err = walk(&omegav1.DryRunJourneyRequest{UserId: "ann", Match: match,
		Responses: []*omegav1.DryRunResponse{{Type: "push_open", After: "2h"}}})
	require.NoError(t, err)
	require.Equal(t, []string{"push:sent", "wait_open:response push_open"}, steps)

	steps, status, err = walk(&omegav1.DryRunJourneyRequest{UserId: "ann", Match: match,
		Responses: []*omegav1.DryRunResponse{{Type: "order_paid", After: "1h"}}})
	require.NoError(t, err)
	require.Equal(t, "converted", status, "%v", steps)

	res, err := jc.DryRunJourney(ctx, connect.NewRequest(&omegav1.DryRunJourneyRequest{Journey: mustStruct(t, spec), UserId: "ann",
		Match: match, Locale: "de", FailedChannels: []string{"push"}}))
	require.NoError(t, err)
	first := res.Msg.GetSteps()[0]
	require.Equal(t, "fallback to sms", first.GetOutcome())
	require.Equal(t, "sms", first.GetChannel())
	require.Contains(t, first.GetBody(), "sku-9")

	_, _, err = walk(&omegav1.DryRunJourneyRequest{UserId: "ann", Responses: []*omegav1.DryRunResponse{{Type: "view"}}})
	requireInvalid(t, err, "responses[0].type")
	_, _, err = walk(&omegav1.DryRunJourneyRequest{UserId: "ann", Responses: []*omegav1.DryRunResponse{{Type: "push_open", After: "soon"}}})
	requireInvalid(t, err, "responses[0].after")
	_, _, err = walk(&omegav1.DryRunJourneyRequest{})
	requireInvalid(t, err, "user_id")
	_, _, err = walk(&omegav1.DryRunJourneyRequest{UserId: "ann", Match: mustStruct(t, map[string]any{"attrs": "x"})})
	requireInvalid(t, err, "match.attrs")
	_, _, err = walk(&omegav1.DryRunJourneyRequest{UserId: "ann", Match: mustStruct(t, map[string]any{"item_id": 7})})
	requireInvalid(t, err, "match.item_id")
	_, err = jc.DryRunJourney(ctx, connect.NewRequest(&omegav1.DryRunJourneyRequest{UserId: "ann"}))
	requireInvalid(t, err, "journey_id")

	// A template variable nothing fills names the step.
	spec["templates"].(map[string]any)["cart_push"].(map[string]any)["defaults"] = map[string]any{}
	_, _, err = walk(&omegav1.DryRunJourneyRequest{UserId: "ann"})
	requireInvalid(t, err, "journey.steps[push].send.template")
}
