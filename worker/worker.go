// Package worker builds the Temporal worker that runs reach workflows and their activities on the
// omega-reach task queue: it wires the journey catalog, the filter chain, the channel registry and
// the audit store into one activities value and registers it with the workflow.
package worker

import (
	"errors"
	"log/slog"
	"net/netip"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/workflows"
)

// Config configures the reach worker.
type Config struct {
	Temporal client.Client
	// TaskQueue (workflows.TaskQueue when empty); tests use their own.
	TaskQueue string
	// Pollers is how many long polls the worker keeps open for workflow tasks and as many for
	// activity tasks (8 when zero, the SDK's default being 2: on the benchmark machine both gave
	// the same peak, Temporal's CPU being the bound, but a worker facing a bigger cluster needs
	// the polls in flight to keep up).
	Pollers int
	// Identity names the worker in Temporal (its polls, the activity attempts it runs); the
	// client's identity when empty. WaitServing finds the worker's polls by it.
	Identity string
	Redis    redis.UniversalClient
	// KeyPrefix prefixes the filters' Redis keys ("omega" when empty).
	KeyPrefix string
	// BlacklistKey is the Redis set of blacklisted users (store.BlacklistKey when empty).
	BlacklistKey string
	Audit        *audit.Store
	// Lists are the blacklist and whitelist the filters read; when nil, the lists in the audit
	// store's database with their Redis copies at BlacklistKey and WhitelistKey.
	Lists store.Lists
	// Inbox is where the in-app channel delivers; the audit store's database when nil.
	Inbox store.Inbox
	// WebhookURL is where the webhook channel posts, signed with WebhookSecret when set; the SSRF
	// guard lets it reach the WebhookAllow networks although private (the local receiver).
	WebhookURL    string
	WebhookSecret string
	WebhookAllow  []netip.Prefix
	// Push and SMS configure the provider channels; when nil, push and sms post to WebhookURL as
	// well (the local receiver stands in for the providers, no addresses needed).
	Push *channel.PushConfig
	SMS  *channel.SMSConfig
	// RateLimits caps each channel's provider at sends per second across all workers (Redis
	// token bucket); no limit when absent.
	RateLimits map[string]float64
	// DailyCap is the most messages a user gets in 24 hours across every channel and journey (3
	// when zero); ChannelCaps the most per channel (e.g. sms: 1); the last slot of a cap is kept for
	// journeys of LastSlotPriority or more (when set).
	DailyCap         int
	ChannelCaps      map[string]int
	LastSlotPriority int
	// QuietStart and QuietEnd ("21:00", "08:00") hold marketing sends in the user's local night
	// until the window ends; off when empty.
	QuietStart, QuietEnd string
	// WhitelistKey is the Redis set of the whitelist and the gray rollout's allowlist
	// (store.WhitelistKey when empty); OptIn the channels that need an explicit consent grant.
	WhitelistKey string
	OptIn        []string
	// Journeys gives each new run its journey (the demo journeys when nil); Profiles the user's
	// profile (none when nil).
	Journeys journey.Source
	Profiles profile.Source
	Log      *slog.Logger
}

// Chains are the filter chains a journey's send may name:
//   - default: blacklist, consent, gray rollout, quiet hours (when configured), fatigue;
//   - transactional: blacklist and consent only (receipts, security codes);
//   - whitelisted: only whitelisted users, then consent and fatigue (trying a journey on testers).
var Chains = []string{filter.DefaultChain, "transactional", "whitelisted"}

// Channels are the channels a worker registers: the webhook ("external call"), push and SMS (to
// their providers, or to the webhook URL where the local receiver stands in), and the in-app
// inbox in PostgreSQL.
var Channels = []string{"webhook", "push", "sms", "inapp"}

// Catalog is what journeys are validated against: the worker's channels and filter chains.
func Catalog() journey.Catalog { return journey.Catalog{Channels: Channels, Chains: Chains} }

