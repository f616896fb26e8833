package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/IBM/sarama"
	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/backfill"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/console"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/store"
)

func runAPI(ctx context.Context, log *slog.Logger, cfg config) error {
	if err := cfg.need("OMEGA_API_RATE"); err != nil {
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
	if err := secureKafka(sarama.NewConfig()); err != nil {
		return err
	}
	prod, err := awaitDependency(ctx, log, "kafka", func() (sarama.SyncProducer, error) {
		return api.NewProducer(cfg.brokers, secureKafka)
	}, kafkaPermanent)
	if err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	defer prod.Close()
	journeys := journey.NewStore(pool, journeyCatalogFor(pool))
	rdb := cfg.newRedis()
	defer rdb.Close()
	// Backfills run in the API process, on a stage of their own (its own group and key prefix).
	backfills, err := backfill.New(backfill.Config{Brokers: cfg.brokers, Topic: cfg.topic, Redis: rdb,
		EventTypes: eventtype.NewStore(pool),
		Sarama: func() *sarama.Config {
			sc := cep.DefaultSaramaConfig()
			_ = secureKafka(sc) // checked above
			return sc
		},
		Profiles: &profile.Cached{Store: profile.NewStore(pool), Redis: rdb},
		Starter:  &backfill.TemporalStarter{Client: tc, TaskQueue: cfg.taskQueue}, Log: log})
	if err != nil {
		return err
	}
	h, err := api.NewHandler(api.Config{Producer: prod, Topic: cfg.topic, Temporal: tc, Audit: audit.NewStore(pool), Journeys: journeyExists(journeys),
		Keys: apikey.NewStore(pool), DefaultRate: cfg.apiRate,
		Profiles: &profile.Cached{Store: profile.NewStore(pool), Redis: rdb},
		Redis:    rdb, Lists: store.NewLists(pool, rdb, map[string]string{"blacklist": store.BlacklistKey, "whitelist": store.WhitelistKey}),
		RuleStore: cep.NewRuleStore(pool, ruleCatalog(pool)), JourneyStore: journeys, Backfill: backfills,
		EventTypes: eventTypeStore(pool),
		Inbox:      store.NewInbox(pool), Pages: profile.NewStore(pool), TaskQueue: cfg.taskQueue, Log: log})
	if err != nil {
		return err
	}
	// OMEGA_API_TLS_CERT_FILE and OMEGA_API_TLS_KEY_FILE serve TLS (and OMEGA_API_TLS_CA_FILE asks clients
	// for certificates signed by it).
	stls, err := serverTLS()
	if err != nil {
		return err
	}
	// The console (/console/) beside the API, calling it in-process with each visitor's key;
	// OMEGA_TEMPORAL_UI_URL is where its run links point (http://127.0.0.1:8233 when unset).
	if h, err = console.Mount(h, console.Config{TemporalUI: cfg.temporalUI, SecureCookie: stls != nil, Log: log}); err != nil {
		return err
	}
	// Ready without waiting for Temporal: ingestion needs only Kafka, and the API must keep
	// taking events while Temporal is away (make run waits for the worker, which needs it).
	metrics.MarkReady()
	return api.ServeTLS(ctx, cfg.apiAddr, h, stls, log)
}
