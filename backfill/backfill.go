package backfill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// Starter starts a match's reach under the workflow ID live matching gives it; created is false
// when a reach of that ID exists already (started live, or by an earlier backfill).
type Starter interface {
	StartReach(ctx context.Context, m workflows.Match) (created bool, err error)
}

// Config wires a Runner to the stack the live stage uses.
type Config struct {
	Brokers []string
	// Sarama returns a fresh consumer config (cep.DefaultSaramaConfig when nil; credentials and
	// TLS are the caller's).
	Sarama func() *sarama.Config
	// Topic replayed (event.Topic when empty).
	Topic string
	Redis redis.UniversalClient
	// Profiles gives conditions that read `profile` the users' profiles (empty ones when nil).
	Profiles cep.ProfileReader
	// EventTypes gives the event catalogue, as the live stage reads it (the default catalogue when
	// nil): a team's own types are replayed, not skipped as undeclared.
	EventTypes cep.EventTypeSource
	// Starter starts the reaches of Job.Start (a job with Start is refused when nil).
	Starter Starter
	// AllowedLateness as the live stage has it (cep.DefaultAllowedLateness when zero).
	AllowedLateness time.Duration
	// PollInterval is how often progress is read and reported (500ms when zero).
	PollInterval time.Duration
	Log          *slog.Logger
}

// Runner runs backfills; one Runner serves many, concurrently.
type Runner struct{ cfg Config }

// New checks cfg.
func New(cfg Config) (*Runner, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, errors.New("backfill: brokers are required")
	case cfg.Redis == nil:
		return nil, errors.New("backfill: redis client is required")
	}
	if cfg.Sarama == nil {
		cfg.Sarama = cep.DefaultSaramaConfig
	}
	if cfg.Topic == "" {
		cfg.Topic = event.Topic
	}
	if cfg.AllowedLateness == 0 {
		cfg.AllowedLateness = cep.DefaultAllowedLateness
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Runner{cfg: cfg}, nil
}

// ErrNoStarter refuses Job.Start on a Runner that cannot start reaches.
var ErrNoStarter = errors.New("backfill: this runner starts no reaches")

// span is one partition's replayed range: [from, to).
type span struct{ from, to int64 }

