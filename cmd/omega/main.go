// Command omega runs the parts of Omega Reach: `omega api`, `omega cep`, `omega worker`, plus
// `omega receiver` (a stand-in provider for the local stack) and `omega migrate`. Configuration
// comes from OMEGA_* environment variables; `deploy/local/stack.sh env` prints the local ones.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/pii"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/store"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage())
		os.Exit(2)
	}
	cfg := configFromEnv()
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// OMEGA_METRICS_ADDR: where api, cep and worker serve /metrics (off when empty).
	switch os.Args[1] {
	case "api", "cep", "worker":
		metrics.Serve(ctx, cfg.metricsAddr, log)
		// OMEGA_TRACE_EXPORTER: where spans go (off by default; trace IDs travel regardless).
		shutdown, err := tracing.Setup(ctx, "omega-"+os.Args[1], cfg.traceExporter, cfg.traceFile)
		if err != nil {
			log.Error("omega stopped", "cmd", os.Args[1], "err", err)
			os.Exit(1)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = shutdown(sctx)
		}()
	}
	var err error
	switch os.Args[1] {
	case "api":
		err = runAPI(ctx, log, cfg)
	case "cep":
		err = runCEP(ctx, log, cfg)
	case "worker":
		err = runWorker(ctx, log, cfg)
	case "receiver":
		err = runReceiver(ctx, log, cfg)
	case "migrate":
		err = store.Migrate(cfg.pgURL)
	case "profiles":
		err = runProfiles(ctx, cfg, os.Args[2:], os.Stdout)
	case "journeys":
		err = runJourneys(ctx, cfg, os.Args[2:], os.Stdout)
	case "rules":
		err = runRules(ctx, cfg, os.Args[2:], os.Stdout)
	case "templates":
		err = runTemplates(ctx, cfg, os.Args[2:], os.Stdout)
	case "reaches":
		err = runReaches(ctx, cfg, os.Args[2:], os.Stdout)
	case "audiences":
		err = runAudiences(ctx, cfg, os.Args[2:], os.Stdout)
	case "events":
		err = runEvents(ctx, cfg, os.Args[2:], os.Stdout)
	case "apikey":
		err = runAPIKeys(ctx, cfg, os.Args[2:], os.Stdout)
	case "probe":
		err = probe(os.Args[2:])
	case "help", "-h", "--help":
		fmt.Print(usage())
	default:
		fmt.Fprint(os.Stderr, usage())
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the usage was printed
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("omega stopped", "cmd", os.Args[1], "err", err)
		os.Exit(1)
	}
}

// newLogger logs to stderr with phone numbers, email addresses and push tokens masked.
func newLogger(cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{}
	if cfg.logLevel == "debug" {
		opts.Level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(pii.Handler(tracing.LogHandler(h)))
}
