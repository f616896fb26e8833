package channel

import (
	"fmt"

	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/store"
)

// Deps are the clients a channel may need besides its settings.
type Deps struct {
	// Inbox is where the in-app channel stores messages.
	Inbox store.Inbox
}

// Spec declares a channel: its name (what journeys' sends name), its settings and its
// constructor. Each channel's file registers its own in an init function.
type Spec = plugin.Spec[Channel, Deps]

// Plugins is a registry of channel specs.
type Plugins = plugin.Registry[Channel, Deps]

// builtin holds the declarations of this package's channels, one init function per file.
var builtin Plugins

// Builtin returns a registry of the channels this package declares (webhook, push, SMS, the
// in-app inbox ...): a copy, so a caller may register its own besides.
func Builtin() *Plugins { return builtin.Clone() }

// Build constructs every channel of plugins from settings (each registered field's default where
// settings lack it) and registers it, passed through wrap when wrap is not nil (rate limits).
func Build(plugins *Plugins, settings plugin.Values, deps Deps, wrap func(Channel) Channel) (*Registry, error) {
	s := plugin.Defaults(plugins.Fields()).With(settings)
	reg := NewRegistry()
	for _, spec := range plugins.Specs() {
		ch, err := spec.New(s, deps)
		if err != nil {
			return nil, fmt.Errorf("channel %s: %w", spec.Name, err)
		}
		if ch.Name() != spec.Name {
			return nil, fmt.Errorf("channel %s: built a channel named %q", spec.Name, ch.Name())
		}
		if wrap != nil {
			ch = wrap(ch)
		}
		if err := reg.Register(ch); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
