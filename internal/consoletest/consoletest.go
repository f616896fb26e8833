// Package consoletest drives the console (console/) in headless Chromium for tests: it signs in
// through the login form as a person does, loads each page, reads the figures the browser shows
// (the elements with a data-figure attribute: their data-value, else their text) and holds them
// against the API's answers for the same key and period. The console's own test (seeded audit
// rows) and the end-to-end test on the `make run` demo (scripted traffic) both use it.
package consoletest

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// Browser is headless Chromium signed in to one console, with clients of the API that serves it,
// calling with the same key.
type Browser struct {
	// Now is the clock the console reads its periods from (time.Now when nil); the rules page's
	// last 24 hours end there.
	Now func() time.Time

	t        testing.TB
	ctx      context.Context
	base     string
	reaches  omegav1connect.ReachServiceClient
	journeys omegav1connect.JourneyServiceClient
	rules    omegav1connect.RuleServiceClient
}

// Open starts Debian's headless chromium (skipping the test when it is not installed: `make
// chromium` installs it, `make test` does) and signs in through the login form of the console
// that base serves under /console/ (base is the API's URL, e.g. http://127.0.0.1:8080).
func Open(t testing.TB, base, key string) *Browser {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed: `make chromium` installs Debian's (make test does)")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancel(); cancelTab(); cancelAlloc() })

	base = strings.TrimRight(base, "/")
	opts := connect.WithInterceptors(bearer(key))
	b := &Browser{t: t, ctx: ctx, base: base,
		reaches:  omegav1connect.NewReachServiceClient(http.DefaultClient, base, opts),
		journeys: omegav1connect.NewJourneyServiceClient(http.DefaultClient, base, opts),
		rules:    omegav1connect.NewRuleServiceClient(http.DefaultClient, base, opts),
	}
	b.Do(chromedp.Navigate(base+"/console/journeys"),
		chromedp.WaitVisible(`input[name=key]`),
		chromedp.SendKeys(`input[name=key]`, key),
		chromedp.Submit(`input[name=key]`),
		chromedp.WaitVisible(`#journeys`))
	h1, err := chromedp.Run(ctx, chromedp.Text(`h1`))
	require.NoError(t, err)
	require.Equal(t, "Journeys", h1, "signed in through the form, back on the page asked for")
	return b
}

func bearer(key string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	}
}

// Do runs browser actions, failing the test on the first error.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	for _, a := range actions {
		_, err := chromedp.Run(b.ctx, a)
		require.NoError(b.t, err)
	}
}

// Load opens a console page (path from the API's root, /console/...) and waits until ready shows.
func (b *Browser) Load(path, ready string) {
	b.t.Helper()
	b.Do(chromedp.Navigate(b.base+path), chromedp.WaitVisible(ready))
}

// figure is the script that reads one figure an element shows: its data-figure name, and its
// data-value (a chart's bar) or else its text.
const figure = `(e => [e.dataset.figure, Number(e.dataset.value ?? e.textContent)])`

// Shown reads the figures the browser shows under selector, by their data-figure names.
func (b *Browser) Shown(selector string) map[string]int64 {
	b.t.Helper()
	out, err := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]int64](fmt.Sprintf(
		`Object.fromEntries([...document.querySelectorAll(%q)].map(%s))`, selector+" [data-figure]", figure)))
	require.NoError(b.t, err)
	return out
}

// Rows reads the figures of each element matching selector, keyed by its attribute attr.
func (b *Browser) Rows(selector, attr string) map[string]map[string]int64 {
	b.t.Helper()
	out, err := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]map[string]int64](fmt.Sprintf(
		`Object.fromEntries([...document.querySelectorAll(%q)].map(r => [r.getAttribute(%q), Object.fromEntries([...r.querySelectorAll('[data-figure]')].map(%s))]))`,
		selector, attr, figure)))
	require.NoError(b.t, err)
	if out == nil {
		out = map[string]map[string]int64{}
	}
	return out
}

// Count is how many elements match selector.
func (b *Browser) Count(selector string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, selector)))
	require.NoError(b.t, err)
	return n
}

// Screenshot is the whole page as a PNG.
func (b *Browser) Screenshot() []byte {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err)
	return png
}

