package cep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/workflows"
)

// Starter starts one reach workflow per match. Starting a match that was already started must
// succeed without starting a second run.
type Starter interface {
	Start(ctx context.Context, m workflows.Match) error
}

// DefaultAllowedLateness is the watermark's distance behind a partition's latest event time.
const DefaultAllowedLateness = 5 * time.Second

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
	// Shadow records the matches of shadow rules (they start nothing); logged only when nil.
	Shadow ShadowRecorder
	// Tracker, when set, attributes response events to the reaches whose sends preceded them
	// (conversions after a run ended) and records delivery receipts (event.TypeDelivered).
	Tracker Tracker
	// TimerInterval is how often an idle partition checks its timers against the wall clock, and
	// the shared absences (rules not keyed on the user) are fired (200ms when zero).
	TimerInterval time.Duration
	// BatchSize and BatchWait bound a batch: whichever comes first (500 and 20ms when zero).
	BatchSize int
	BatchWait time.Duration
	// FanOutSlice bounds how long a partition spends starting a join trigger's users between two
	// batches (500ms when zero): a trigger with 100,000 users never holds its partition longer.
	FanOutSlice time.Duration
	// StartConcurrency bounds concurrent workflow starts per partition (32 when zero).
	StartConcurrency int
	// DiscardDeadLetters drops undecodable records instead of writing them to DLQTopic: a replay
	// of history (a backfill) meets records the live stage dead-lettered already.
	DiscardDeadLetters bool
	Log                *slog.Logger
}

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
	if c.AllowedLateness == 0 {
		c.AllowedLateness = DefaultAllowedLateness
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchWait == 0 {
		c.BatchWait = 20 * time.Millisecond
	}
	if c.ReloadInterval == 0 {
		c.ReloadInterval = 2 * time.Second
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
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Retry.Max = 10
	return sc
}

// RuleSource provides the active rules; the stage polls it.
type RuleSource interface {
	ActiveRules(ctx context.Context) ([]Rule, error)
}

// ShadowRecorder records what shadow rules would have started.
type ShadowRecorder interface {
	RecordShadow(ctx context.Context, ms []workflows.Match) error
}

// Stage is one CEP replica.
type Stage struct {
	badRules string // the invalid stored rules last reported
	cfg      Config
	engine   *engine
	rules    atomic.Pointer[[]compiledRule]
	events   atomic.Pointer[event.Catalog]
	// undeclared are the undeclared event types this replica logged (once each); refreshed is
	// when a batch holding one last read the catalogue again.
	undeclaredMu sync.Mutex
	undeclared   map[string]bool
	refreshed    time.Time
}

// New validates cfg and compiles its rules.
func New(cfg Config) (*Stage, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Stage{cfg: cfg, engine: newEngine(cfg.Redis, cfg.KeyPrefix), undeclared: map[string]bool{}}
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
// is shared in Redis, their timers in one sorted set, on the wall clock) until ctx ends.
func (s *Stage) fireTimers(ctx context.Context) {
	t := time.NewTicker(s.cfg.TimerInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rules := s.currentRules()
		if !slices.ContainsFunc(rules, func(r compiledRule) bool { return r.Kind == KindAbsence && !ownedByPartition(&r) }) {
			continue // every absence lives in its partition's machine
		}
		for {
			n, err := s.engine.fireDue(ctx, rules, time.Now(), 500, s.dispatch)
			if err != nil {
				if ctx.Err() == nil {
					s.cfg.Log.Warn("fire timers", "err", err)
				}
				break
			}
			if n < 500 {
				break
			}
		}
	}
}

// dispatch starts the matches of live rules and records those of shadow rules.
func (s *Stage) dispatch(ctx context.Context, ms []workflows.Match) error {
	var live, shadow []workflows.Match
	for _, m := range ms {
		if m.Shadow {
			shadow = append(shadow, m)
		} else {
			live = append(live, m)
		}
	}
	if len(shadow) > 0 {
		if s.cfg.Shadow == nil {
			for _, m := range shadow {
				s.cfg.Log.Info("shadow match", "rule_id", m.RuleID, "user_id", m.UserID, "match_key", m.MatchKey, "trace_id", m.TraceID)
			}
		} else if err := retry(ctx, s.cfg.Log, "record shadow matches", func() error { return s.cfg.Shadow.RecordShadow(ctx, shadow) }); err != nil {
			return err
		}
	}
	return s.startAll(ctx, live)
}

// Run consumes until ctx ends, rejoining the group after every rebalance.
func (s *Stage) Run(ctx context.Context) error {
	client, err := sarama.NewClient(s.cfg.Brokers, s.cfg.Sarama)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()
	group, err := sarama.NewConsumerGroupFromClient(s.cfg.Group, client)
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", s.cfg.Group, err)
	}
	defer group.Close()
	var dlq sarama.SyncProducer = discardDeadLetters{}
	if !s.cfg.DiscardDeadLetters {
		if dlq, err = sarama.NewSyncProducer(s.cfg.Brokers, s.cfg.Sarama); err != nil {
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
	go s.fireTimers(bg)
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

// deadReason classes a decode error for the dead-letter metric: decode, size, or the field.
func deadReason(err error) string {
	var fe *event.FieldError
	switch {
	case errors.As(err, &fe) && fe.Field == "value":
		return "size"
	case errors.As(err, &fe):
		return "field:" + fe.Field
	default:
		return "decode"
	}
}

// annotate gives each match the trace and the Kafka time of the event that completed it.
func annotate(fresh []decoded, ms []workflows.Match) {
	if len(ms) == 0 {
		return
	}
	byID := make(map[string]*sarama.ConsumerMessage, len(fresh))
	for _, d := range fresh {
		byID[d.ev.EventID] = d.msg
	}
	for i := range ms {
		m := &ms[i]
		if len(m.EventIDs) == 0 {
			continue
		}
		last := m.EventIDs[len(m.EventIDs)-1]
		msg, ok := byID[last]
		if !ok {
			continue
		}
		m.ReceivedAt = msg.Timestamp
		m.TraceID, m.TraceParent = tracing.FromRecord(msg)
		if m.TraceID == "" {
			m.TraceID = tracing.IDForEvent(last)
		}
	}
}

// observeEventToMatch records, per match, the time from the Kafka record of the event that
// completed it to now.
func observeEventToMatch(fresh []decoded, ms []workflows.Match) {
	if len(ms) == 0 {
		return
	}
	at := make(map[string]time.Time, len(fresh))
	for _, d := range fresh {
		at[d.ev.EventID] = d.msg.Timestamp
	}
	now := time.Now()
	for _, m := range ms {
		mode := "live"
		if m.Shadow {
			mode = "shadow"
		}
		metrics.Matches.WithLabelValues(m.RuleID, mode).Inc()
		if len(m.EventIDs) == 0 {
			continue
		}
		if ts, ok := at[m.EventIDs[len(m.EventIDs)-1]]; ok && !ts.IsZero() {
			metrics.EventToMatch.Observe(now.Sub(ts).Seconds())
		}
	}
}

func (s *Stage) deadLetter(m *sarama.ConsumerMessage, err error) *sarama.ProducerMessage {
	s.cfg.Log.Warn("dead-lettering event", "partition", m.Partition, "offset", m.Offset, "err", err)
	return &sarama.ProducerMessage{
		Topic: s.cfg.DLQTopic,
		Key:   sarama.ByteEncoder(m.Key),
		Value: sarama.ByteEncoder(m.Value),
		Headers: []sarama.RecordHeader{
			{Key: []byte(event.HeaderDLQReason), Value: []byte(err.Error())},
			{Key: []byte("omega-source"), Value: []byte(m.Topic + "/" + strconv.Itoa(int(m.Partition)) + "/" + strconv.FormatInt(m.Offset, 10))},
		},
	}
}

// startAll starts every match, concurrently, each retried until it is durable.
func (s *Stage) startAll(ctx context.Context, ms []workflows.Match) error {
	if len(ms) == 0 {
		return nil
	}
	sem := make(chan struct{}, s.cfg.StartConcurrency)
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i := range ms {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			log := s.cfg.Log.With("trace_id", ms[i].TraceID, "rule_id", ms[i].RuleID)
			errs[i] = retry(ctx, log, "start reach workflow", func() error { return s.cfg.Starter.Start(ctx, ms[i]) })
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// retry calls fn with capped exponential backoff until it succeeds or ctx ends.
func retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		var stop stopRetry
		if errors.As(err, &stop) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("retrying", "what", what, "attempt", attempt, "backoff", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ProfileReader loads many users' profiles at once (profile.Cached).
type ProfileReader interface {
	GetMany(ctx context.Context, userIDs []string) (map[string]profile.Profile, error)
}

// profilesFor loads the profiles the batch's conditions read: only when a rule reads them, only
// for the users of events such a rule reacts to.
func (s *Stage) profilesFor(ctx context.Context, rules []compiledRule, evs []event.Event) (map[string]map[string]any, error) {
	if s.cfg.Profiles == nil {
		return nil, nil
	}
	users := map[string]bool{}
	for i := range evs {
		for j := range rules {
			if rules[j].needsProfile && rules[j].types[evs[i].Type] && evs[i].UserID != "" {
				users[evs[i].UserID] = true
				break
			}
		}
	}
	if len(users) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(users))
	for u := range users {
		ids = append(ids, u)
	}
	ps, err := s.cfg.Profiles.GetMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	out := make(map[string]map[string]any, len(ps))
	for u, p := range ps {
		out[u] = p.Vars()
	}
	return out, nil
}
