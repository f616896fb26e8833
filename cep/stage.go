package cep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
)

// Stage is one CEP replica.
type Stage struct {
	badRules string // the invalid stored rules last reported
	// connected is closed once Run has reached a broker (Connected).
	connected     chan struct{}
	connectedOnce sync.Once
	cfg           Config
	engine        *engine
	rules         atomic.Pointer[[]compiledRule]
	events        atomic.Pointer[event.Catalog]
	// undeclared are the undeclared event types this replica logged (once each); refreshed is
	// when a batch holding one last read the catalogue again.
	undeclaredMu sync.Mutex
	undeclared   map[string]bool
	refreshed    time.Time
	// firedThrough is the group's watermark (ms) up to which fireTimers last fired every due
	// shared absence.
	firedThrough atomic.Int64
}

// SharedAbsencesFiredThrough is the event time up to which every absence not keyed on the user
// (its timer shared in Redis, fired on the group's watermark) has fired; the zero time before the
// first pass, and far in the future when no such rule is loaded. A replay that must see their
// matches (a backfill) runs until it passes the end of its history.
func (s *Stage) SharedAbsencesFiredThrough() time.Time {
	if !sharedAbsences(s.currentRules()) {
		return time.UnixMilli(math.MaxInt64 / 2)
	}
	if t := s.firedThrough.Load(); t > 0 {
		return time.UnixMilli(t)
	}
	return time.Time{}
}

// New validates cfg and compiles its rules.
func New(cfg Config) (*Stage, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Stage{cfg: cfg, engine: newEngine(cfg.Redis, cfg.KeyPrefix), undeclared: map[string]bool{}, connected: make(chan struct{})}
	s.engine.grace, s.engine.maxMatchAge = cfg.SharedGrace, cfg.MaxMatchAge
	s.events.Store(event.Default())
	if err := s.setRules(cfg.Rules); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stage) setRules(rs []Rule) error {
	compiled := make([]compiledRule, 0, len(rs))
	for _, r := range rs {
		c, err := compile(r)
		if err != nil {
			return err
		}
		compiled = append(compiled, c)
	}
	s.rules.Store(&compiled)
	return nil
}

func (s *Stage) currentRules() []compiledRule { return *s.rules.Load() }

// loadRules reads the rule source once; a set that does not compile is refused and the last good
// set keeps running (the source validated it on write; this guards against an older replica that
// does not know a newer rule language).
// loadRules takes the source's active rules. A stored rule that does not compile (written by a
// newer version, or by hand) is reported and never stops the others: the version of it
// that ran before goes on, a rule that never compiled is left out.
func (s *Stage) loadRules(ctx context.Context) error {
	rs, err := s.cfg.RuleSource.ActiveRules(ctx)
	if err != nil {
		return err
	}
	previous := map[string]compiledRule{}
	if cur := s.rules.Load(); cur != nil {
		for _, c := range *cur {
			previous[c.ID] = c
		}
	}
	compiled := make([]compiledRule, 0, len(rs))
	var bad []string
	for _, r := range rs {
		c, err := compile(r)
		if err != nil {
			bad = append(bad, err.Error())
			// A version this replica cannot compile (a newer one, during a rolling upgrade) must
			// not stop the rule: the version that ran goes on.
			if old, ok := previous[r.ID]; ok {
				compiled = append(compiled, old)
			}
			continue
		}
		compiled = append(compiled, c)
	}
	metrics.RulesInvalid.Set(float64(len(bad)))
	if report := strings.Join(bad, "; "); report != s.badRules {
		s.badRules = report
		if report != "" {
			s.cfg.Log.Error("rules left out: they do not compile", "rules", report)
		}
	}
	s.rules.Store(&compiled)
	return nil
}

// reload polls the rule source and the event catalogue until ctx ends.
func (s *Stage) reload(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.cfg.RuleSource != nil {
			if err := s.loadRules(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("reload rules", "err", err)
			}
		}
		if err := s.loadEventTypes(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("reload event types", "err", err)
		}
	}
}

// stateCheckInterval is how often a replica checks that Redis still holds the pattern state.
const stateCheckInterval = time.Second