// Period is the period the page shows in its form (from and to, UTC, to the minute).
func (b *Browser) Period() (from, to time.Time) {
	b.t.Helper()
	read := func(name string) time.Time {
		v, err := chromedp.Run(b.ctx, chromedp.Value(fmt.Sprintf(`form.period input[name=%s]`, name)))
		require.NoError(b.t, err)
		at, err := time.Parse("2006-01-02T15:04", v)
		require.NoError(b.t, err, "the page's %s: %q", name, v)
		return at
	}
	return read("from"), read("to")
}

func (b *Browser) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Browser) funnel(req *omegav1.FunnelRequest) *omegav1.FunnelResponse {
	b.t.Helper()
	f, err := b.reaches.Funnel(b.ctx, connect.NewRequest(req))
	require.NoError(b.t, err)
	return f.Msg
}

// Journeys loads the journeys page and checks it lists every journey the API lists, each with
// the matched and converted figures of the API's funnel over the page's period. It returns those
// funnels by journey.
func (b *Browser) Journeys() map[string]*omegav1.FunnelResponse {
	b.t.Helper()
	b.Load("/console/journeys", "#journeys")
	from, to := b.Period()
	list, err := b.journeys.ListJourneys(b.ctx, connect.NewRequest(&omegav1.ListJourneysRequest{}))
	require.NoError(b.t, err)
	out := map[string]*omegav1.FunnelResponse{}
	want := map[string]map[string]int64{}
	for _, j := range list.Msg.GetJourneys() {
		f := b.funnel(&omegav1.FunnelRequest{JourneyId: j.GetId(), From: timestamppb.New(from), To: timestamppb.New(to)})
		out[j.GetId()] = f
		want[j.GetId()] = map[string]int64{"matched": f.GetMatched(), "converted": f.GetConverted()}
	}
	require.Equal(b.t, want, b.Rows(`#journeys tr[data-journey]`, "data-journey"), "the journeys page")
	return out
}

// Journey loads a journey's page and checks, for each version it shows, the matched figure
// against the API's funnel for that version and every step's figures against JourneySteps. It
// returns the steps by version.
func (b *Browser) Journey(id string) map[int32][]*omegav1.StepCount {
	b.t.Helper()
	b.Load("/console/journeys/"+id, `section.version`)
	from, to := b.Period()
	var versions []int32
	for v := range b.Rows(`section.version[data-version]`, "data-version") {
		var n int32
		_, err := fmt.Sscan(v, &n)
		require.NoError(b.t, err, "data-version %q", v)
		versions = append(versions, n)
	}
	slices.Sort(versions)
	out := map[int32][]*omegav1.StepCount{}
	for _, v := range versions {
		f := b.funnel(&omegav1.FunnelRequest{JourneyId: id, JourneyVersion: v, From: timestamppb.New(from), To: timestamppb.New(to)})
		section := fmt.Sprintf(`section.version[data-version="%d"]`, v)
		require.Equal(b.t, map[string]int64{"matched": f.GetMatched()}, b.Shown(section+" h2"), "%s v%d: matched", id, v)
		st, err := b.reaches.JourneySteps(b.ctx, connect.NewRequest(&omegav1.JourneyStepsRequest{JourneyId: id, JourneyVersion: v,
			From: timestamppb.New(from), To: timestamppb.New(to)}))
		require.NoError(b.t, err)
		want := map[string]map[string]int64{}
		for _, s := range st.Msg.GetSteps() {
			want[s.GetStep()] = map[string]int64{"entered": s.GetEntered(), "waited": s.GetWaited(), "sent": s.GetSent(),
				"dropped": s.GetDropped(), "failed": s.GetFailed(), "converted": s.GetConverted()}
		}
		require.Equal(b.t, want, b.Rows(section+` tr[data-step]`, "data-step"), "%s v%d: the steps", id, v)
		out[v] = st.Msg.GetSteps()
	}
	return out
}

