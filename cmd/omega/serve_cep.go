package main

import (
	"context"
	"fmt"
	stdlog "log"
	"log/slog"
	"os"
	"runtime/debug"
	"syscall"

	"github.com/IBM/sarama"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/worker"
)

func runCEP(ctx context.Context, log *slog.Logger, cfg config) error {
	if err := cfg.need("OMEGA_CEP_ALLOWED_LATENESS", "OMEGA_CEP_SHARED_GRACE", "OMEGA_CEP_BULK_AFTER", "OMEGA_CEP_MAX_MATCH_AGE", "OMEGA_CEP_EAGER_START", "OMEGA_KAFKA_DEBUG"); err != nil {
		return err
	}
	// The stage's pattern state lives in an arena the collector does not look into (cep/arena.go),
	// so a collection is cheap, but the stage allocates with every event (records, decoded events,
	// commit buffers) and a low heap goal collects often: at GOGC=150 its events per CPU-second
	// fell by a fifth to a third against 400 (docs/benchmarks.md). Trading heap for CPU is the
	// better deal here; GOGC or GOMEMLIMIT in the environment (set the limit below the
	// container's) take precedence.
	if !cfg.gogcSet {
		debug.SetGCPercent(400)
	}
	tc, err := dialTemporalWhenUp(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	rdb := cfg.newRedis()
	defer rdb.Close()
	pool, err := openStore(ctx, log, cfg.pgURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	sc := cep.DefaultSaramaConfig()
	if err := secureKafka(sc); err != nil {
		return err
	}
	if cfg.kafkaDebug {
		// The consumer group's protocol (joins, syncs, sessions, heartbeats stopped), for an
		// operator whose replicas stop consuming without an error.
		sarama.Logger = stdlog.New(os.Stderr, "sarama: ", stdlog.LstdFlags|stdlog.Lmicroseconds|stdlog.LUTC)
	}
	c := cep.Config{
		Brokers: cfg.brokers, Sarama: sc, Redis: rdb, RuleSource: cep.NewRuleStore(pool, ruleCatalog(pool)),
		EventTypes: eventtype.NewStore(pool),
		Profiles:   &profile.Cached{Store: profile.NewStore(pool), Redis: rdb},
		Starter:    &cep.TemporalStarter{Client: tc, TaskQueue: cfg.taskQueue, Audit: audit.NewStore(pool), Log: log},
		Unstarted:  cep.AuditUnstarted{Store: audit.NewStore(pool)}, Tracker: audit.NewStore(pool), Log: log,
		Topic: cfg.topic, Group: cfg.cepGroup, AllowedLateness: cfg.allowedLateness, SharedGrace: cfg.sharedGrace,
		BulkAfter: cfg.bulkAfter, MaxMatchAge: cfg.maxMatchAge,
		KeyPrefix: cfg.keyPrefix, ReachPrefix: cfg.keyPrefix,
	}
	if c.Topic != "" {
		c.DLQTopic = c.Topic + ".dlq"
	}
	// OMEGA_CEP_CRASH_AT: the fault suite kills this process at a step of a batch (cep.Point*).
	if point := cfg.crashAt; point != "" {
		log.Warn("this process kills itself at the first batch with matches that reaches a point (fault testing)", "point", point)
		cep.CrashAt(point, func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) })
	}
	// OMEGA_RULES: rules from files (a file or a directory), instead of the rule store.
	if path := cfg.rulesPath; path != "" {
		rs, err := cep.LoadRules(path)
		if err != nil {
			return err
		}
		c.RuleSource, c.Rules = nil, rs
	}
	// OMEGA_CEP_EAGER_START: a reach worker inside this process, and starts with eager workflow
	// start: a single-send reach's only workflow task comes back in the start's answer and runs
	// here, skipping the matching service (docs/benchmarks.md: ~40% less Temporal CPU per reach).
	// The standalone workers keep everything else (retries, timers, later journey steps).
	if cfg.eagerStart {
		w, err := worker.New(cfg.workerConfig(tc, rdb, pool, workerIdentity(cfg, "/cep"), log))
		if err != nil {
			return err
		}
		if err := w.Start(); err != nil {
			return fmt.Errorf("start the eager reach worker: %w", err)
		}
		defer w.Stop()
		c.Starter.(*cep.TemporalStarter).Eager = true
		log.Info("eager workflow start: a reach worker runs in this process", "task_queue", cfg.taskQueue)
	}
	st, err := cep.New(c)
	if err != nil {
		return err
	}
	// Run retries its backends itself; the lag metric says whether it keeps up. Ready once Kafka
	// and Temporal both answer.
	go markReadyWhenServing(ctx, log, tc, cfg.taskQueue, "", st.Connected())
	return st.Run(ctx)
}
