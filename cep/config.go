package cep

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/workflows"
)

// Starter starts one reach workflow per match. Starting a match that was already started must
// succeed without starting a second run.
type Starter interface {
	Start(ctx context.Context, m workflows.Match) error
}

// DefaultAllowedLateness is the watermark's distance behind a partition's latest event time.
const DefaultAllowedLateness = 5 * time.Second

// DefaultSharedGrace is Config.SharedGrace's default.
const DefaultSharedGrace = 24 * time.Hour

// Config configures a Stage.
type Config struct {
	// Brokers of the Kafka cluster; Sarama is the consumer config (defaults applied when nil).
	Brokers []string
	Sarama  *sarama.Config
	// Group is the consumer group ("omega-cep" when empty).
	Group string
	// Topic and DLQTopic default to the wire contract's topics.
	Topic    string
	DLQTopic string
	Redis    redis.UniversalClient
	// KeyPrefix prefixes every Redis key ("omega" when empty); tests use a unique one.
	KeyPrefix string
	// AllowedLateness is how far behind a partition's latest event time its watermark stays (5s
	// when zero): an event up to this late still cancels an absence or counts in a window before
	// its timer fires.
	AllowedLateness time.Duration
	// SharedGrace is how long past the event time they are needed for shared join keys (an item's
	// links, kept link_ttl, and triggers, kept an hour) live in Redis: they expire by event time,
	// so their memory follows the users and the event rate, not the number of events, and a
	// consumer up to this far behind the newest events (a backlog after an outage) still finds
	// what its events join with (DefaultSharedGrace when zero). The waiting instances of absences
	// keyed on something other than the user live as long past their due time, since their timers
	// fire on the group's watermark, which may be that far behind. A replay of older history (a
	// backfill) sets it past the history's age.
	SharedGrace time.Duration
	// Rules is the static rule set; RuleSource, when set, replaces it and is polled every
	// ReloadInterval (2s when zero) so created, changed and disabled rules apply without restart.
	Rules          []Rule
	RuleSource     RuleSource
	ReloadInterval time.Duration
	Starter        Starter
	// EventTypes, when set, gives the event catalogue, polled with the rules (event.Default when
	// nil). Events of a type it does not declare are counted and skipped.
	EventTypes EventTypeSource
	// Signaler delivers response events (the types the catalogue declares a response or a goal;
	// ResponseTypes instead, when set) to the open reaches that wait for them, found under
	// ReachPrefix (the workers' key prefix, "omega" when empty). The Starter is used when it is a
	// Signaler.
	Signaler      Signaler
	ResponseTypes []string
	ReachPrefix   string
	// Profiles gives conditions that read `profile` the users' profiles, loaded once per batch
	// for the users of the events such rules react to (they read an empty profile when nil).
	Profiles ProfileReader
	// Unstarted records the matches that start nothing: shadow rules', and those a rule's re-entry
	// policy suppressed; logged only when nil.
	Unstarted UnstartedRecorder
	// Tracker, when set, attributes response events to the reaches whose sends preceded them
	// (conversions after a run ended) and records delivery receipts (event.TypeDelivered).
	Tracker store.Tracker
	// TimerInterval is how often an idle partition checks its timers against the wall clock, and
	// the shared absences (rules not keyed on the user) due by the group's watermark are fired
	// (200ms when zero).
	TimerInterval time.Duration
	// BatchSize and BatchWait bound a batch: whichever comes first (500 and DefaultBatchWait, 5ms,
	// when zero). Batches are cheap (commits are CommitInterval apart), so the wait is short.
	BatchSize int
	BatchWait time.Duration
	// CommitInterval bounds how long processed batches wait to be made durable together (state
	// and offset; 100ms when zero, every batch when negative). Starts never wait for it; a
	// crash replays what no commit covered (this much, and up to CommitDelay more while a commit
	// is put off), to the same matches and workflow IDs.
	CommitInterval time.Duration
	// CommitDelay bounds how long past CommitInterval a commit may be put off while batches'
	// effects (starts, responses) still run, or while the last commit is still in flight (Redis
	// slow to take it), the partition going on meanwhile; then it waits for them (1s when zero). A put-off commit also carries at most 8,192 changed instances: past
	// that the partition reads no more records until the effects land and it commits.
	CommitDelay time.Duration
	// FanOutSlice bounds how long a partition spends starting a join trigger's users between two
	// batches (500ms when zero): a trigger with 100,000 users never holds its partition longer.
	FanOutSlice time.Duration
	// BulkAfter is how late a match is a bulk one (workflows.Match.Bulk: its reach starts on the
	// bulk task queue): its completing record taken by Kafka, or its absence due, longer ago than
	// this (DefaultBulkAfter when zero; negative: never by lateness). Fan-outs past a page of
	// users are bulk however fresh.
	BulkAfter time.Duration
	// MaxMatchAge is how stale a match may be and still start its reach (DefaultMaxMatchAge when
	// zero; negative: any age): one completed by an event that happened longer than this before
	// Kafka took it (a producer's clock or buffer days behind, a record dated 1971), or an absence
	// that fell due longer than this before the event time its partition had reached (its first
	// event as late), is audited as suppressed, saying so, and starts nothing: a reminder about
	// last week's cart helps nobody. A stage behind its backlog is not stale: its events were
	// fresh when Kafka took them, and its watermark is as far behind. Its events still advance
	// the patterns' state.
	MaxMatchAge time.Duration
	// StartConcurrency bounds concurrent workflow starts per partition (32 when zero).
	StartConcurrency int
	// DiscardDeadLetters drops undecodable records instead of writing them to DLQTopic: a replay
	// of history (a backfill) meets records the live stage dead-lettered already.
	DiscardDeadLetters bool
	// KeepMisrouted processes a record on the partition it was read from even when the wire
	// contract puts its key on another (a backfill, which replays history it must not write back).
	// A live stage forwards such a record to its key's partition instead (forward.go); one that
	// discards dead letters keeps misrouted records too.
	KeepMisrouted bool
	Log           *slog.Logger
}

