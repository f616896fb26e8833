package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/console"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// The key is entered once, checked with the API, and kept in an HttpOnly, SameSite=Strict
// session cookie; no cookie, a refused key, a key without the read scope or a form posted from
// another site gets no page.
func TestSignIn(t *testing.T) {
	srv := consoleServer(t, audit.NewStore(nil), nil, nil, nil)
	c := browser(t, srv)

	resp, err := c.Get(srv.URL + "/console/rules")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/login?next=%2Fconsole%2Frules", resp.Header.Get("Location"))

	code, body, h := get(t, c, srv, "/console/login")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `type="password" name="key"`)
	require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'")
	require.NotContains(t, body, "<script")

	for _, tc := range []struct {
		name, key, origin, want string
		status                  int
	}{
		{"unknown key", "omk_nope", srv.URL, "/console/login?error=key", http.StatusSeeOther},
		{"no key", "", srv.URL, "/console/login?error=key", http.StatusSeeOther},
		{"key without read", ingestKey, srv.URL, "/console/login?error=scope", http.StatusSeeOther},
		{"another site", readKey, "https://evil.example", "", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := postForm(t, c, srv, "/console/login", url.Values{"key": {tc.key}}, tc.origin)
			require.Equal(t, tc.status, resp.StatusCode)
			require.Equal(t, tc.want, resp.Header.Get("Location"))
			require.Empty(t, resp.Cookies())
		})
	}

	ans := postForm(t, c, srv, "/console/login", url.Values{"key": {readKey}, "next": {"/console/rules"}}, srv.URL)
	require.Equal(t, http.StatusSeeOther, ans.StatusCode)
	require.Equal(t, "/console/rules", ans.Header.Get("Location"))
	ck := ans.Cookies()
	require.Len(t, ck, 1)
	require.Equal(t, console.CookieName, ck[0].Name)
	require.True(t, ck[0].HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck[0].SameSite)
	require.Equal(t, "/console/", ck[0].Path)
	require.Zero(t, ck[0].MaxAge, "a session cookie: gone with the browser session")
	require.True(t, ck[0].Expires.IsZero())

	code, body, h = get(t, c, srv, "/console/rules")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "No rules yet")
	require.Regexp(t, `^page;dur=\d`, h.Get("Server-Timing"))

	// An open redirect through next is refused.
	ans = postForm(t, browser(t, srv), srv, "/console/login", url.Values{"key": {readKey}, "next": {"//evil.example/"}}, srv.URL)
	require.Equal(t, "/console/journeys", ans.Header.Get("Location"))

	ans = postForm(t, c, srv, "/console/logout", nil, srv.URL)
	require.Equal(t, http.StatusSeeOther, ans.StatusCode)
	resp, err = c.Get(srv.URL + "/console/rules")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "signed out")

	// The API itself is still served beside the console.
	_, err = omegav1connect.NewJourneyServiceClient(http.DefaultClient, srv.URL).ListJourneys(context.Background(),
		connect.NewRequest(&omegav1.ListJourneysRequest{}))
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
}

// The demo journey lays out top to bottom: each step below the one leading to it, the goal aside,
// the loop back from wait_open to sms drawn as a back edge when it goes up.
func TestLayout(t *testing.T) {
	j := mustJourney(t, 1, fmt.Sprintf(splitJourney, "layout"))
	figs := []*omegav1.StepCount{
		{Step: "ab", Entered: 10, Outcomes: map[string]int64{"a": 4, "b": 5, "holdout": 1}},
		{Step: "push", Entered: 4, Sent: 3, Dropped: 1, DroppedBy: map[string]int64{"fatigue": 1}, Converted: 1},
		{Step: "wait_open", Entered: 3, Waited: 3, Outcomes: map[string]int64{"push_open": 1, "timeout": 2}},
		{Step: "goal", Entered: 2, Converted: 2, Outcomes: map[string]int64{"order_paid": 2}},
	}
	g := console.Layout(&j, console.FiguresOf(figs))
	nodes := map[string]console.Node{}
	for _, n := range g.Nodes {
		nodes[n.ID] = n
	}
	require.Len(t, nodes, 6, "ab, push, sms, wait_open, end and the goal")
	require.Less(t, nodes["ab"].Y, nodes["push"].Y)
	require.Equal(t, nodes["push"].Y, nodes["sms"].Y, "both paths of the split on one layer")
	require.Less(t, nodes["push"].Y, nodes["wait_open"].Y)
	require.Less(t, nodes["wait_open"].Y, nodes["end"].Y)
	require.True(t, nodes["paid"].Goal)
	require.Equal(t, []string{"order_paid", "converted 2"}, nodes["paid"].Lines)
	require.Equal(t, []string{"entered 4", "sent 3 · waited 0", "dropped 1 (fatigue 1)", "converted 1"}, nodes["push"].Lines)
	require.True(t, nodes["push"].Dropped)
	labels := map[string]string{}
	for _, e := range g.Edges {
		labels[e.FromID+">"+e.To] += e.Label
		require.LessOrEqual(t, e.LabelX, g.Width)
	}
	require.Equal(t, "a: 4", labels["ab>push"])
	require.Equal(t, "b: 5", labels["ab>sms"])
	require.Equal(t, "holdout: 1", labels["ab>end"])
	require.Equal(t, "push_open: 1", labels["wait_open>end"])
	require.Equal(t, "timeout 24h: 2", labels["wait_open>sms"])
	for _, n := range g.Nodes {
		require.LessOrEqual(t, n.X+n.W, g.Width, n.ID)
		require.LessOrEqual(t, n.Y+n.H, g.Height, n.ID)
	}
}

