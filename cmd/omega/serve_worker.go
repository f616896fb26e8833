package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/worker"
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
)

func runWorker(ctx context.Context, log *slog.Logger, cfg config) error {
	if err := cfg.need("OMEGA_AUDIT_RETENTION", "OMEGA_CONTROL_GROUP_PERCENT"); err != nil {
		return err
	}
	tc, err := dialTemporalWhenUp(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	pool, err := openStore(ctx, log, cfg.pgURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb := cfg.newRedis()
	defer rdb.Close()
	identity := workerIdentity(cfg, "")
	w, err := worker.New(cfg.workerConfig(tc, rdb, pool, identity, log))
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	// The trail's day partitions are created ahead and dropped past the retention.
	go audit.NewStore(pool).RunMaintenance(ctx, log, cfg.auditRetention, time.Hour)
	go markReadyWhenServing(ctx, log, tc, cfg.taskQueue, identity)
	log.Info("worker running", "task_queue", cfg.taskQueue)
	<-ctx.Done()
	w.Stop()
	return nil
}

func workerIdentity(cfg config, role string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s@%s%s", os.Getpid(), host, cfg.taskQueue, role)
}

// workerConfig is the reach worker's configuration, for omega worker and for the worker inside
// omega cep (eager start).
func (cfg config) workerConfig(tc client.Client, rdb redis.UniversalClient, pool *pgxpool.Pool, identity string, log *slog.Logger) worker.Config {
	return worker.Config{Temporal: tc, Identity: identity, Redis: rdb, Audit: audit.NewStore(pool), KeyPrefix: cfg.keyPrefix,
		TaskQueue: cfg.taskQueue, Settings: cfg.plugins, RateLimits: cfg.rates,
		Lists: store.NewLists(pool, rdb, map[string]string{"blacklist": store.BlacklistKey, "whitelist": store.WhitelistKey}),
		Inbox: store.NewInbox(pool), Journeys: journey.NewStore(pool, journeyCatalog()),
		Profiles: &profile.Cached{Store: profile.NewStore(pool), Redis: rdb}, Pages: profile.NewStore(pool),
		ControlGroupPercent: cfg.controlGroup, Log: log}
}
