// Command omega runs the parts of Omega Reach: `omega api`, `omega cep`, `omega worker`, plus
// `omega receiver` (a stand-in provider for the local stack) and `omega migrate`. Configuration
// comes from OMEGA_* environment variables; `deploy/local/stack.sh env` prints the local ones.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	tlog "go.temporal.io/sdk/log"
	"google.golang.org/grpc"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/backfill"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/pii"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/worker"
)

const usageHead = `usage: omega <command>

commands:
  api       serve EventService and ReachService (OMEGA_API_ADDR)
  cep       run a CEP replica: consume omega.events, start reach workflows
  worker    run reach workflows and activities
  receiver  a stand-in provider that logs webhook deliveries (OMEGA_RECEIVER_ADDR)
  migrate   bring the PostgreSQL schema up to date
  probe URL exit 0 when URL answers 200 (container health checks without curl)
  rules     validate, apply, list, get, disable and dry-run rules (omega rules for help)
  journeys  validate, apply, list, get and disable journeys (omega journeys for help)
  profiles  import (JSONL or CSV), get and set user profiles (omega profiles for help)
  templates list a journey's templates and preview them (omega templates for help)
  reaches   list, get, cancel and trigger reaches through the API (omega reaches for help)
  events    send events through the API; declare event types (omega events for help)
  apikey    create, revoke and list API keys (omega apikey for help)

environment (defaults in brackets):
  OMEGA_KAFKA_BROKERS [127.0.0.1:9092]   OMEGA_REDIS_ADDR [127.0.0.1:6379]
  OMEGA_PG_URL [postgres://postgres@127.0.0.1:5432/omega?sslmode=disable]
  OMEGA_TEMPORAL_ADDR [127.0.0.1:7233]   OMEGA_TEMPORAL_NAMESPACE [default]
  (OMEGA_REDIS_ADDR: several comma-separated addresses are a Redis Cluster's seeds)
  OMEGA_API_ADDR [127.0.0.1:8080]        OMEGA_RECEIVER_ADDR [127.0.0.1:8090]
  OMEGA_API_URL [http://$OMEGA_API_ADDR] OMEGA_API_KEY (reaches, events)
  OMEGA_API_RATE [50: requests/s per key without its own rate]
  OMEGA_API_TLS_CERT_FILE OMEGA_API_TLS_KEY_FILE [TLS off] OMEGA_API_TLS_CA_FILE [client certificates required]
TLS and credentials of clients (SECURITY.md): OMEGA_{KAFKA,REDIS,TEMPORAL}_TLS=1, _CA_FILE, _CERT_FILE,
  _KEY_FILE; OMEGA_KAFKA_SASL_MECHANISM/_USER/_PASSWORD; OMEGA_REDIS_USERNAME/_PASSWORD;
  OMEGA_TEMPORAL_API_KEY; PostgreSQL in OMEGA_PG_URL (sslmode, sslrootcert ...). Any secret X
  may be a file: X_FILE.
  OMEGA_TASK_QUEUE [omega-reach]
  OMEGA_METRICS_ADDR [off; api, cep, worker: /metrics (Prometheus), /healthz, /readyz there]
  OMEGA_KEY_PREFIX [omega: Redis keys of cep and worker]
  OMEGA_TRACE_EXPORTER [none|otlp|stdout: OpenTelemetry spans; otlp reads OTEL_EXPORTER_OTLP_*]
  OMEGA_TRACE_FILE [stdout: where the stdout exporter writes JSON spans]
  OMEGA_PPROF [off; 1: Go profiles at /debug/pprof/ on OMEGA_METRICS_ADDR]
  OMEGA_EVENTS_TOPIC [omega.events: api produces, cep consumes; DLQ: <topic>.dlq]
cep only:
  OMEGA_CEP_GROUP [omega-cep]
  OMEGA_CEP_ALLOWED_LATENESS [5s: how far a partition's watermark trails its latest event time]
  OMEGA_CEP_EAGER_START [false; make run and deploy/ set true: a reach worker in this process
    (the worker's settings apply) and eager workflow starts]
  OMEGA_RULES [the rule store; or rules from a file or directory]
  OMEGA_LOG_FORMAT [text|json]  OMEGA_LOG_LEVEL [info|debug]   (phones, emails, tokens masked)
worker only:
  OMEGA_AUDIT_RETENTION [2160h: audit day partitions older are dropped]
  OMEGA_RATE_LIMITS [sms=10,push=500: sends per second per channel, across workers; none when empty]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage())
		os.Exit(2)
	}
	log := newLogger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := configFromEnv()

	// OMEGA_METRICS_ADDR: where api, cep and worker serve /metrics (off when empty).
	switch os.Args[1] {
	case "api", "cep", "worker":
		metrics.Serve(ctx, os.Getenv("OMEGA_METRICS_ADDR"), log)
		// OMEGA_TRACE_EXPORTER: where spans go (off by default; trace IDs travel regardless).
		shutdown, err := tracing.Setup(ctx, "omega-"+os.Args[1], os.Getenv("OMEGA_TRACE_EXPORTER"), os.Getenv("OMEGA_TRACE_FILE"))
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
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("omega stopped", "cmd", os.Args[1], "err", err)
		os.Exit(1)
	}
}

type config struct {
	brokers      []string
	redisOpts    *redis.Options
	keyPrefix    string
	pgURL        string
	temporalAddr string
	namespace    string
	apiAddr      string
	receiverAddr string
	taskQueue    string
	rates        map[string]float64
	// plugins are the settings the channels and filters declare (plugin.FromEnv).
	plugins plugin.Values
}

// newRedis connects with the configured credentials and TLS: one address is a single server (or a
// proxy), several are the seeds of a Redis Cluster (every multi-key operation uses one user's or
// one pattern's hash tag, so it stays on one slot).
func (c config) newRedis() redis.UniversalClient {
	o := c.redisOpts
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(o.Addr, ","), Username: o.Username,
		Password: o.Password, TLSConfig: o.TLSConfig})
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func configFromEnv() config {
	die := func(name, why string) {
		fmt.Fprintf(os.Stderr, "%s: %s\n", name, why)
		os.Exit(2)
	}
	rates := map[string]float64{}
	for _, kv := range strings.FieldsFunc(env("OMEGA_RATE_LIMITS", ""), func(r rune) bool { return r == ',' }) {
		ch, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || n <= 0 {
			die("OMEGA_RATE_LIMITS", "want channel=sends-per-second,... (sms=10,push=500)")
		}
		rates[ch] = n
	}
	redisOpts, err := redisOptions(env("OMEGA_REDIS_ADDR", "127.0.0.1:6379"))
	if err != nil {
		die("OMEGA_REDIS_*", err.Error())
	}
	plugins, err := plugin.FromEnv(pluginFields(), func(f plugin.Field) (string, error) {
		if f.Secret {
			return secret(f.Env)
		}
		return os.Getenv(f.Env), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return config{
		taskQueue: env("OMEGA_TASK_QUEUE", "omega-reach"), rates: rates, plugins: plugins,
		brokers:      strings.Split(env("OMEGA_KAFKA_BROKERS", "127.0.0.1:9092"), ","),
		redisOpts:    redisOpts,
		keyPrefix:    env("OMEGA_KEY_PREFIX", "omega"),
		pgURL:        env("OMEGA_PG_URL", "postgres://postgres@127.0.0.1:5432/omega?sslmode=disable"),
		temporalAddr: env("OMEGA_TEMPORAL_ADDR", "127.0.0.1:7233"),
		namespace:    env("OMEGA_TEMPORAL_NAMESPACE", "default"),
		apiAddr:      env("OMEGA_API_ADDR", "127.0.0.1:8080"),
		receiverAddr: env("OMEGA_RECEIVER_ADDR", "127.0.0.1:8090"),
	}
}

// pluginFields are the settings every registered channel and filter declares.
func pluginFields() []plugin.Field {
	return append(channel.Builtin().Fields(), filter.Builtin().Fields()...)
}

// newLogger logs to stderr with phone numbers, email addresses and push tokens masked.
func newLogger() *slog.Logger {
	opts := &slog.HandlerOptions{}
	if os.Getenv("OMEGA_LOG_LEVEL") == "debug" {
		opts.Level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if os.Getenv("OMEGA_LOG_FORMAT") == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(pii.Handler(tracing.LogHandler(h)))
}

func dialTemporal(ctx context.Context, log *slog.Logger, cfg config) (client.Client, error) {
	o := client.Options{HostPort: cfg.temporalAddr, Namespace: cfg.namespace, Logger: tlog.NewStructuredLogger(log)}
	if err := secureTemporal(&o); err != nil {
		return nil, err
	}
	// Starts whose answer carries the first workflow task were eager (OMEGA_CEP_EAGER_START).
	o.ConnectionOptions.DialOptions = append(o.ConnectionOptions.DialOptions, grpc.WithChainUnaryInterceptor(countEagerStarts))
	if tracing.Enabled() {
		// Spans for starting, running and signalling workflows and for their activities, the
		// trace context carried in Temporal headers.
		ti, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{TextMapPropagator: otel.GetTextMapPropagator()})
		if err != nil {
			return nil, err
		}
		o.Interceptors = append(o.Interceptors, ti)
	}
	c, err := client.DialContext(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("dial temporal at %s: %w", cfg.temporalAddr, err)
	}
	return c, nil
}

func countEagerStarts(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker,
	opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if r, ok := reply.(*workflowservice.StartWorkflowExecutionResponse); ok && err == nil && r.GetEagerWorkflowTask() != nil {
		metrics.EagerStarts.Inc()
	}
	return err
}

func runAPI(ctx context.Context, log *slog.Logger, cfg config) error {
	tc, err := dialTemporal(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	pool, err := store.Open(ctx, cfg.pgURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	prod, err := api.NewProducer(cfg.brokers, secureKafka)
	if err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	defer prod.Close()
	journeys := journey.NewStore(pool, journeyCatalogFor(pool))
	rdb := cfg.newRedis()
	defer rdb.Close()
	rate, err := strconv.ParseFloat(env("OMEGA_API_RATE", "50"), 64)
	if err != nil || rate <= 0 {
		return fmt.Errorf("OMEGA_API_RATE: want requests per second, got %q", os.Getenv("OMEGA_API_RATE"))
	}
	// Backfills run in the API process, on a stage of their own (its own group and key prefix).
	if err := secureKafka(sarama.NewConfig()); err != nil {
		return err
	}
	backfills, err := backfill.New(backfill.Config{Brokers: cfg.brokers, Topic: os.Getenv("OMEGA_EVENTS_TOPIC"), Redis: rdb,
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
	h, err := api.NewHandler(api.Config{Producer: prod, Topic: os.Getenv("OMEGA_EVENTS_TOPIC"), Temporal: tc, Audit: audit.NewStore(pool), Journeys: journeyExists(journeys),
		Keys: apikey.NewStore(pool), DefaultRate: rate,
		Profiles: &profile.Cached{Store: profile.NewStore(pool), Redis: rdb},
		Redis:    rdb, Lists: store.NewLists(pool, rdb, map[string]string{"blacklist": store.BlacklistKey, "whitelist": store.WhitelistKey}),
		RuleStore: cep.NewRuleStore(pool, ruleCatalog(pool)), JourneyStore: journeys, Backfill: backfills,
		EventTypes: eventtype.NewStore(pool),
		Inbox:      store.NewInbox(pool), TaskQueue: cfg.taskQueue, Log: log})
	if err != nil {
		return err
	}
	// OMEGA_API_TLS_CERT_FILE and OMEGA_API_TLS_KEY_FILE serve TLS (and OMEGA_API_TLS_CA_FILE asks clients
	// for certificates signed by it).
	stls, err := serverTLS()
	if err != nil {
		return err
	}
	// Ready without waiting for Temporal: ingestion needs only Kafka, and the API must keep
	// taking events while Temporal is away (make run waits for the worker, which needs it).
	metrics.MarkReady()
	return api.ServeTLS(ctx, cfg.apiAddr, h, stls, log)
}

func runCEP(ctx context.Context, log *slog.Logger, cfg config) error {
	// The stage holds its partitions' pattern state in memory: hundreds of thousands of small,
	// long-lived instances that every collection marks again (a quarter of its CPU at GOGC=100,
	// docs/benchmarks.md). Trading heap for CPU is the better deal here; GOGC or GOMEMLIMIT in the
	// environment (set the limit below the container's) take precedence.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	tc, err := dialTemporal(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	rdb := cfg.newRedis()
	defer rdb.Close()
	pool, err := store.Open(ctx, cfg.pgURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	sc := cep.DefaultSaramaConfig()
	if err := secureKafka(sc); err != nil {
		return err
	}
	c := cep.Config{
		Brokers: cfg.brokers, Sarama: sc, Redis: rdb, RuleSource: cep.NewRuleStore(pool, ruleCatalog(pool)),
		EventTypes: eventtype.NewStore(pool),
		Profiles:   &profile.Cached{Store: profile.NewStore(pool), Redis: rdb},
		Starter:    &cep.TemporalStarter{Client: tc, TaskQueue: cfg.taskQueue, Audit: audit.NewStore(pool), Log: log},
		Shadow:     cep.AuditShadow{Store: audit.NewStore(pool)}, Tracker: audit.NewStore(pool), Log: log,
		Topic: os.Getenv("OMEGA_EVENTS_TOPIC"), Group: os.Getenv("OMEGA_CEP_GROUP"),
		KeyPrefix: cfg.keyPrefix, ReachPrefix: cfg.keyPrefix,
	}
	if c.Topic != "" {
		c.DLQTopic = c.Topic + ".dlq"
	}
	if v := os.Getenv("OMEGA_CEP_ALLOWED_LATENESS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("OMEGA_CEP_ALLOWED_LATENESS: want a duration such as 5s, got %q", v)
		}
		c.AllowedLateness = d
	}
	// OMEGA_CEP_CRASH_AT: the fault suite kills this process at a step of a batch (cep.Point*).
	if point := os.Getenv("OMEGA_CEP_CRASH_AT"); point != "" {
		log.Warn("this process kills itself at the first batch with matches that reaches a point (fault testing)", "point", point)
		cep.CrashAt(point, func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) })
	}
	// OMEGA_RULES: rules from files (a file or a directory), instead of the rule store.
	if path := os.Getenv("OMEGA_RULES"); path != "" {
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
	if eager, err := envBool("OMEGA_CEP_EAGER_START"); err != nil {
		return err
	} else if eager {
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
	// Run retries its backends itself; the lag metric says whether it keeps up.
	go markReadyWhenServing(ctx, log, tc, cfg.taskQueue, "")
	return st.Run(ctx)
}

func runWorker(ctx context.Context, log *slog.Logger, cfg config) error {
	tc, err := dialTemporal(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	pool, err := store.Open(ctx, cfg.pgURL)
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
	// OMEGA_AUDIT_RETENTION: the trail's day partitions are created ahead and dropped past it.
	retention := audit.DefaultRetention
	if v := os.Getenv("OMEGA_AUDIT_RETENTION"); v != "" {
		if retention, err = time.ParseDuration(v); err != nil || retention < 24*time.Hour {
			return fmt.Errorf("OMEGA_AUDIT_RETENTION=%q: a duration of at least 24h, like 2160h", v)
		}
	}
	go audit.NewStore(pool).RunMaintenance(ctx, log, retention, time.Hour)
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
		Profiles: &profile.Cached{Store: profile.NewStore(pool), Redis: rdb}, Log: log}
}

func runReceiver(ctx context.Context, log *slog.Logger, cfg config) error {
	srv := &http.Server{Addr: cfg.receiverAddr, Handler: channel.NewReceiver(log), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("receiver listening", "addr", cfg.receiverAddr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// markReadyWhenServing marks the process ready (/readyz) once Temporal serves the task queue, and
// with an identity, once that worker's polls arrive (see worker.Serving): a frontend that
// answers is not yet a Temporal that runs reaches.
func markReadyWhenServing(ctx context.Context, log *slog.Logger, tc client.Client, taskQueue, identity string) {
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := worker.WaitServing(tctx, tc, taskQueue, identity)
	cancel()
	if err != nil {
		log.Warn("waiting for temporal to serve", "task_queue", taskQueue, "err", err)
		if err := worker.WaitServing(ctx, tc, taskQueue, identity); err != nil {
			return // stopping
		}
	}
	log.Info("temporal serves", "task_queue", taskQueue)
	metrics.MarkReady()
}

// probe is a health check for images without curl: omega probe http://127.0.0.1:9464/readyz.
func probe(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: omega probe URL")
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	return nil
}

// envBool reads a boolean setting (unset: false).
func envBool(name string) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", name, v)
	}
	return b, nil
}
