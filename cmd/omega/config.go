package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/audit"
)

// config is every setting of every command, read from the environment by configFromEnv and
// nowhere else (the clients' TLS and credentials excepted: security.go reads those, each when
// its client is built). The plug-ins' settings come from their declarations.
type config struct {
	brokers      []string
	redisOpts    *redis.Options
	keyPrefix    string
	pgURL        string
	temporalAddr string
	namespace    string
	apiAddr      string
	apiURL       string // OMEGA_API_URL: where the CLI calls the API
	apiKey       string // OMEGA_API_KEY (or _FILE): the CLI's key
	receiverAddr string
	taskQueue    string
	topic        string // OMEGA_EVENTS_TOPIC (event.Topic when empty)
	rates        map[string]float64
	// plugins are the settings the channels and filters declare (plugin.FromEnv).
	plugins plugin.Values

	metricsAddr   string
	traceExporter string
	traceFile     string
	logLevel      string
	logFormat     string

	apiRate         float64       // api
	cepGroup        string        // cep
	allowedLateness time.Duration // cep (0: the stage's default)
	bulkAfter       time.Duration // cep (0: the stage's default; negative: off)
	maxMatchAge     time.Duration // cep (0: the stage's default; negative: off)
	sharedGrace     time.Duration // cep (0: the stage's default)
	crashAt         string        // cep, fault tests only
	rulesPath       string        // cep: rules from files instead of the store
	eagerStart      bool          // cep
	kafkaDebug      bool          // cep: log the Kafka client's group protocol
	gogcSet         bool          // cep: GOGC given, the stage leaves the collector alone
	auditRetention  time.Duration // worker
	controlGroup    float64       // worker: OMEGA_CONTROL_GROUP_PERCENT (0: none)
	temporalUI      string        // api: where the console's run links point

	// invalid holds the settings only some commands read that have bad values: those commands
	// refuse to start (need), the others run, as each command checked its own settings before.
	invalid map[string]error
}

// need returns the first error of the named settings.
func (c config) need(names ...string) error {
	for _, n := range names {
		if err := c.invalid[n]; err != nil {
			return err
		}
	}
	return nil
}

// configFromEnv reads the configuration. Settings every command uses, and the plug-ins', stop the
// process (exit 2) when they are bad; settings of one command are checked when it starts.
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
	c := config{
		taskQueue: env("OMEGA_TASK_QUEUE", "omega-reach"), rates: rates, plugins: plugins,
		brokers:       strings.Split(env("OMEGA_KAFKA_BROKERS", "127.0.0.1:9092"), ","),
		redisOpts:     redisOpts,
		keyPrefix:     env("OMEGA_KEY_PREFIX", "omega"),
		pgURL:         env("OMEGA_PG_URL", "postgres://postgres@127.0.0.1:5432/omega?sslmode=disable"),
		temporalAddr:  env("OMEGA_TEMPORAL_ADDR", "127.0.0.1:7233"),
		namespace:     env("OMEGA_TEMPORAL_NAMESPACE", "default"),
		apiAddr:       env("OMEGA_API_ADDR", "127.0.0.1:8080"),
		receiverAddr:  env("OMEGA_RECEIVER_ADDR", "127.0.0.1:8090"),
		topic:         os.Getenv("OMEGA_EVENTS_TOPIC"),
		metricsAddr:   os.Getenv("OMEGA_METRICS_ADDR"),
		traceExporter: os.Getenv("OMEGA_TRACE_EXPORTER"),
		traceFile:     os.Getenv("OMEGA_TRACE_FILE"),
		logLevel:      os.Getenv("OMEGA_LOG_LEVEL"),
		logFormat:     os.Getenv("OMEGA_LOG_FORMAT"),
		cepGroup:      os.Getenv("OMEGA_CEP_GROUP"),
		crashAt:       os.Getenv("OMEGA_CEP_CRASH_AT"),
		rulesPath:     os.Getenv("OMEGA_RULES"),
		gogcSet:       os.Getenv("GOGC") != "",
		temporalUI:    os.Getenv("OMEGA_TEMPORAL_UI_URL"),
		invalid:       map[string]error{},
	}
	c.apiURL = env("OMEGA_API_URL", "http://"+c.apiAddr)
	bad := func(name string, err error) {
		if err != nil {
			c.invalid[name] = err
		}
	}
	c.apiKey, err = secret("OMEGA_API_KEY")
	bad("OMEGA_API_KEY", err)
	c.apiRate, err = strconv.ParseFloat(env("OMEGA_API_RATE", "50"), 64)
	if err != nil || c.apiRate <= 0 {
		bad("OMEGA_API_RATE", fmt.Errorf("OMEGA_API_RATE: want requests per second, got %q", os.Getenv("OMEGA_API_RATE")))
	}
	if v := os.Getenv("OMEGA_CEP_ALLOWED_LATENESS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad("OMEGA_CEP_ALLOWED_LATENESS", fmt.Errorf("OMEGA_CEP_ALLOWED_LATENESS: want a duration such as 5s, got %q", v))
		}
		c.allowedLateness = d
	}
	if v := os.Getenv("OMEGA_CEP_SHARED_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad("OMEGA_CEP_SHARED_GRACE", fmt.Errorf("OMEGA_CEP_SHARED_GRACE: want a positive duration such as 24h, got %q", v))
		}
		c.sharedGrace = d
	}
	c.bulkAfter, err = envDurationOrOff("OMEGA_CEP_BULK_AFTER", "1m")
	bad("OMEGA_CEP_BULK_AFTER", err)
	c.maxMatchAge, err = envDurationOrOff("OMEGA_CEP_MAX_MATCH_AGE", "24h")
	bad("OMEGA_CEP_MAX_MATCH_AGE", err)
	c.eagerStart, err = envBool("OMEGA_CEP_EAGER_START")
	bad("OMEGA_CEP_EAGER_START", err)
	c.kafkaDebug, err = envBool("OMEGA_KAFKA_DEBUG")
	bad("OMEGA_KAFKA_DEBUG", err)
	if v := os.Getenv("OMEGA_CONTROL_GROUP_PERCENT"); v != "" {
		c.controlGroup, err = strconv.ParseFloat(v, 64)
		if err != nil || c.controlGroup < 0 || c.controlGroup > 50 {
			bad("OMEGA_CONTROL_GROUP_PERCENT", fmt.Errorf("OMEGA_CONTROL_GROUP_PERCENT=%q: a share of users from 0 to 50 (percent), like 5", v))
		}
	}
	// The trail's day partitions are created ahead and dropped past the retention.
	c.auditRetention = audit.DefaultRetention
	if v := os.Getenv("OMEGA_AUDIT_RETENTION"); v != "" {
		if c.auditRetention, err = time.ParseDuration(v); err != nil || c.auditRetention < 24*time.Hour {
			bad("OMEGA_AUDIT_RETENTION", fmt.Errorf("OMEGA_AUDIT_RETENTION=%q: a duration of at least 24h, like 2160h", v))
		}
	}
	return c
}

// pluginFields are the settings every registered channel and filter declares.
func pluginFields() []plugin.Field {
	return append(channel.Builtin().Fields(), filter.Builtin().Fields()...)
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

// envDurationOrOff reads a positive duration (such as example) or off (-1) from name; 0 when unset.
func envDurationOrOff(name, example string) (time.Duration, error) {
	switch v := os.Getenv(name); v {
	case "":
		return 0, nil
	case "off":
		return -1, nil
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%s: want a positive duration such as %s, or off, got %q", name, example, v)
		}
		return d, nil
	}
}