// Run replays job.Rule over the topic from job.Since to the end offsets of now, calling progress
// (when set) about every PollInterval, and returns the report. Cancelling ctx stops it; the
// consumer group and the Redis state are deleted in every case.
func (r *Runner) Run(ctx context.Context, job Job, progress func(Progress)) (Report, error) {
	until := time.Now().UTC()
	if err := job.Validate(until); err != nil {
		return Report{}, err
	}
	if job.Start && r.cfg.Starter == nil {
		return Report{}, ErrNoStarter
	}
	job.setDefaults()
	if progress == nil {
		progress = func(Progress) {}
	}
	rep := Report{RuleID: job.Rule.ID, RuleVersion: job.Rule.Version, Since: job.Since.UTC(), Until: until}
	var startAfter time.Time
	if job.Start {
		startAfter = until.Add(-job.StartWithin)
		rep.StartAfter = startAfter
	}
	id := newID()
	// Dots: a group name is a log attribute, and a long run of token characters would be masked.
	group, prefix := "omega-backfill."+job.Rule.ID+"."+id, "omega-backfill-"+id
	log := r.cfg.Log.With("rule_id", job.Rule.ID, "rule_version", job.Rule.Version, "group", group)

	client, err := sarama.NewClient(r.cfg.Brokers, r.cfg.Sarama())
	if err != nil {
		return rep, fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()
	spans, err := r.spans(client, job.Since)
	if err != nil {
		return rep, err
	}
	for _, s := range spans {
		rep.Records += s.to - s.from
	}
	// From here on the group and the state exist: delete them whatever happens.
	defer r.cleanup(ctx, client, group, prefix, log)
	if err := commitStart(client, client.Config(), r.cfg.Topic, group, spans); err != nil {
		return rep, err
	}
	log.Info("backfill replaying", "since", rep.Since, "until", until, "records", rep.Records, "partitions", len(spans))

	rec := &recorder{spans: spans, beyond: map[string]bool{}, tally: newTally(job.SampleSize, startAfter)}
	if job.Rule.Kind == cep.KindAbsence {
		// An absence whose window was still open when the backfill began is undecided: it is not
		// reported, whether or not the wall clock fires it before the replay stops.
		rec.decidedBy = until.Add(-job.Rule.Within.D())
	}
	rule := job.Rule
	rule.Disabled, rule.Shadow = false, false
	sc := r.cfg.Sarama()
	sc.ClientID = "omega-backfill"
	sc.Consumer.Interceptors = append(sc.Consumer.Interceptors, rec)
	st, err := cep.New(cep.Config{
		Brokers: r.cfg.Brokers, Sarama: sc, Group: group, Topic: r.cfg.Topic, Redis: r.cfg.Redis, KeyPrefix: prefix,
		// Shared join keys expire by event time: kept past the replayed history's age, so its old
		// links and triggers still join (cleanup deletes them after).
		SharedGrace:     until.Sub(job.Since) + cep.DefaultSharedGrace,
		AllowedLateness: r.cfg.AllowedLateness, Rules: []cep.Rule{rule}, Starter: rec, Profiles: r.cfg.Profiles, EventTypes: r.cfg.EventTypes,
		DiscardDeadLetters: true, KeepMisrouted: true, TimerInterval: 100 * time.Millisecond, Log: log,
		// Every match of the history is reported; which start is --start-within's to say.
		MaxMatchAge: -1,
	})
	if err != nil {
		return rep, fmt.Errorf("backfill stage: %w", err)
	}
	var settle time.Time
	if rule.Kind == cep.KindAbsence {
		// The absences due before the backfill began fire on the idle partitions' clock, at most
		// the allowed lateness after it: the stage runs until then.
		settle = until.Add(r.cfg.AllowedLateness + 500*time.Millisecond)
	}
	if err := r.replay(ctx, st, client, group, spans, rec, rep.Records, settle, until, progress); err != nil {
		log.Info("backfill stopped", "err", err)
		return rep, err
	}
	rec.mu.Lock()
	rec.tally.report(&rep)
	recent := rec.tally.recent
	rec.mu.Unlock()
	if job.Start {
		if err := r.start(ctx, recent, &rep, log); err != nil {
			return rep, err
		}
	}
	log.Info("backfill done", "matches", rep.Matches, "started", rep.Started, "existing", rep.Existing, "too_old", rep.TooOld)
	return rep, nil
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// spans reads each partition's replayed range: from the first record at or after since (the
// broker's ListOffsets by timestamp; the end when there is none) to the end offset now.
func (r *Runner) spans(client sarama.Client, since time.Time) (map[int32]span, error) {
	parts, err := client.Partitions(r.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", r.cfg.Topic, err)
	}
	out := make(map[int32]span, len(parts))
	for _, p := range parts {
		end, err := client.GetOffset(r.cfg.Topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("end offset of %s/%d: %w", r.cfg.Topic, p, err)
		}
		from, err := client.GetOffset(r.cfg.Topic, p, since.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("offset of %s/%d at %s: %w", r.cfg.Topic, p, since.Format(time.RFC3339), err)
		}
		if from < 0 || from > end {
			from = end // nothing at or after since
		}
		out[p] = span{from: from, to: end}
	}
	return out, nil
}

// commitStart commits each partition's start offset for the new group, so that its stage begins
// there (a group's first consumer takes its committed offsets). The group has no member yet: a
// simple commit (generation -1), as kafka-consumer-groups --reset-offsets makes.
func commitStart(client sarama.Client, conf *sarama.Config, topic, group string, spans map[int32]span) error {
	coord, err := client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("coordinator of %s: %w", group, err)
	}
	req := sarama.NewOffsetCommitRequest(conf, group)
	for p, s := range spans {
		req.AddBlockWithLeaderEpoch(topic, p, s.from, -1, 0, "")
	}
	resp, err := coord.CommitOffset(req)
	if err != nil {
		return fmt.Errorf("commit start offsets of %s: %w", group, err)
	}
	for p := range spans {
		if kerr := resp.Errors[topic][p]; kerr != sarama.ErrNoError {
			return fmt.Errorf("commit start offset of %s/%d for %s: %w", topic, p, group, kerr)
		}
	}
	return nil
}

func committedOffsets(client sarama.Client, topic, group string, spans map[int32]span) (map[int32]int64, error) {
	admin, err := sarama.NewClusterAdminFromClient(noCloseClient{client})
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	parts := make([]int32, 0, len(spans))
	for p := range spans {
		parts = append(parts, p)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", group, err)
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		b := resp.GetBlock(topic, p)
		if b == nil {
			out[p] = -1
			continue
		}
		if b.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("offset of %s/%d in %s: %w", topic, p, group, b.Err)
		}
		out[p] = b.Offset
	}
	return out, nil
}