// Funnels loads the funnels page of a journey and checks every chart it draws (the whole, and
// each split path's) bar by bar against the API's funnel over the page's period. It returns the
// funnels by the name the page gives them ("all reaches", "split path a", "control group
// (holdout)").
func (b *Browser) Funnels(journeyID string) map[string]*omegav1.FunnelResponse {
	b.t.Helper()
	b.Load("/console/funnels?journey="+journeyID, `.chart`)
	from, to := b.Period()
	whole := b.funnel(&omegav1.FunnelRequest{JourneyId: journeyID, From: timestamppb.New(from), To: timestamppb.New(to)})
	out := map[string]*omegav1.FunnelResponse{}
	for name, got := range b.Rows(`[data-funnel]`, "data-funnel") {
		f := whole
		switch {
		case name == "all reaches":
		case name == "control group (holdout)":
			f = whole.GetBySplitPath()["holdout"]
		case strings.HasPrefix(name, "split path "):
			f = whole.GetBySplitPath()[strings.TrimPrefix(name, "split path ")]
		default:
			b.t.Fatalf("funnel %q: not a chart the console draws", name)
		}
		if f == nil {
			f = &omegav1.FunnelResponse{}
		}
		require.Equal(b.t, funnelFigures(f), got, "%s: %s", journeyID, name)
		out[name] = f
	}
	return out
}

// funnelFigures are a funnel's bars: its stages, then how the other reaches ended.
func funnelFigures(f *omegav1.FunnelResponse) map[string]int64 {
	out := map[string]int64{"matched": f.GetMatched(), "sent": f.GetSent(), "opened": f.GetOpened(), "converted": f.GetConverted(),
		"suppressed": f.GetSuppressed(), "failed": f.GetFailed(), "cancelled": f.GetCancelled(), "running": f.GetRunning()}
	for k, v := range f.GetSuppressedBy() {
		out["  by "+k] = v
	}
	return out
}

// Rules loads the rules page and checks it lists every rule the API lists, each with its live
// and shadow matches over the last 24 hours (from the hour 23 hours before Now) as RuleMatches
// counts them. It returns those figures by rule.
func (b *Browser) Rules() map[string]map[string]int64 {
	b.t.Helper()
	b.Load("/console/rules", "#rules")
	list, err := b.rules.ListRules(b.ctx, connect.NewRequest(&omegav1.ListRulesRequest{}))
	require.NoError(b.t, err)
	end := b.now().UTC()
	from := end.Truncate(time.Hour).Add(-23 * time.Hour)
	want := map[string]map[string]int64{}
	var ids []string
	for _, r := range list.Msg.GetRules() {
		want[r.GetId()] = map[string]int64{"live": 0, "shadow": 0}
		ids = append(ids, r.GetId())
	}
	for chunk := range slices.Chunk(ids, 100) {
		m, err := b.reaches.RuleMatches(b.ctx, connect.NewRequest(&omegav1.RuleMatchesRequest{RuleIds: chunk,
			From: timestamppb.New(from), To: timestamppb.New(end)}))
		require.NoError(b.t, err)
		for _, h := range m.Msg.GetHours() {
			want[h.GetRuleId()]["live"] += h.GetLive()
			want[h.GetRuleId()]["shadow"] += h.GetShadow()
		}
	}
	require.Equal(b.t, want, b.Rows(`#rules tr[data-rule]`, "data-rule"), "the rules page")
	return want
}

// User loads a user's page and checks its count of records and reaches, and the records shown
// under each reach, against the API's Timeline of the user. It returns the timeline.
func (b *Browser) User(id string) []*omegav1.TimelineRecord {
	b.t.Helper()
	b.Load("/console/users?user_id="+id, `main [data-figure=records]`)
	tl, err := b.reaches.Timeline(b.ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: id, PageSize: 500}))
	require.NoError(b.t, err)
	perReach := map[string]int{}
	for _, r := range tl.Msg.GetRecords() {
		perReach[r.GetReachId()]++
	}
	require.Equal(b.t, map[string]int64{"records": int64(len(tl.Msg.GetRecords())), "reaches": int64(len(perReach))}, b.Shown("main"), "user %s", id)
	shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]int](
		`Object.fromEntries([...document.querySelectorAll('section.reach[data-reach]')].map(s => [s.dataset.reach, s.querySelectorAll('ol.timeline li').length]))`))
	require.NoError(b.t, err)
	if shown == nil {
		shown = map[string]int{}
	}
	require.Equal(b.t, perReach, shown, "user %s: records per reach", id)
	return tl.Msg.GetRecords()
}
