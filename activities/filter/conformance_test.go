package filter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/activities/filter/filtertest"
	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/store"
)

type failingProfiles struct{}

func (failingProfiles) Get(context.Context, string) (profile.Profile, error) {
	return profile.Profile{}, errors.New("profile store down")
}

// build constructs the declared filter name as the worker does, from its spec.
func build(t *testing.T, name string, settings plugin.Values, deps filter.Deps) filter.Filter {
	t.Helper()
	reg := filter.Builtin()
	for _, s := range reg.Specs() {
		if s.Name == name {
			f, err := s.New(plugin.Defaults(reg.Fields()).With(settings), deps)
			require.NoError(t, err)
			require.NotNil(t, f, "%s is not enabled by %v", name, settings)
			return f
		}
	}
	t.Fatalf("no filter %q is declared", name)
	return nil
}

// Every declared filter passes the shared suite; a filter declared without a row here fails.
func TestConformance(t *testing.T) {
	env := testenv.Require(t)
	rdb := env.Redis(t)
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	ctx := context.Background()
	now := time.Date(2026, 3, 10, 23, 0, 0, 0, time.UTC)
	prefix := testenv.Unique("test:filter:")
	keys := map[string]string{"blacklist": prefix + ":bl", "whitelist": prefix + ":wl"}
	require.NoError(t, rdb.SAdd(ctx, keys["blacklist"], "listed").Err())
	require.NoError(t, rdb.SAdd(ctx, keys["whitelist"], "listed").Err())
	t.Cleanup(func() { rdb.Del(context.Background(), keys["blacklist"], keys["whitelist"]) })
	profiles := profile.Static{
		"refused": {UserID: "refused", Consent: map[string]bool{"push": false}},
		"granted": {UserID: "granted", Consent: map[string]bool{"sms": true}},
	}
	deps := filter.Deps{Redis: rdb, KeyPrefix: prefix, Lists: store.NewLists(nil, rdb, keys), Profiles: profiles}
	brokenDeps := filter.Deps{Redis: down, KeyPrefix: prefix, Lists: store.NewLists(nil, down, keys), Profiles: failingProfiles{}}
	req := func(user string, mod ...func(*filter.Request)) filter.Request {
		r := filter.Request{UserID: user, Channel: "push", RuleID: "r", DispatchKey: "reach/r/" + user + "/k/send/push", Now: now}
		for _, m := range mod {
			m(&r)
		}
		return r
	}
	// outside is a user outside rule r's 1% rollout.
	outside := "outside"
	for i := 0; filter.InRollout(outside, "r", 1); i++ {
		outside = "outside" + string(rune('a'+i))
	}
	rollout := func(r *filter.Request) { r.Rollout = 1 }

	covered := map[string]bool{}
	for _, tt := range []struct {
		name     string
		settings plugin.Values
		cases    []filtertest.Case
	}{
		{"blacklist", nil, []filtertest.Case{
			{Name: "listed user dropped", Request: req("listed"), Want: filter.Drop},
			{Name: "other user passes", Request: req("free"), Want: filter.Pass},
		}},
		{"whitelist", nil, []filtertest.Case{
			{Name: "listed user passes", Request: req("listed"), Want: filter.Pass},
			{Name: "other user dropped", Request: req("free"), Want: filter.Drop},
		}},
		{"gray", nil, []filtertest.Case{
			{Name: "no rollout: everyone", Request: req("free"), Want: filter.Pass, Decided: true},
			{Name: "outside the rollout, on the whitelist", Request: req("listed", rollout), Want: filter.Pass},
			{Name: "outside the rollout", Request: req(outside, rollout), Want: filter.Drop},
		}},
		{"consent", plugin.Values{"OMEGA_OPT_IN": "sms"}, []filtertest.Case{
			{Name: "refused", Request: req("refused"), Want: filter.Drop},
			{Name: "nothing said", Request: req("free"), Want: filter.Pass},
			{Name: "opt-in channel without a grant", Request: req("free", func(r *filter.Request) { r.Channel = "sms" }), Want: filter.Drop},
			{Name: "opt-in channel granted", Request: req("granted", func(r *filter.Request) { r.Channel = "sms" }), Want: filter.Pass},
		}},
		{"quiet_hours", plugin.Values{"OMEGA_QUIET_HOURS": "21:00-08:00"}, []filtertest.Case{
			{Name: "inside the window: deferred", Request: req("free"), Want: filter.Defer},
			{Name: "outside the window", Request: req("free", func(r *filter.Request) { r.Now = now.Add(-12 * time.Hour) }), Want: filter.Pass},
			{Name: "transactional is not held", Request: req("free", func(r *filter.Request) { r.Category = filter.CategoryTransactional }),
				Want: filter.Pass, Decided: true},
		}},
		{"fatigue", plugin.Values{"OMEGA_DAILY_CAP": "1"}, []filtertest.Case{
			{Name: "first send takes the slot", Request: req("busy"), Want: filter.Pass},
			{Name: "second send over the cap", Request: req("busy", func(r *filter.Request) { r.DispatchKey += "2" }), Want: filter.Drop},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := build(t, tt.name, tt.settings, deps)
			covered[f.Name()] = true
			filtertest.Run(t, f, build(t, tt.name, tt.settings, brokenDeps), tt.cases)
		})
	}
	for _, name := range filter.Builtin().Names() {
		require.True(t, covered[name], "filter %q is declared but has no conformance row", name)
	}
}