// watchState reports a Redis that lost the pattern state (a restart without persistence, a
// failover to an empty replica): partial patterns in flight are gone then, and an operator must
// know. A marker key set by the replicas vanishes with the state; a replica that finds it gone
// after having seen it logs the loss and counts it (omega_cep_state_losses_total), then sets it
// again. What is lost is bounded by the longest rule window; matches already started are not
// affected, and replays stay deduplicated by workflow ID.
func (s *Stage) watchState(ctx context.Context) {
	key := s.cfg.KeyPrefix + ":{state}:epoch"
	t := time.NewTicker(stateCheckInterval)
	defer t.Stop()
	seen := false
	for {
		set, err := s.cfg.Redis.SetNX(ctx, key, time.Now().UTC().Format(time.RFC3339), 0).Result()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.cfg.Log.Warn("check pattern state", "err", err)
			}
		case set && seen:
			metrics.StateLosses.Inc()
			s.cfg.Log.Error("redis lost the pattern state: partial patterns in flight are gone (bounded by the longest rule window)",
				"key_prefix", s.cfg.KeyPrefix, "longest_window", maxWindowOf(s.currentRules()).String())
		default:
			seen = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func maxWindowOf(rs []compiledRule) time.Duration {
	var w time.Duration
	for _, r := range rs {
		w = max(w, r.Within.D())
	}
	return w
}

// fireTimers fires the due absences of rules keyed on something other than the user (their state
// is shared in Redis, their timers in timerShards sorted sets) until ctx ends, in event time: up to
// the group's watermark (groupWatermark).
func (s *Stage) fireTimers(ctx context.Context, client sarama.Client) {
	t := time.NewTicker(s.cfg.TimerInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rules := s.currentRules()
		if !sharedAbsences(rules) {
			continue // every absence lives in its partition's machine
		}
		upTo, ok, err := s.groupWatermark(ctx, client)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Log.Warn("read the group's watermark", "err", err)
			}
			continue
		}
		if !ok {
			continue // a partition has published none yet
		}
		metrics.GroupWatermarkLag.Set(time.Since(upTo).Seconds())
		for {
			n, err := s.engine.fireDue(ctx, rules, upTo, time.Now().UTC(), 500, s.dispatch)
			if err != nil {
				if ctx.Err() == nil {
					s.cfg.Log.Warn("fire timers", "err", err)
				}
				break
			}
			if n < 500 {
				s.firedThrough.Store(ms(upTo))
				break
			}
		}
	}
}

// sharedAbsences reports whether an absence rule keeps its state in Redis (not keyed on the user).
func sharedAbsences(rules []compiledRule) bool {
	return slices.ContainsFunc(rules, func(r compiledRule) bool { return r.Kind == KindAbsence && !r.Disabled && !ownedByPartition(&r) })
}

// groupWatermark is the least watermark the topic's partitions committed for the group: event time
// up to which every partition has processed its events (less the allowed lateness). ok is false
// while a partition has committed none (a new group, or a partition nobody consumed yet).
func (s *Stage) groupWatermark(ctx context.Context, client sarama.Client) (wm time.Time, ok bool, err error) {
	parts, err := client.Partitions(s.cfg.Topic)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("partitions of %s: %w", s.cfg.Topic, err)
	}
	return committedWatermark(ctx, s.cfg.Redis, s.cfg.KeyPrefix, s.cfg.Group, s.cfg.Topic, parts)
}

// committedWatermark is the least watermark the partitions committed for group; ok is false while
// one has committed none.
func committedWatermark(ctx context.Context, rdb redis.UniversalClient, prefix, group, topic string, parts []int32) (wm time.Time, ok bool, err error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(parts))
	for i, p := range parts {
		cmds[i] = pipe.HGet(ctx, newChangelog(nil, prefix, group, topic, p).meta, "w")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return time.Time{}, false, fmt.Errorf("partition watermarks: %w", err)
	}
	least := int64(math.MaxInt64)
	for _, c := range cmds {
		w, err := c.Int64()
		if err != nil {
			return time.Time{}, false, nil // none yet (redis.Nil), or not a number: wait
		}
		least = min(least, w)
	}
	return time.UnixMilli(least).UTC(), len(cmds) > 0, nil
}

