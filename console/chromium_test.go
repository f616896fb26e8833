package console_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/consoletest"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
)

// TestConsoleInChromium signs in through the login form in headless Chromium (Debian's, which
// `make test` installs), loads every page, reads the figures the browser shows and compares them
// with the API's answers for the same key (internal/consoletest; e2e's TestRestart does the same
// on the `make run` demo). OMEGA_CONSOLE_SCREENSHOTS=1 saves each page to
// docs/img/console-<page>.png (make console-screenshots).
func TestConsoleInChromium(t *testing.T) {
	store := testenv.Require(t).Audit(t)
	jid := testenv.Unique("cart-retarget-")
	rules := []string{jid + "-cart", jid + "-shadow"}
	now := time.Now().UTC()
	seed(t, store, jid, rules, 9, 400, now.Add(-time.Minute))
	j1, j2 := mustJourney(t, 1, fmt.Sprintf(splitJourney, jid)), mustJourney(t, 2, fmt.Sprintf(splitJourney, jid))
	srv := consoleServer(t, store, []journey.Journey{j1, j2},
		[]cep.Rule{{ID: rules[0], Version: 2, JourneyID: jid, Description: "cart abandoned for an hour"}, {ID: rules[1], Version: 1, JourneyID: jid, Shadow: true}},
		func() time.Time { return now })

	b := consoletest.Open(t, srv.URL, readKey)
	b.Now = func() time.Time { return now }
	shoot := func(name string) {
		if os.Getenv("OMEGA_CONSOLE_SCREENSHOTS") == "" {
			return
		}
		require.NoError(t, os.WriteFile(filepath.Join("..", "docs", "img", "console-"+name+".png"), b.Screenshot(), 0o644))
	}

	funnels := b.Journeys()
	require.Contains(t, funnels, jid)
	require.Positive(t, funnels[jid].GetMatched())
	to := now.Truncate(time.Minute).Add(time.Minute)
	from, shownTo := b.Period()
	require.Equal(t, []time.Time{to.Add(-24 * time.Hour), to}, []time.Time{from, shownTo}, "the last 24 hours by default")
	shoot("journeys")

	steps := b.Journey(jid)
	require.Len(t, steps, 2, "the active version and the one before, side by side")
	require.NotEmpty(t, steps[1])
	require.NotEmpty(t, steps[2])
	shoot("journey")

	charts := b.Funnels(jid)
	require.ElementsMatch(t, []string{"all reaches", "split path a", "split path b", "control group (holdout)"}, slices.Collect(maps.Keys(charts)))
	require.Positive(t, charts["split path a"].GetSent())
	shoot("funnels")

	matches := b.Rules()
	require.Positive(t, matches[rules[0]]["live"])
	require.Positive(t, matches[rules[1]]["shadow"])
	shoot("rules")

	require.NotEmpty(t, b.User(jid+"-u4"))
	require.Greater(t, b.Count(`a.temporal[href^="http://temporal-ui.test:8233/namespaces/default/workflows"]`), 1,
		"the user's runs and each run in the Temporal UI")
	shoot("user")
}
