// Package metrics holds the Prometheus metrics every Omega Reach process exports on
// OMEGA_METRICS_ADDR (/metrics): the CEP stage's intake and matches, workflow starts, the filter
// chain's verdicts, sends by channel and outcome, API calls, and the two latencies that matter:
// event to match and match to dispatch. Label values are bounded sets (rule IDs, filter and channel
// names, outcomes, RPC codes); user IDs never become labels.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds the process's metrics, Go runtime and process metrics included.
var Registry = prometheus.NewRegistry()

var f = promauto.With(Registry)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// latencyBuckets span 1 ms to about 33 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 16)

var (
	// EventsConsumed counts records the CEP stage read, by outcome: processed, dead_lettered,
	// replayed (already in the restored partition state, skipped), undeclared (a valid event of a
	// type the event catalogue does not declare: counted and skipped), forwarded (found on a
	// partition its key does not hash to, sent on to its key's: cep/forward.go).
	EventsConsumed = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_cep_events_total",
		Help: "Events read by the CEP stage, by outcome (processed, dead_lettered, replayed, undeclared, forwarded)."}, []string{"outcome"})
	// DeadLetters counts dead-lettered records by reason class (decode, size, or the invalid field).
	DeadLetters = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_cep_dead_letters_total",
		Help: "Records sent to the dead-letter topic, by reason (decode, size, field:<name>)."}, []string{"reason"})
	// ConsumerLag is, per partition this replica owns, how many records are behind the newest.
	ConsumerLag = f.NewGaugeVec(prometheus.GaugeOpts{Name: "omega_cep_consumer_lag",
		Help: "Records between the last one the CEP stage took and the partition's high-water mark."}, []string{"partition"})
	// RulesInvalid is the number of stored active rules a CEP replica left out (they do not compile).
	RulesInvalid = f.NewGauge(prometheus.GaugeOpts{Name: "omega_cep_rules_invalid",
		Help: "Stored active rules the CEP stage left out because they do not compile."})
	// StateLosses counts the times a CEP replica found Redis had lost the pattern state.
	// TrackingSkipped counts tracking writes (conversions, receipts) PostgreSQL refused as bad data.
	TrackingSkipped = f.NewCounter(prometheus.CounterOpts{Name: "omega_cep_tracking_skipped_total",
		Help: "Tracking writes of the CEP stage (conversions, receipts) skipped because PostgreSQL refused their data."})
	StateLosses = f.NewCounter(prometheus.CounterOpts{Name: "omega_cep_state_losses_total",
		Help: "Times a CEP replica found Redis had lost the pattern state (partial patterns in flight gone)."})
	// StateRestores counts partitions whose pattern state a CEP replica restored on assignment.
	StateRestores = f.NewCounter(prometheus.CounterOpts{Name: "omega_cep_state_restores_total",
		Help: "Partitions whose pattern state a CEP replica restored from Redis on assignment."})
	// StateFenced counts commits refused because another replica had claimed the partition.
	StateFenced = f.NewCounter(prometheus.CounterOpts{Name: "omega_cep_state_fenced_total",
		Help: "Pattern state commits refused because another replica owns the partition now (or Redis lost its state)."})
	// StateInstances is, per partition, how many pattern instances its replica holds.
	StateInstances = f.NewGaugeVec(prometheus.GaugeOpts{Name: "omega_cep_state_instances",
		Help: "Pattern instances each partition's replica holds in memory (and in Redis): size memory by it."}, []string{"partition"})
	// StateBytes is, per partition, the memory its replica's pattern instances take (their arena).
	StateBytes = f.NewGaugeVec(prometheus.GaugeOpts{Name: "omega_cep_state_bytes",
		Help: "Bytes of memory each partition's pattern instances take in its replica (the arena's chunks: the peak of what the partition held, reused, not returned)."}, []string{"partition"})
	// WatermarkLag is, per partition, how far the watermark (event time) is behind the wall clock.
	WatermarkLag = f.NewGaugeVec(prometheus.GaugeOpts{Name: "omega_cep_watermark_lag_seconds",
		Help: "How far each partition's watermark (event time less the allowed lateness) is behind the wall clock."}, []string{"partition"})
	// GroupWatermarkLag is how far the group's watermark (the least of its partitions' committed
	// ones), on which the absences not keyed on the user fire, is behind the wall clock.
	GroupWatermarkLag = f.NewGauge(prometheus.GaugeOpts{Name: "omega_cep_group_watermark_lag_seconds",
		Help: "How far the group's watermark (the least of the partitions' committed watermarks: absences not keyed on the user fire on it) is behind the wall clock; set only while such a rule is loaded."})
	// Matches counts matches by rule (shadow matches included, labelled).
	Matches = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_cep_matches_total",
		Help: "Pattern matches, by rule and mode (live, shadow, suppressed: dropped by the rule's re-entry policy, once or cooldown, or stale: too old to start, OMEGA_CEP_MAX_MATCH_AGE)."}, []string{"rule", "mode"})
	// Unkeyed counts events a rule's step, absent or unless type takes that the rule cannot
	// correlate: they lack an attribute of its key (one the type declares optional), so they
	// advance none of its state.
	Unkeyed = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_cep_unkeyed_events_total",
		Help: "Events a rule could not correlate, by rule: they lack an attribute of its key (key: ...+attrs.<name>)."}, []string{"rule"})
	// BatchSeconds is where a CEP batch spends its time, by step: wait (from its first record's
	// arrival to its processing: batching, and the partition busy with the batch before),
	// decode, compute (profiles, the machine, shared state), start (the reaches), respond
	// (responses signalled to open reaches), track (conversions and receipts in the audit
	// trail), fanout (a fan-out slice), commit (the state made durable), hold (the partition
	// reading nothing while a commit put off for running effects, at its bound of changes, waits
	// for them: the starts are slower than the events come).
	BatchSeconds = f.NewHistogramVec(prometheus.HistogramOpts{Name: "omega_cep_batch_seconds",
		Help:    "Time a CEP batch spends in each step: wait, decode, compute, shared (one pipeline of shared parts: joins and rules not keyed on the user, sent beside the partition, until its matches are admitted), start (with the wait for the shared part), respond, track, fanout, commit (encoded to durable, the partition reading on); hold: a partition not reading while its commit waits for starts or for the commit in flight.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17)}, []string{"step"})
	// EventToMatch is the time from an event's production (the Kafka record time) to its match.
	EventToMatch = f.NewHistogram(prometheus.HistogramOpts{Name: "omega_cep_event_to_match_seconds",
		Help: "Time from an event's Kafka record timestamp to the match it completed.", Buckets: latencyBuckets})
	// WorkflowStarts counts reach workflow starts by origin (cep, api) and result (started,
	// duplicate, error).
	WorkflowStarts = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_workflow_starts_total",
		Help: "Reach workflow starts, by origin (cep, api) and result (started, duplicate, error, refused: Temporal refused it for good)."}, []string{"origin", "result"})
	// EagerStarts counts workflow starts whose answer carried the first workflow task (eager
	// start: a worker in the starting process runs it, the matching service is skipped).
	EagerStarts = f.NewCounter(prometheus.CounterOpts{Name: "omega_workflow_eager_starts_total",
		Help: "Workflow starts whose answer carried their first workflow task (eager start)."})
	// FilterVerdicts counts filter chain verdicts by the deciding filter and verdict.
	FilterVerdicts = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_filter_verdicts_total",
		Help: "Filter chain verdicts, by deciding filter (none for a pass) and verdict (pass, drop, defer)."}, []string{"filter", "verdict"})
	// Sends counts provider calls by channel and outcome (sent, retryable, permanent), and the
	// dispatches the send ledger answered without a call (already_sent).
	Sends = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_sends_total",
		Help: "Provider calls, by channel and outcome (sent, retryable, permanent), and dispatches run again after a crash that the send ledger answered (already_sent)."}, []string{"channel", "outcome"})
	// MatchToDispatch is the time from a match to the provider's acceptance of its first send.
	MatchToDispatch = f.NewHistogramVec(prometheus.HistogramOpts{Name: "omega_match_to_dispatch_seconds",
		Help: "Time from a match to a provider accepting its send, by channel.", Buckets: latencyBuckets}, []string{"channel"})
	// APIRequests counts API calls by procedure and code.
	APIRequests = f.NewCounterVec(prometheus.CounterOpts{Name: "omega_api_requests_total",
		Help: "API calls, by procedure and result code (ok or the Connect code)."}, []string{"procedure", "code"})
)

// Handler serves the registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

var ready atomic.Bool

// MarkReady tells /readyz the process does its work now (the worker polls, the CEP stage
// consumes, the API serves).
func MarkReady() { ready.Store(true) }

// Serve serves /metrics, /healthz (the process lives) and /readyz (it is ready, see MarkReady) on
// addr until ctx ends; an empty addr serves nothing.
func Serve(ctx context.Context, addr string, log *slog.Logger) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	// OMEGA_PPROF=1: Go profiles at /debug/pprof/ on the same address (the benchmark reads them);
	// off by default, the metrics port being reachable by scrapers.
	if os.Getenv("OMEGA_PPROF") == "1" {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		log.Info("metrics listening", "addr", addr)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "addr", addr, "err", err)
		}
	}()
}
