package console

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

var funcs = template.FuncMap{
	"say": Say,
	"when": func(ts *timestamppb.Timestamp) string {
		return ts.AsTime().UTC().Format("2006-01-02 15:04:05.000")
	},
	"add": func(a, b int) int { return a + b },
	"mul": func(a, b int) int { return a * b },
}

// period is a page's range, from its from and to parameters (datetime-local, UTC): the last 24
// hours by default.
type period struct {
	From, To time.Time
}

const periodLayout = "2006-01-02T15:04"

func (c *console) period(r *http.Request) (period, error) {
	to := c.cfg.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	p := period{From: to.Add(-24 * time.Hour), To: to}
	for _, f := range []struct {
		name string
		into *time.Time
	}{{"from", &p.From}, {"to", &p.To}} {
		v := r.URL.Query().Get(f.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(periodLayout, v)
		if err != nil {
			return p, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: want a time such as 2026-11-30T09:00 (UTC)", f.name))
		}
		*f.into = t
	}
	return p, nil
}

func (p period) FromValue() string { return p.From.Format(periodLayout) }
func (p period) ToValue() string   { return p.To.Format(periodLayout) }
func (p period) Query() string {
	return url.Values{"from": {p.FromValue()}, "to": {p.ToValue()}}.Encode()
}

func (p period) pb() (*timestamppb.Timestamp, *timestamppb.Timestamp) {
	return timestamppb.New(p.From), timestamppb.New(p.To)
}

// specYAML is a stored spec as YAML, the way growth teams write it.
func specYAML(s *structpb.Struct) string {
	b, err := s.MarshalJSON()
	if err != nil {
		return err.Error()
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		return string(b)
	}
	return string(y)
}

func parseJourney(s *omegav1.Stored) (journey.Journey, error) {
	b, err := s.GetSpec().MarshalJSON()
	if err != nil {
		return journey.Journey{}, err
	}
	return journey.Parse(b)
}

type journeyRow struct {
	ID, Description, State string
	Version                int32
	Matched, Converted     int64
}

func state(disabled bool) string {
	if disabled {
		return "disabled"
	}
	return "active"
}

func (c *console) journeysPage(ctx context.Context, r *http.Request) (view, error) {
	p, err := c.period(r)
	if err != nil {
		return view{}, err
	}
	list, err := c.journeys.ListJourneys(ctx, connect.NewRequest(&omegav1.ListJourneysRequest{}))
	if err != nil {
		return view{}, err
	}
	from, to := p.pb()
	var rows []journeyRow
	for _, s := range list.Msg.GetJourneys() {
		row := journeyRow{ID: s.GetId(), Version: s.GetVersion(), State: state(s.GetDisabled())}
		if d, ok := s.GetSpec().GetFields()["description"]; ok {
			row.Description = d.GetStringValue()
		}
		f, err := c.reaches.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: s.GetId(), From: from, To: to}))
		if err != nil {
			return view{}, err
		}
		row.Matched, row.Converted = f.Msg.GetMatched(), f.Msg.GetConverted()
		rows = append(rows, row)
	}
	return view{page: "journeys", title: "Journeys", data: map[string]any{"Journeys": rows, "Period": p}}, nil
}

// versionView is one journey version drawn with its figures.
type versionView struct {
	Version  int32
	Active   bool
	Disabled bool
	Graph    Graph
	YAML     string
	Matched  int64
	Steps    []*omegav1.StepCount
	Err      string
}

// maxVersions bounds the versions drawn side by side.
const maxVersions = 3