// The batching a Config gets when it sets none.
const (
	DefaultBatchWait = 5 * time.Millisecond
	// FetchMin and FetchWait: a fetch answers once FetchMin bytes are there, or FetchWait has
	// passed (see DefaultSaramaConfig).
	FetchMin              = 64 << 10
	FetchWait             = 10 * time.Millisecond
	DefaultCommitInterval = 100 * time.Millisecond
	DefaultCommitDelay    = time.Second
	// DefaultMaxMatchAge: as backfill's --start-within.
	DefaultMaxMatchAge = 24 * time.Hour
	// DefaultBulkAfter: a minute late is a stage catching up, not one keeping pace (its batches
	// take milliseconds; the allowed lateness and a shared absence's grace are seconds).
	DefaultBulkAfter = time.Minute
)

func (c *Config) setDefaults() {
	if c.Group == "" {
		c.Group = "omega-cep"
	}
	if c.Topic == "" {
		c.Topic = event.Topic
	}
	if c.DLQTopic == "" {
		c.DLQTopic = event.DLQTopic
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "omega"
	}
	if c.ReachPrefix == "" {
		c.ReachPrefix = "omega"
	}
	if c.Signaler == nil {
		c.Signaler, _ = c.Starter.(Signaler)
	}
	if c.SharedGrace == 0 {
		c.SharedGrace = DefaultSharedGrace
	}
	if c.AllowedLateness == 0 {
		c.AllowedLateness = DefaultAllowedLateness
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.ReloadInterval == 0 {
		c.ReloadInterval = 2 * time.Second
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.CommitDelay == 0 {
		c.CommitDelay = DefaultCommitDelay
	}
	if c.TimerInterval == 0 {
		c.TimerInterval = 200 * time.Millisecond
	}
	if c.FanOutSlice == 0 {
		c.FanOutSlice = 500 * time.Millisecond
	}
	if c.StartConcurrency == 0 {
		c.StartConcurrency = 32
	}
	if c.BulkAfter == 0 {
		c.BulkAfter = DefaultBulkAfter
	}
	if c.MaxMatchAge == 0 {
		c.MaxMatchAge = DefaultMaxMatchAge
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Sarama == nil {
		c.Sarama = DefaultSaramaConfig()
	}
}

// Validate reports what is missing.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("cep: brokers are required")
	case c.Redis == nil:
		return errors.New("cep: redis client is required")
	case c.Starter == nil:
		return errors.New("cep: starter is required")
	case c.SharedGrace < 0:
		return errors.New("cep: shared grace must not be negative")
	case c.CommitDelay < 0:
		return errors.New("cep: commit delay must not be negative")
	}
	return nil
}

// DefaultSaramaConfig is the consumer and DLQ producer setup the stage expects: offsets marked by
// the stage and committed in the background, the oldest offset for a new group (nothing produced
// before the first start is skipped), and a DLQ producer that waits for all replicas.
func DefaultSaramaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.ClientID = "omega-cep"
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = 500 * time.Millisecond
	sc.Consumer.Return.Errors = true
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	// The coordinator holds a JoinGroup until every member has joined again or the rebalance
	// timeout has passed (restarted by each join and each member it expels), and Sarama waits for
	// the answer no longer than Net.ReadTimeout (30 s). A member waiting in JoinGroup must not
	// reach its session timeout meanwhile: a coordinator may expel it (the development broker
	// does), the client then times out and joins again, each join restarts the wait, and a group
	// whose replica died as it formed consumed nothing for minutes (the fault suite's "CEP replica
	// killed" saw it in CI). So the rebalance timeout plus a heartbeat interval stays under the
	// session timeout: a rebalance ends within 6 s of its last join, a dead replica's partitions
	// move after 10 s. A claim exits within moments of its revocation (every wait watches the
	// session), well inside 6 s.
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = time.Second
	sc.Consumer.Group.Rebalance.Timeout = 6 * time.Second
	// A fetch brings up to 4 MiB per partition and the claim's channel holds 4,096 records, so a
	// partition behind its log catches up in batches of BatchSize without a fetch per batch.
	// Sarama's defaults are 1 MiB and 256; the CEP benchmark always ran with these values, which
	// are now the ones `omega cep` runs with too. About 5 MiB per claimed partition in flight.
	sc.Consumer.Fetch.Default = 4 << 20
	sc.ChannelBufferSize = 4096
	// A fetch waits at the broker for FetchMin bytes, at most FetchWait. With Sarama's default
	// (any byte, answered at once) partitions fed a few records at a time were fetched as often
	// as the fetch loop could go: at 2,200 events/s Sarama was 31% of `omega cep`'s CPU, nearly
	// all of it per fetch, not per record, and the broker answered each fetch. With the wait,
	// `omega cep` and the broker used 0.09 cores less at 1,100 events/s (bench/pipeline, A/B on
	// one stack, 2026-12-03) for 10 ms more at the median; a busy stage fills FetchMin at once.
	sc.Consumer.Fetch.Min = FetchMin
	sc.Consumer.MaxWaitTime = FetchWait
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Retry.Max = 10
	return sc
}

// RuleSource provides the active rules; the stage polls it.
type RuleSource interface {
	ActiveRules(ctx context.Context) ([]Rule, error)
}

// UnstartedRecorder records matches that start nothing (workflows.Match Shadow or Suppressed).
type UnstartedRecorder interface {
	RecordUnstarted(ctx context.Context, ms []workflows.Match) error
}

// ProfileReader loads many users' profiles at once (profile.Cached).
type ProfileReader interface {
	GetMany(ctx context.Context, userIDs []string) (map[string]profile.Profile, error)
}
