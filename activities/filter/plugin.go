package filter

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/store"
)

// Deps are the clients a filter may need besides its settings.
type Deps struct {
	Redis redis.UniversalClient
	// KeyPrefix prefixes the filters' own Redis keys ("omega" when empty).
	KeyPrefix string
	// Lists are the blacklist and the whitelist.
	Lists store.Lists
	// Profiles reads the user's profile (the worker memoizes it per check).
	Profiles profile.Source
}

// Spec declares a filter: its name (what chains list), its settings and its constructor, which
// returns a nil Filter when the settings do not enable it (quiet hours without a window): chains
// then run without it. Each filter registers its own in an init function beside its type.
type Spec = plugin.Spec[Filter, Deps]

// Plugins is a registry of filter specs.
type Plugins = plugin.Registry[Filter, Deps]

// builtin holds the declarations of this package's filters.
var builtin Plugins

// Builtin returns a registry of the filters this package declares: a copy, so a caller may
// register its own besides.
func Builtin() *Plugins { return builtin.Clone() }

// ChainSpec is a filter chain as data: a name a journey's send or a rule may give, and the filters
// it runs, in order.
type ChainSpec struct {
	Name    string
	Doc     string
	Filters []string
}

// Chains are the filter chains a journey's send may name.
var Chains = []ChainSpec{
	{Name: DefaultChain, Doc: "marketing sends, when a journey names no chain",
		Filters: []string{"blacklist", "consent", "gray", "quiet_hours", "fatigue"}},
	{Name: "transactional", Doc: "receipts, security codes", Filters: []string{"blacklist", "consent"}},
	{Name: "whitelisted", Doc: "only whitelisted users (trying a journey on testers)", Filters: []string{"whitelist", "consent", "fatigue"}},
}

// ChainNames returns the chains' names in order.
func ChainNames(cs []ChainSpec) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// Build constructs every filter of plugins from settings (each registered field's default where
// settings lack it) and defines chains of them. A chain naming a filter that is not registered
// is refused; one naming a filter its settings left disabled runs without it.
func Build(plugins *Plugins, settings plugin.Values, deps Deps, chains []ChainSpec) (*Registry, error) {
	s := plugin.Defaults(plugins.Fields()).With(settings)
	reg := NewRegistry()
	disabled := map[string]bool{}
	for _, spec := range plugins.Specs() {
		f, err := spec.New(s, deps)
		if err != nil {
			return nil, fmt.Errorf("filter %s: %w", spec.Name, err)
		}
		if f == nil {
			disabled[spec.Name] = true
			continue
		}
		if f.Name() != spec.Name {
			return nil, fmt.Errorf("filter %s: built a filter named %q", spec.Name, f.Name())
		}
		if err := reg.Register(f); err != nil {
			return nil, err
		}
	}
	for _, c := range chains {
		names := make([]string, 0, len(c.Filters))
		for _, n := range c.Filters {
			if !disabled[n] {
				names = append(names, n)
			}
		}
		if err := reg.Define(c.Name, names...); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