func TestSay(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  *omegav1.AuditRecord
		want string
	}{
		{"drop", &omegav1.AuditRecord{Kind: "suppressed", Channel: "sms", Outcome: "drop", Reason: "drop by consent: sms refused"}, "not sent on sms: drop by consent: sms refused"},
		{"pass", &omegav1.AuditRecord{Kind: "filtered", Channel: "push", Outcome: "pass"}, "the filters let the send on push through"},
		{"sent", &omegav1.AuditRecord{Kind: "dispatched", Channel: "push", Reason: "provider 200"}, "sent on push: provider 200"},
		{"holdout", &omegav1.AuditRecord{Kind: "split", Outcome: "holdout"}, "put in the control group (holdout): nothing is sent"},
		{"converted", &omegav1.AuditRecord{Kind: "converted", Outcome: "order_paid"}, "converted by order_paid"},
		{"routed", &omegav1.AuditRecord{Kind: "routed", Outcome: "v3"}, "routed to journey version 3"},
		{"waiting", &omegav1.AuditRecord{Kind: "waiting", Outcome: "waiting", Reason: "wait up to 24h for push_open (step wait_open), until 2026-12-03T10:00:00Z"},
			"began to wait: wait up to 24h for push_open (step wait_open), until 2026-12-03T10:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, console.Say(tc.rec)) })
	}
}

var (
	figureRe = regexp.MustCompile(`data-figure="([^"]+)"(?: data-value="(\d+)")?>(\d+)<`)
	barRe    = regexp.MustCompile(`data-figure="([^"]+)" data-value="(\d+)"`)
)

// section is the part of page from the element carrying attr="value" to the next one carrying attr.
func section(t *testing.T, page, attr, value string) string {
	t.Helper()
	start := strings.Index(page, attr+`="`+value+`"`)
	require.GreaterOrEqual(t, start, 0, "%s=%q not on the page", attr, value)
	rest := page[start+len(attr)+len(value)+3:]
	if end := strings.Index(rest, attr+`="`); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

func figures(s string) map[string]int64 {
	out := map[string]int64{}
	for _, m := range figureRe.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.ParseInt(m[3], 10, 64)
		out[m[1]] = n
	}
	return out
}

