// Package worker builds the Temporal worker that runs reach workflows and their activities on the
// omega-reach task queue and its bulk queue (workflows.BulkQueue): it wires the journey catalog,
// the filter chain, the channel registry and the audit store into one activities value and
// registers it with the workflow.
package worker

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nexus-rpc/sdk-go/nexus"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/activities/plugin"
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
	// Channels and Filters are the plug-ins the worker builds (channel.Builtin() and
	// filter.Builtin() when nil); Chains the filter chains a send may name (filter.Chains when
	// nil).
	Channels *channel.Plugins
	Filters  *filter.Plugins
	Chains   []filter.ChainSpec
	// Settings configure the plug-ins by environment variable name (OMEGA_WEBHOOK_URL,
	// OMEGA_DAILY_CAP ...), each registered field's default where absent; the mains read them
	// with plugin.FromEnv.
	Settings plugin.Values
	// RateLimits caps each channel's provider at sends per second across all workers (Redis
	// token bucket); no limit when absent.
	RateLimits map[string]float64
	// WhitelistKey is the Redis set of the whitelist and the gray rollout's allowlist
	// (store.WhitelistKey when empty).
	WhitelistKey string
	// Journeys gives each new run its journey (the demo journeys when nil); Profiles the user's
	// profile (none when nil).
	Journeys journey.Source
	Profiles profile.Source
	// Pages reads every profile a page at a time for audience broadcasts (the audit store's
	// database when nil).
	Pages activities.ProfilePager
	// ControlGroupPercent is the share of users held out of every marketing journey (0: none).
	ControlGroupPercent float64
	// Interceptors wrap the worker's workflows and activities (tracing, metrics of your own; the
	// tests inject faults with them).
	Interceptors []interceptor.WorkerInterceptor
	// StopTimeout is how long Stop lets the tasks in flight finish (DefaultStopTimeout when zero;
	// negative: none). A workflow task abandoned there runs again on another worker once it times
	// out, sending again what it had sent: the provider's deduplication by idempotency key is then
	// all that keeps the user from a second message.
	StopTimeout time.Duration
	Log         *slog.Logger
}

// DefaultStopTimeout is Config.StopTimeout's default: within the 15 s make down (and Kubernetes'
// default 30 s) allow before SIGKILL.
const DefaultStopTimeout = 10 * time.Second

// Chains are the names of the filter chains a journey's send may name (filter.Chains).
var Chains = filter.ChainNames(filter.Chains)

// Channels are the channels a worker registers: those the channel package declares.
var Channels = channel.Builtin().Names()

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
	if c.Channels == nil {
		c.Channels = channel.Builtin()
	}
	if c.Filters == nil {
		c.Filters = filter.Builtin()
	}
	if c.Chains == nil {
		c.Chains = filter.Chains
	}
}

// Validate reports what is missing.
func (c *Config) Validate() error {
	if c.Temporal == nil || c.Redis == nil || c.Audit == nil {
		return errors.New("worker: temporal, redis and audit are required")
	}
	return nil
}