func (c *console) journeyPage(ctx context.Context, r *http.Request) (view, error) {
	id := r.PathValue("id")
	p, err := c.period(r)
	if err != nil {
		return view{}, err
	}
	active, err := c.journeys.GetJourney(ctx, connect.NewRequest(&omegav1.GetJourneyRequest{Id: id}))
	if err != nil {
		return view{}, err
	}
	top := active.Msg.GetJourney().GetVersion()
	// The versions asked for (?v=2&v=3), else the active one and the one before.
	var versions []int32
	for _, v := range r.URL.Query()["v"] {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return view{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("v: want a version number, got %q", v))
		}
		if !slices.Contains(versions, int32(n)) {
			versions = append(versions, int32(n))
		}
	}
	if len(versions) == 0 {
		for v := top; v >= 1 && v > top-2; v-- {
			versions = append(versions, v)
		}
	}
	versions = versions[:min(len(versions), maxVersions)]
	from, to := p.pb()
	var out []versionView
	for _, v := range versions {
		stored := active.Msg.GetJourney()
		if v != top {
			got, err := c.journeys.GetJourney(ctx, connect.NewRequest(&omegav1.GetJourneyRequest{Id: id, Version: v}))
			if err != nil {
				return view{}, err
			}
			stored = got.Msg.GetJourney()
		}
		vv := versionView{Version: v, Active: v == top, Disabled: stored.GetDisabled(), YAML: specYAML(stored.GetSpec())}
		steps, err := c.reaches.JourneySteps(ctx, connect.NewRequest(&omegav1.JourneyStepsRequest{JourneyId: id, JourneyVersion: v, From: from, To: to}))
		if err != nil {
			return view{}, err
		}
		vv.Steps = steps.Msg.GetSteps()
		figs := figuresOf(vv.Steps)
		vv.Matched = figs["match"].GetEntered()
		j, err := parseJourney(stored)
		if err != nil {
			vv.Err = err.Error()
		} else {
			vv.Graph = Layout(&j, figs)
		}
		out = append(out, vv)
	}
	var all []int32
	for v := top; v >= 1; v-- {
		all = append(all, v)
	}
	return view{page: "journey", title: "Journey " + id, data: map[string]any{"ID": id, "Versions": out, "All": all, "Period": p}}, nil
}

// funnelView is one funnel chart: the whole, or one split path.
type funnelView struct {
	Name  string
	Chart BarChart
	Resp  *omegav1.FunnelResponse
}

func (c *console) funnelsPage(ctx context.Context, r *http.Request) (view, error) {
	p, err := c.period(r)
	if err != nil {
		return view{}, err
	}
	q := r.URL.Query()
	jid, rule := q.Get("journey"), q.Get("rule")
	version := 0
	if v := q.Get("version"); v != "" {
		if version, err = strconv.Atoi(v); err != nil || version < 0 {
			return view{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("version: want a number, got %q", v))
		}
	}
	js, err := c.journeys.ListJourneys(ctx, connect.NewRequest(&omegav1.ListJourneysRequest{}))
	if err != nil {
		return view{}, err
	}
	rs, err := c.rules.ListRules(ctx, connect.NewRequest(&omegav1.ListRulesRequest{}))
	if err != nil {
		return view{}, err
	}
	data := map[string]any{"Period": p, "Journey": jid, "Rule": rule, "Version": version, "Journeys": js.Msg.GetJourneys(), "Rules": rs.Msg.GetRules()}
	if jid == "" && rule == "" {
		return view{page: "funnels", title: "Funnels", data: data}, nil
	}
	from, to := p.pb()
	req := &omegav1.FunnelRequest{RuleId: rule, JourneyId: jid, JourneyVersion: int32(version), From: from, To: to}
	whole, err := c.reaches.Funnel(ctx, connect.NewRequest(req))
	if err != nil {
		return view{}, err
	}
	funnels := []funnelView{{Name: "all reaches", Chart: funnelChart("all reaches", whole.Msg), Resp: whole.Msg}}
	// A journey with a split: a funnel per path, and the control group's, from the same answer.
	for _, path := range c.splitPaths(ctx, jid, version) {
		f := whole.Msg.GetBySplitPath()[path]
		if f == nil {
			f = &omegav1.FunnelResponse{}
		}
		name := "split path " + path
		if path == journey.Holdout {
			name = "control group (holdout)"
		}
		funnels = append(funnels, funnelView{Name: name, Chart: funnelChart(name, f), Resp: f})
	}
	data["Funnels"] = funnels
	return view{page: "funnels", title: "Funnels", data: data}, nil
}

// splitPaths are the paths of the journey version's splits (and holdout, when it has one).
func (c *console) splitPaths(ctx context.Context, jid string, version int) []string {
	if jid == "" {
		return nil
	}
	got, err := c.journeys.GetJourney(ctx, connect.NewRequest(&omegav1.GetJourneyRequest{Id: jid, Version: int32(version)}))
	if err != nil {
		return nil // the funnel itself still shows; the journey may be gone
	}
	j, err := parseJourney(got.Msg.GetJourney())
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range j.Steps {
		if s.Split == nil {
			continue
		}
		for _, p := range s.Split.Paths {
			out = append(out, p.Name)
		}
		if s.Split.Holdout > 0 {
			out = append(out, journey.Holdout)
		}
	}
	return out
}