func (c *Config) setDefaults() {
	if c.Pollers == 0 {
		c.Pollers = 8
	}
	if c.TaskQueue == "" {
		c.TaskQueue = workflows.TaskQueue
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "omega"
	}
	if c.DailyCap == 0 {
		c.DailyCap = 3
	}
	if c.Journeys == nil {
		demo, err := journey.NewStatic(Catalog(), journey.Demo()...)
		if err != nil {
			panic(err) // embedded and tested
		}
		c.Journeys = demo
	}
	if c.Profiles == nil {
		c.Profiles = profile.Static{}
	}
	if c.BlacklistKey == "" {
		c.BlacklistKey = store.BlacklistKey
	}
	if c.WhitelistKey == "" {
		c.WhitelistKey = store.WhitelistKey
	}
	if c.Lists == nil && c.Audit != nil {
		// The lists' Redis copies reload from PostgreSQL when Redis lost them.
		c.Lists = store.NewLists(c.Audit.Pool(), c.Redis, map[string]string{"blacklist": c.BlacklistKey, "whitelist": c.WhitelistKey})
	}
	if c.Inbox == nil && c.Audit != nil {
		c.Inbox = store.NewInbox(c.Audit.Pool())
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Validate reports what is missing.
func (c *Config) Validate() error {
	if c.Temporal == nil || c.Redis == nil || c.Audit == nil {
		return errors.New("worker: temporal, redis and audit are required")
	}
	if c.DailyCap < 0 {
		return errors.New("worker: daily cap must not be negative")
	}
	return nil
}

// New returns a worker with the reach workflow and activities registered; Run or Start it.
func New(cfg Config) (sdkworker.Worker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	channels := channel.NewRegistry()
	for _, name := range Channels {
		var ch channel.Channel
		var err error
		switch {
		case name == "push" && cfg.Push != nil:
			ch, err = channel.NewPush(*cfg.Push)
		case name == "sms" && cfg.SMS != nil:
			ch, err = channel.NewSMS(*cfg.SMS)
		case name == "inapp":
			ch = channel.NewInbox(cfg.Inbox)
		default:
			ch, err = channel.NewWebhook(channel.WebhookConfig{Name: name, URL: cfg.WebhookURL,
				Secret: cfg.WebhookSecret, Allow: cfg.WebhookAllow})
		}
		if err != nil {
			return nil, err
		}
		if rate := cfg.RateLimits[name]; rate > 0 {
			ch = &channel.RateLimited{Channel: ch, Limiter: &channel.Limiter{Redis: cfg.Redis,
				Key: cfg.KeyPrefix + ":ratelimit:" + name, Rate: rate, Burst: max(1, int(rate))}}
		}
		if err := channels.Register(ch); err != nil {
			return nil, err
		}
	}
	filters, err := newFilters(cfg)
	if err != nil {
		return nil, err
	}
	acts := &activities.Activities{
		Journeys:  cfg.Journeys,
		Profiles:  cfg.Profiles,
		Redis:     cfg.Redis,
		KeyPrefix: cfg.KeyPrefix,
		Filters:   filters,
		Channels:  channels,
		Audit:     audit.NewBatcher(cfg.Audit),
		Log:       cfg.Log,
	}
	w := sdkworker.New(cfg.Temporal, cfg.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize:      200,
		MaxConcurrentLocalActivityExecutionSize: 200,
		MaxConcurrentWorkflowTaskExecutionSize:  200,
		MaxConcurrentWorkflowTaskPollers:        cfg.Pollers,
		MaxConcurrentActivityTaskPollers:        cfg.Pollers,
		Identity:                                cfg.Identity,
	})
	w.RegisterWorkflow(workflows.ReachWorkflow)
	w.RegisterActivity(acts)
	return w, nil
}

// newFilters registers the filters and defines the Chains.
func newFilters(cfg Config) (*filter.Registry, error) {
	wl := filter.NewWhitelist(cfg.Lists)
	bl := filter.NewBlacklist(cfg.Lists)
	fatigue := filter.NewFatigue(cfg.Redis, cfg.KeyPrefix, cfg.DailyCap, cfg.ChannelCaps)
	fatigue.LastSlotPriority = cfg.LastSlotPriority
	// Consent and quiet hours both read the profile: once per check (Activities.Filter memoizes).
	profiles := profile.Memoized{Source: cfg.Profiles}
	reg := filter.NewRegistry()
	err := reg.Register(
		bl,
		wl,
		&filter.Consent{Profiles: profiles, OptIn: cfg.OptIn},
		&filter.Gray{Allowed: wl.Has},
		fatigue,
	)
	if err != nil {
		return nil, err
	}
	def := []string{"blacklist", "consent", "gray"}
	if cfg.QuietStart != "" || cfg.QuietEnd != "" {
		q := &filter.QuietHours{Profiles: profiles, Start: cfg.QuietStart, End: cfg.QuietEnd}
		if err := q.Validate(); err != nil {
			return nil, err
		}
		if err := reg.Register(q); err != nil {
			return nil, err
		}
		def = append(def, q.Name())
	}
	def = append(def, "fatigue")
	for _, c := range []struct {
		name    string
		filters []string
	}{
		{filter.DefaultChain, def},
		{"transactional", []string{"blacklist", "consent"}},
		{"whitelisted", []string{"whitelist", "consent", "fatigue"}},
	} {
		if err := reg.Define(c.name, c.filters...); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