// noCloseClient lets a cluster admin share a client it must not close.
type noCloseClient struct{ sarama.Client }

func (noCloseClient) Close() error { return nil }

// replay runs the stage until every partition's committed offset reaches its end (and settle has
// passed), reporting progress, then stops it.
func (r *Runner) replay(ctx context.Context, st *cep.Stage, client sarama.Client, group string, spans map[int32]span,
	rec *recorder, total int64, settle, until time.Time, progress func(Progress)) error {
	sctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- st.Run(sctx) }()
	halt := func() error {
		stop()
		return <-errc
	}
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = halt()
			return ctx.Err()
		case err := <-errc:
			stop()
			if err == nil {
				err = errors.New("stage stopped")
			}
			return fmt.Errorf("backfill stage: %w", err)
		case <-t.C:
		}
		committed, err := committedOffsets(client, r.cfg.Topic, group, spans)
		if err != nil {
			r.cfg.Log.Warn("read backfill progress", "err", err)
			continue
		}
		p := Progress{Total: total, Partitions: len(spans), Matches: rec.matches()}
		for part, s := range spans {
			c := min(max(committed[part], s.from), s.to)
			p.Read += c - s.from
			if c >= s.to {
				p.PartitionsDone++
			}
		}
		progress(p)
		// An absence keyed on something other than the user fires on the group's watermark, which
		// the idle partitions publish: the stage runs until its timers have fired through until.
		if p.PartitionsDone == p.Partitions && !time.Now().Before(settle) && !st.SharedAbsencesFiredThrough().Before(until) {
			if err := halt(); err != nil {
				return fmt.Errorf("backfill stage: %w", err)
			}
			return nil
		}
	}
}

// cleanup deletes the backfill's consumer group and Redis state, even after ctx ended.
func (r *Runner) cleanup(ctx context.Context, client sarama.Client, group, prefix string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	cep.DeleteState(ctx, r.cfg.Redis, prefix)
	admin, err := sarama.NewClusterAdminFromClient(noCloseClient{client})
	if err != nil {
		log.Warn("delete backfill consumer group", "err", err)
		return
	}
	defer admin.Close()
	// The stage's last member may still be leaving: a non-empty group refuses deletion.
	for attempt := 0; ; attempt++ {
		err := admin.DeleteConsumerGroup(group)
		if err == nil || errors.Is(err, sarama.ErrGroupIDNotFound) {
			return
		}
		if attempt == 20 || ctx.Err() != nil {
			log.Warn("delete backfill consumer group", "err", err)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// start starts the recent matches' reaches, a few at a time.
func (r *Runner) start(ctx context.Context, ms []workflows.Match, rep *Report, log *slog.Logger) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first error
	sem := make(chan struct{}, 8)
	for _, m := range ms {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			created, err := r.cfg.Starter.StartReach(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if first == nil {
					first = err
				}
			case created:
				rep.started(m)
			default:
				rep.Existing++
			}
		}()
	}
	wg.Wait()
	if first != nil {
		log.Warn("backfill start reaches", "err", first)
		return fmt.Errorf("start reaches: %w", first)
	}
	return nil
}

// recorder is the backfill stage's starter and its consumer interceptor: it tallies the matches
// of the replayed range, leaving out those completed by records past the end offsets (live
// traffic that came in while the backfill ran).
type recorder struct {
	spans     map[int32]span
	decidedBy time.Time // absences: only those whose window closed by then (zero: every match)
	mu        sync.Mutex
	beyond    map[string]bool // event IDs of records at or past their partition's end offset
	tally     *tally
}

// OnConsume implements sarama.ConsumerInterceptor; it runs before the stage sees the record.
func (c *recorder) OnConsume(msg *sarama.ConsumerMessage) {
	if s, ok := c.spans[msg.Partition]; !ok || msg.Offset < s.to {
		return
	}
	var v struct {
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(msg.Value, &v) != nil || v.EventID == "" {
		return
	}
	c.mu.Lock()
	c.beyond[v.EventID] = true
	c.mu.Unlock()
}

// Start implements cep.Starter: it records, and never fails.
func (c *recorder) Start(_ context.Context, m workflows.Match) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.beyond[m.LastEvent()] {
		return nil
	}
	if !c.decidedBy.IsZero() && m.EventTime.After(c.decidedBy) {
		return nil
	}
	c.tally.add(m)
	return nil
}

func (c *recorder) matches() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tally.matches()
}