type ruleRow struct {
	ID, Journey, State, Description string
	Version                         int32
	Rollout                         int
	Spark                           Spark
}

func (c *console) rulesPage(ctx context.Context, r *http.Request) (view, error) {
	rs, err := c.rules.ListRules(ctx, connect.NewRequest(&omegav1.ListRulesRequest{}))
	if err != nil {
		return view{}, err
	}
	end := c.cfg.Now().UTC()
	from := end.Truncate(time.Hour).Add(-(sparkHours - 1) * time.Hour)
	var rows []ruleRow
	var ids []string
	for _, s := range rs.Msg.GetRules() {
		row := ruleRow{ID: s.GetId(), Version: s.GetVersion(), State: "live"}
		var rule cep.Rule
		if b, err := s.GetSpec().MarshalJSON(); err == nil && json.Unmarshal(b, &rule) == nil {
			row.Journey, row.Description, row.Rollout = rule.JourneyID, rule.Description, rule.Rollout
			if rule.Shadow {
				row.State = "shadow"
			}
		}
		if s.GetDisabled() {
			row.State = "disabled"
		}
		rows = append(rows, row)
		ids = append(ids, s.GetId())
	}
	byRule := map[string][]*omegav1.MatchHour{}
	for chunk := range slices.Chunk(ids, 100) {
		m, err := c.reaches.RuleMatches(ctx, connect.NewRequest(&omegav1.RuleMatchesRequest{RuleIds: chunk,
			From: timestamppb.New(from), To: timestamppb.New(end)}))
		if err != nil {
			return view{}, err
		}
		for _, h := range m.Msg.GetHours() {
			byRule[h.GetRuleId()] = append(byRule[h.GetRuleId()], h)
		}
	}
	for i := range rows {
		rows[i].Spark = spark(byRule[rows[i].ID], end)
	}
	return view{page: "rules", title: "Rules", data: map[string]any{"Rules": rows, "From": from, "To": end}}, nil
}

// reachView is one of a user's reaches, its records oldest first.
type reachView struct {
	ID, Rule, Journey string
	RunURL            string
	Records           []*omegav1.AuditRecord
}

// maxTimeline is the records the user page shows (the API's largest page).
const maxTimeline = 500

func (c *console) userPage(ctx context.Context, r *http.Request) (view, error) {
	user := strings.TrimSpace(r.URL.Query().Get("user_id"))
	data := map[string]any{"User": user}
	if user == "" {
		return view{page: "user", title: "A user", data: data}, nil
	}
	tl, err := c.reaches.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: user, PageSize: maxTimeline}))
	if err != nil {
		return view{}, err
	}
	var reaches []*reachView
	byID := map[string]*reachView{}
	for _, rec := range tl.Msg.GetRecords() {
		rv, ok := byID[rec.GetReachId()]
		if !ok {
			rv = &reachView{ID: rec.GetReachId(), Rule: rec.GetRuleId(), Journey: rec.GetJourneyId(), RunURL: c.runURL(rec.GetReachId())}
			byID[rec.GetReachId()] = rv
			reaches = append(reaches, rv) // newest reach first, as the timeline comes
		}
		rv.Records = append(rv.Records, rec.GetRecord())
	}
	for _, rv := range reaches {
		slices.Reverse(rv.Records)
	}
	data["Reaches"] = reaches
	data["Records"] = len(tl.Msg.GetRecords())
	data["More"] = tl.Msg.GetNextPageToken() != ""
	data["RunsURL"] = c.runsURL(user)
	return view{page: "user", title: "User " + user, data: data}, nil
}

// runsURL lists the user's runs in the Temporal UI, by the UserId search attribute.
func (c *console) runsURL(user string) string {
	q := fmt.Sprintf("UserId=%q", user)
	return fmt.Sprintf("%s/namespaces/%s/workflows?query=%s", c.cfg.TemporalUI, url.PathEscape(c.cfg.Namespace), url.QueryEscape(q))
}

// runURL is one run's page in the Temporal UI (its latest run, by workflow ID).
func (c *console) runURL(reachID string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", c.cfg.TemporalUI, url.PathEscape(c.cfg.Namespace), url.PathEscape(reachID))
}
