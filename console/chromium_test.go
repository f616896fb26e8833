package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// TestConsoleInChromium signs in through the login form in headless Chromium (Debian's, which
// `make test` installs), loads every page, reads the figures the browser shows and compares them
// with the API's answers for the same key. OMEGA_CONSOLE_SCREENSHOTS=1 saves each page to
// docs/img/console-<page>.png (make console-screenshots).
func TestConsoleInChromium(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed: `make chromium` installs Debian's (make test does)")
	}
	jid := testenv.Unique("cart-retarget-")
	rules := []string{jid + "-cart", jid + "-shadow"}
	now := time.Now().UTC()
	seed(t, store, jid, rules, 9, 400, now.Add(-time.Minute))
	j1, j2 := mustJourney(t, 1, fmt.Sprintf(splitJourney, jid)), mustJourney(t, 2, fmt.Sprintf(splitJourney, jid))
	srv := consoleServer(t, store, []journey.Journey{j1, j2},
		[]cep.Rule{{ID: rules[0], Version: 2, JourneyID: jid, Description: "cart abandoned for an hour"}, {ID: rules[1], Version: 1, JourneyID: jid, Shadow: true}},
		func() time.Time { return now })
	reaches := omegav1connect.NewReachServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(bearer(readKey)))
	to := now.Truncate(time.Minute).Add(time.Minute)
	from := to.Add(-24 * time.Hour)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	do := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		for _, a := range actions {
			_, err := chromedp.Run(ctx, a)
			require.NoError(t, err)
		}
	}
	do(chromedp.Navigate(srv.URL+"/console/journeys"),
		chromedp.WaitVisible(`input[name=key]`),
		chromedp.SendKeys(`input[name=key]`, readKey),
		chromedp.Submit(`input[name=key]`),
		chromedp.WaitVisible(`#journeys`))
	h1, err := chromedp.Run(ctx, chromedp.Text(`h1`))
	require.NoError(t, err)
	require.Equal(t, "Journeys", h1, "signed in through the form, back on the page asked for")

	shots := os.Getenv("OMEGA_CONSOLE_SCREENSHOTS") != ""
	shoot := func(name string) {
		if !shots {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join("..", "docs", "img", "console-"+name+".png"), png, 0o644))
	}
	// shown reads the figures the browser shows under selector, by their data-figure names.
	shown := func(selector string) map[string]int64 {
		out, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int64](fmt.Sprintf(
			`Object.fromEntries([...document.querySelectorAll(%q)].map(e => [e.dataset.figure, Number(e.dataset.value ?? e.textContent)]))`,
			selector+" [data-figure]")))
		require.NoError(t, err)
		return out
	}
	api := func(path string) *omegav1.FunnelResponse {
		f, err := reaches.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{JourneyId: jid, From: timestamppb.New(from), To: timestamppb.New(to)}))
		require.NoError(t, err)
		if path == "" {
			return f.Msg
		}
		return f.Msg.GetBySplitPath()[path]
	}

	f := api("")
	require.Equal(t, map[string]int64{"matched": f.GetMatched(), "converted": f.GetConverted()}, shown(fmt.Sprintf(`[data-journey=%q]`, jid)))
	shoot("journeys")

	do(chromedp.Navigate(srv.URL+"/console/journeys/"+jid), chromedp.WaitVisible(`svg.graph`))
	for _, v := range []int32{1, 2} {
		st, err := reaches.JourneySteps(ctx, connect.NewRequest(&omegav1.JourneyStepsRequest{JourneyId: jid, JourneyVersion: v,
			From: timestamppb.New(from), To: timestamppb.New(to)}))
		require.NoError(t, err)
		for _, s := range st.Msg.GetSteps() {
			require.Equal(t, map[string]int64{"entered": s.GetEntered(), "waited": s.GetWaited(), "sent": s.GetSent(), "dropped": s.GetDropped(),
				"failed": s.GetFailed(), "converted": s.GetConverted()},
				shown(fmt.Sprintf(`[data-version="%d"] tr[data-step=%q]`, v, s.GetStep())), "v%d %s", v, s.GetStep())
		}
	}
	shoot("journey")

	do(chromedp.Navigate(srv.URL+"/console/funnels?journey="+jid), chromedp.WaitVisible(`.chart`))
	for name, path := range map[string]string{"all reaches": "", "split path a": "a", "split path b": "b", "control group (holdout)": "holdout"} {
		f := api(path)
		got := shown(fmt.Sprintf(`[data-funnel=%q]`, name))
		require.Equal(t, f.GetMatched(), got["matched"], name)
		require.Equal(t, f.GetSent(), got["sent"], name)
		require.Equal(t, f.GetConverted(), got["converted"], name)
		require.Equal(t, f.GetSuppressed(), got["suppressed"], name)
		require.Equal(t, f.GetRunning(), got["running"], name)
	}
	shoot("funnels")

	do(chromedp.Navigate(srv.URL+"/console/rules"), chromedp.WaitVisible(`#rules`))
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
		require.Equal(t, want, shown(fmt.Sprintf(`[data-rule=%q]`, r)), r)
	}
	shoot("rules")

	user := jid + "-u4"
	do(chromedp.Navigate(srv.URL+"/console/users?user_id="+user), chromedp.WaitVisible(`.reach`))
	tl, err := reaches.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: user, PageSize: 500}))
	require.NoError(t, err)
	require.Equal(t, int64(len(tl.Msg.GetRecords())), shown("main")["records"])
	links, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('a.temporal[href^="http://temporal-ui.test:8233/namespaces/default/workflows"]').length`))
	require.NoError(t, err)
	require.Greater(t, links, 1, "the user's runs and each run in the Temporal UI")
	shoot("user")
}
