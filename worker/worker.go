// Package worker builds the Temporal worker that runs reach workflows and their activities on the
// omega-reach task queue: it wires the journey catalog, the filter chain, the channel registry and
// the audit store into one activities value and registers it with the workflow.
package worker

import (
	"errors"
	"log/slog"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/workflows"
)

// Config configures the reach worker.
type Config struct {
	Temporal client.Client
	// TaskQueue (workflows.TaskQueue when empty); tests use their own.
	TaskQueue string
	Redis     redis.UniversalClient
	// KeyPrefix prefixes the filters' Redis keys ("omega" when empty).
	KeyPrefix string
	// BlacklistKey is the Redis set of blacklisted users (filter.BlacklistKey when empty).
	BlacklistKey string
	Audit        *audit.Store
	// WebhookURL is where the webhook channel posts.
	WebhookURL string
	// DailyCap is the most sends per user per day (3 when zero).
	DailyCap int
	// Journeys gives each new run its journey (the demo journeys when nil); Profiles the user's
	// profile (none when nil).
	Journeys journey.Source
	Profiles profile.Source
	Log      *slog.Logger
}

// Channels are the channels a worker registers: the webhook ("external call"), and push and SMS
// through the same provider URL (the local receiver stands in for the providers).
var Channels = []string{"webhook", "push", "sms"}

func (c *Config) setDefaults() {
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
		demo, err := journey.NewStatic(journey.Catalog{Channels: Channels}, journey.Demo()...)
		if err != nil {
			panic(err) // embedded and tested
		}
		c.Journeys = demo
	}
	if c.Profiles == nil {
		c.Profiles = profile.Static{}
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
		wh, err := channel.NewWebhook(channel.WebhookConfig{Name: name, URL: cfg.WebhookURL})
		if err != nil {
			return nil, err
		}
		if err := channels.Register(wh); err != nil {
			return nil, err
		}
	}
	acts := &activities.Activities{
		Journeys:  cfg.Journeys,
		Profiles:  cfg.Profiles,
		Redis:     cfg.Redis,
		KeyPrefix: cfg.KeyPrefix,
		Chain: filter.Chain{
			filter.NewBlacklist(cfg.Redis, cfg.BlacklistKey),
			filter.NewDailyCap(cfg.Redis, cfg.KeyPrefix, cfg.DailyCap),
		},
		Channels: channels,
		Audit:    cfg.Audit,
		Log:      cfg.Log,
	}
	w := sdkworker.New(cfg.Temporal, cfg.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize:      200,
		MaxConcurrentLocalActivityExecutionSize: 200,
		MaxConcurrentWorkflowTaskExecutionSize:  200,
	})
	w.RegisterWorkflow(workflows.ReachWorkflow)
	w.RegisterActivity(acts)
	return w, nil
}