// New returns a worker with the reach workflow and activities registered; Run or Start it.
func New(cfg Config) (sdkworker.Worker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	channels, err := channel.Build(cfg.Channels, cfg.Settings, channel.Deps{Inbox: cfg.Inbox}, func(ch channel.Channel) channel.Channel {
		if rate := cfg.RateLimits[ch.Name()]; rate > 0 {
			return &channel.RateLimited{Channel: ch, Limiter: &channel.Limiter{Redis: cfg.Redis,
				Key: cfg.KeyPrefix + ":ratelimit:" + ch.Name(), Rate: rate, Burst: max(1, int(rate))}}
		}
		return ch
	})
	if err != nil {
		return nil, err
	}
	// Consent and quiet hours both read the profile: once per check (Activities.Filter memoizes).
	filters, err := filter.Build(cfg.Filters, cfg.Settings, filter.Deps{Redis: cfg.Redis, KeyPrefix: cfg.KeyPrefix,
		Lists: cfg.Lists, Profiles: profile.Memoized{Source: cfg.Profiles}}, cfg.Chains)
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
		Opens:     cfg.Audit,
		Log:       cfg.Log,
		Pages:     cfg.Pages,
		Reaches:   workflows.Starter{Client: cfg.Temporal, TaskQueue: cfg.TaskQueue},
		Lists:     cfg.Lists,

		ControlGroupPercent: cfg.ControlGroupPercent,
	}
	if acts.Pages == nil {
		acts.Pages = profile.NewStore(cfg.Audit.Pool())
	}
	stopTimeout := cfg.StopTimeout
	switch {
	case stopTimeout == 0:
		stopTimeout = DefaultStopTimeout
	case stopTimeout < 0:
		stopTimeout = 0
	}
	// One worker for the task queue and one for its bulk queue: each its own polls and slots, so
	// a bulk backlog never holds the fresh reaches' tasks (workflows.BulkQueue).
	var ws queues
	for _, q := range []string{cfg.TaskQueue, workflows.BulkQueue(cfg.TaskQueue)} {
		ws = append(ws, sdkworker.New(cfg.Temporal, q, sdkworker.Options{
			MaxConcurrentActivityExecutionSize:      200,
			MaxConcurrentLocalActivityExecutionSize: 200,
			MaxConcurrentWorkflowTaskExecutionSize:  200,
			MaxConcurrentWorkflowTaskPollers:        cfg.Pollers,
			MaxConcurrentActivityTaskPollers:        cfg.Pollers,
			Identity:                                cfg.Identity,
			Interceptors:                            cfg.Interceptors,
			WorkerStopTimeout:                       stopTimeout,
		}))
	}
	ws.RegisterWorkflow(workflows.ReachWorkflow)
	ws.RegisterWorkflow(workflows.BroadcastWorkflow)
	ws.RegisterActivity(acts)
	return ws, nil
}

// queues is a worker per task queue, run as one: registered, started and stopped together.
type queues []sdkworker.Worker

func (ws queues) RegisterWorkflow(w any) {
	for _, x := range ws {
		x.RegisterWorkflow(w)
	}
}

func (ws queues) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	for _, x := range ws {
		x.RegisterWorkflowWithOptions(w, o)
	}
}

func (ws queues) RegisterDynamicWorkflow(w any, o workflow.DynamicRegisterOptions) {
	for _, x := range ws {
		x.RegisterDynamicWorkflow(w, o)
	}
}

func (ws queues) RegisterActivity(a any) {
	for _, x := range ws {
		x.RegisterActivity(a)
	}
}

func (ws queues) RegisterActivityWithOptions(a any, o activity.RegisterOptions) {
	for _, x := range ws {
		x.RegisterActivityWithOptions(a, o)
	}
}

func (ws queues) RegisterDynamicActivity(a any, o activity.DynamicRegisterOptions) {
	for _, x := range ws {
		x.RegisterDynamicActivity(a, o)
	}
}

func (ws queues) RegisterNexusService(s *nexus.Service) {
	for _, x := range ws {
		x.RegisterNexusService(s)
	}
}

// Start starts every worker, or none: one that started is stopped when the next fails.
func (ws queues) Start() error {
	for i, x := range ws {
		if err := x.Start(); err != nil {
			ws[:i].Stop()
			return err
		}
	}
	return nil
}

// Run starts the workers and stops them when interruptCh receives (or Stop is called), as
// sdkworker.Worker.Run.
func (ws queues) Run(interruptCh <-chan any) error {
	if err := ws[1:].Start(); err != nil {
		return err
	}
	defer ws[1:].Stop()
	return ws[0].Run(interruptCh)
}

// Stop stops the workers at once, each letting its tasks in flight finish.
func (ws queues) Stop() {
	var wg sync.WaitGroup
	for _, x := range ws {
		wg.Go(x.Stop)
	}
	wg.Wait()
}