// Every figure on every page is the API's answer: the pages are read as HTML and compared with
// the API's services called with the same key.
func TestPagesShowTheAPIsFigures(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	jid := testenv.Unique("cj-")
	rules := []string{jid + "-r1", jid + "-r2"}
	now := time.Now().UTC()
	seed(t, store, jid, rules, 7, 300, now.Add(-time.Minute))
	j1, j2 := mustJourney(t, 1, fmt.Sprintf(splitJourney, jid)), mustJourney(t, 2, fmt.Sprintf(splitJourney, jid))
	srv := consoleServer(t, store, []journey.Journey{j1, j2}, []cep.Rule{{ID: rules[0], Version: 1, JourneyID: jid}, {ID: rules[1], Version: 3, JourneyID: jid, Shadow: true}},
		func() time.Time { return now })
	c := signIn(t, srv, readKey)
	reaches := omegav1connect.NewReachServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(bearer(readKey)))
	ctx := context.Background()
	to := now.Truncate(time.Minute).Add(time.Minute)
	from := to.Add(-24 * time.Hour)

	t.Run("journeys", func(t *testing.T) {
		code, page, _ := get(t, c, srv, "/console/journeys")
		require.Equal(t, http.StatusOK, code, page)
		f, err := reaches.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: jid, From: timestamppb.New(from), To: timestamppb.New(to)}))
		require.NoError(t, err)
		require.NotZero(t, f.Msg.GetMatched())
		require.Equal(t, map[string]int64{"matched": f.Msg.GetMatched(), "converted": f.Msg.GetConverted()}, figures(section(t, page, "data-journey", jid)))
	})
	t.Run("journey versions side by side", func(t *testing.T) {
		code, page, _ := get(t, c, srv, "/console/journeys/"+jid)
		require.Equal(t, http.StatusOK, code, page)
		for _, v := range []int32{2, 1} {
			sec := section(t, page, "data-version", strconv.Itoa(int(v)))
			st, err := reaches.JourneySteps(ctx, connect.NewRequest(&omegav1.JourneyStepsRequest{JourneyId: jid, JourneyVersion: v,
				From: timestamppb.New(from), To: timestamppb.New(to)}))
			require.NoError(t, err)
			require.NotEmpty(t, st.Msg.GetSteps())
			for _, s := range st.Msg.GetSteps() {
				row := sec[strings.Index(sec, `<tr data-step="`+s.GetStep()+`"`):]
				row = row[:strings.Index(row, "</tr>")]
				require.Equal(t, map[string]int64{"entered": s.GetEntered(), "waited": s.GetWaited(), "sent": s.GetSent(), "dropped": s.GetDropped(),
					"failed": s.GetFailed(), "converted": s.GetConverted()}, figures(row), "v%d step %s", v, s.GetStep())
			}
			require.Contains(t, sec, `<g class="node split" data-step="ab">`)
			require.Contains(t, sec, "split:")
		}
	})
	t.Run("funnels per split path", func(t *testing.T) {
		code, page, _ := get(t, c, srv, "/console/funnels?journey="+jid+"&version=1")
		require.Equal(t, http.StatusOK, code, page)
		for name, path := range map[string]string{"all reaches": "", "split path a": "a", "split path b": "b", "control group (holdout)": "holdout"} {
			f, err := reaches.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: jid, JourneyVersion: 1, SplitPath: path,
				From: timestamppb.New(from), To: timestamppb.New(to)}))
			require.NoError(t, err)
			bars := map[string]string{}
			for _, m := range barRe.FindAllStringSubmatch(section(t, page, "data-funnel", name), -1) {
				bars[m[1]] = m[2]
			}
			want := map[string]string{"matched": fmt.Sprint(f.Msg.GetMatched()), "sent": fmt.Sprint(f.Msg.GetSent()), "opened": fmt.Sprint(f.Msg.GetOpened()),
				"converted": fmt.Sprint(f.Msg.GetConverted()), "suppressed": fmt.Sprint(f.Msg.GetSuppressed()), "failed": fmt.Sprint(f.Msg.GetFailed()),
				"cancelled": fmt.Sprint(f.Msg.GetCancelled()), "running": fmt.Sprint(f.Msg.GetRunning())}
			for k, v := range f.Msg.GetSuppressedBy() {
				want["  by "+k] = fmt.Sprint(v)
			}
			require.Equal(t, want, bars, name)
		}
	})
	t.Run("rules", func(t *testing.T) {
		code, page, _ := get(t, c, srv, "/console/rules")
		require.Equal(t, http.StatusOK, code, page)
		m, err := reaches.RuleMatches(ctx, connect.NewRequest(&omegav1.RuleMatchesRequest{RuleIds: rules,
			From: timestamppb.New(now.Truncate(time.Hour).Add(-23 * time.Hour)), To: timestamppb.New(now)}))
		require.NoError(t, err)
		for _, r := range rules {
			want := map[string]int64{"live": 0, "shadow": 0}
			for _, h := range m.Msg.GetHours() {
				if h.GetRuleId() == r {
					want["live"] += h.GetLive()
					want["shadow"] += h.GetShadow()
				}
			}
			require.NotZero(t, want["live"]+want["shadow"])
			require.Equal(t, want, figures(section(t, page, "data-rule", r)), r)
		}
		require.Contains(t, section(t, page, "data-rule", rules[1]), "shadow")
	})
	t.Run("a user", func(t *testing.T) {
		user := jid + "-u3"
		code, page, _ := get(t, c, srv, "/console/users?user_id="+url.QueryEscape(user))
		require.Equal(t, http.StatusOK, code, page)
		tl, err := reaches.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: user, PageSize: 500}))
		require.NoError(t, err)
		ids := map[string]bool{}
		for _, r := range tl.Msg.GetRecords() {
			ids[r.GetReachId()] = true
		}
		f := figures(page)
		require.Equal(t, int64(len(tl.Msg.GetRecords())), f["records"])
		require.Equal(t, int64(len(ids)), f["reaches"])
		require.Contains(t, page, `http://temporal-ui.test:8233/namespaces/default/workflows?query=UserId%3D%22`+user+`%22`)
		for id := range ids {
			require.Contains(t, page, "http://temporal-ui.test:8233/namespaces/default/workflows/"+url.PathEscape(id))
		}
		require.Contains(t, page, "split: path ")
	})
}

func bearer(key string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	}
}
