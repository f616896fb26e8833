package filter_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/store"
)

func names(c filter.Chain) []string {
	out := make([]string, len(c))
	for i, f := range c {
		out[i] = f.Name()
	}
	return out
}

// The chains are data: a filter its settings leave off (quiet hours without a window) drops out
// of them; configured, it runs where the chain lists it.
func TestBuildChains(t *testing.T) {
	deps := filter.Deps{Lists: store.NewLists(nil, nil, nil)}
	for _, tt := range []struct {
		name     string
		settings plugin.Values
		want     map[string][]string
	}{
		{name: "defaults", want: map[string][]string{
			filter.DefaultChain: {"blacklist", "consent", "gray", "fatigue"},
			"transactional":     {"blacklist", "consent"},
			"whitelisted":       {"whitelist", "consent", "fatigue"},
		}},
		{name: "quiet hours", settings: plugin.Values{"OMEGA_QUIET_HOURS": "21:00-08:00"}, want: map[string][]string{
			filter.DefaultChain: {"blacklist", "consent", "gray", "quiet_hours", "fatigue"},
			"transactional":     {"blacklist", "consent"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := filter.Build(filter.Builtin(), tt.settings, deps, filter.Chains)
			require.NoError(t, err)
			require.Equal(t, filter.ChainNames(filter.Chains), sortedLike(reg.Chains(), filter.ChainNames(filter.Chains)))
			for chain, want := range tt.want {
				c, ok := reg.Chain(chain)
				require.True(t, ok, chain)
				require.Equal(t, want, names(c), chain)
			}
		})
	}
}

func TestBuildRefuses(t *testing.T) {
	deps := filter.Deps{Lists: store.NewLists(nil, nil, nil)}
	_, err := filter.Build(filter.Builtin(), nil, deps, []filter.ChainSpec{{Name: "odd", Filters: []string{"blacklist", "horoscope"}}})
	require.ErrorContains(t, err, `chain "odd": no filter "horoscope"`)
	_, err = filter.Build(filter.Builtin(), plugin.Values{"OMEGA_QUIET_HOURS": "25:00-08:00"}, deps, nil)
	require.ErrorContains(t, err, "25:00")
	_, err = filter.Build(filter.Builtin(), nil, filter.Deps{}, nil)
	require.ErrorContains(t, err, "the lists are required")
}

// sortedLike returns got in the order of want when both hold the same names.
func sortedLike(got, want []string) []string {
	in := map[string]bool{}
	for _, g := range got {
		in[g] = true
	}
	out := []string{}
	for _, w := range want {
		if in[w] {
			out = append(out, w)
		}
	}
	if len(out) != len(got) {
		return got
	}
	return out
}