// IsKafkaConfigError reports whether err is sarama refusing its configuration: trying again
// cannot help.
func IsKafkaConfigError(err error) bool {
	var ce sarama.ConfigurationError
	return errors.As(err, &ce)
}

// stopOnConfig ends a retry on an error of IsKafkaConfigError.
func stopOnConfig(err error) error {
	if IsKafkaConfigError(err) {
		return stopRetry{err}
	}
	return err
}

// Connected is closed once the stage has reached a Kafka broker: a process's readiness waits for
// it (a stage started while Kafka is down waits in Run).
func (s *Stage) Connected() <-chan struct{} { return s.connected }

// Run consumes until ctx ends, rejoining the group after every rebalance.
func (s *Stage) Run(ctx context.Context) error {
	if err := checkRedisVersion(ctx, s.cfg.Redis); err != nil {
		return err
	}
	// A stage started while no broker answers waits for one (a replica replacing one that died in
	// an outage), as a running stage rides the outage out; a configuration sarama refuses ends it.
	var client sarama.Client
	if err := retry(ctx, s.cfg.Log, "connect to kafka", func() (err error) {
		client, err = sarama.NewClient(s.cfg.Brokers, s.cfg.Sarama)
		return stopOnConfig(err)
	}); err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()
	s.connectedOnce.Do(func() { close(s.connected) })
	group, err := sarama.NewConsumerGroupFromClient(s.cfg.Group, client)
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", s.cfg.Group, err)
	}
	defer group.Close()
	var dlq sarama.SyncProducer = discardDeadLetters{}
	if !s.cfg.DiscardDeadLetters {
		if err := retry(ctx, s.cfg.Log, "connect the dead-letter producer", func() (err error) {
			dlq, err = sarama.NewSyncProducer(s.cfg.Brokers, s.cfg.Sarama)
			return stopOnConfig(err)
		}); err != nil {
			return fmt.Errorf("dead-letter producer: %w", err)
		}
	}
	defer dlq.Close()

	go func() {
		for err := range group.Errors() {
			s.cfg.Log.Warn("consumer group error", "err", err)
		}
	}()
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	// No event is matched, nor skipped as undeclared, before the rules and the catalogue are known.
	if s.cfg.EventTypes != nil {
		if err := retry(ctx, s.cfg.Log, "load event types", func() error { return s.loadEventTypes(ctx) }); err != nil {
			return err
		}
	}
	if s.cfg.RuleSource != nil {
		if err := retry(ctx, s.cfg.Log, "load rules", func() error { return s.loadRules(ctx) }); err != nil {
			return err
		}
	}
	if s.cfg.RuleSource != nil || s.cfg.EventTypes != nil {
		go s.reload(bg)
	}
	go s.fireTimers(bg, client)
	go s.watchState(bg)
	h := &handler{s: s, dlq: dlq, client: client}
	s.cfg.Log.Info("cep stage consuming", "topic", s.cfg.Topic, "group", s.cfg.Group, "rules", len(s.currentRules()))
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{s.cfg.Topic}, h); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				return nil
			}
			s.cfg.Log.Warn("consume", "err", err)
			if !sleep(ctx, time.Second) {
				break
			}
		}
	}
	return nil
}

// discardDeadLetters is the dead-letter producer of a stage that keeps none (DiscardDeadLetters):
// the records are counted, and dropped.
type discardDeadLetters struct{ sarama.SyncProducer }

func (discardDeadLetters) SendMessages([]*sarama.ProducerMessage) error { return nil }
func (discardDeadLetters) Close() error                                 { return nil }

// DeleteState deletes every Redis key a stage keeps under keyPrefix (its Config.KeyPrefix): the
// scratch state of a stage run for a while, such as a backfill's. Never the live stage's prefix.
func DeleteState(ctx context.Context, rdb redis.UniversalClient, keyPrefix string) {
	deletePrefix(ctx, rdb, keyPrefix)
}
