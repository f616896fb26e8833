package cep

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// A partition's batch goes through one order, so that a crash anywhere replays to the same
// matches and the same workflow IDs:
//
//  1. decode (bad records to the dead-letter topic), skip what the restored state has seen;
//  2. compute the matches in memory: each event advances its rules' instances, then the
//     watermark, then fires the timers the watermark passed (shared state in Redis for joins and
//     rules not keyed on the user: sent first, and completed with the batch's effects: shared.go);
//  3. start the reaches (workflow IDs derived from the matches collapse a replay's duplicates),
//     route responses, write tracking records;
//  4. make the partition's state durable (changelog commit, fenced), with the next offset;
//  5. mark the offset for Kafka.
//
// Steps 4 and 5 cover every batch processed since the last commit, at most
// Config.CommitInterval after the first of them, so starts never wait for a commit. Step 3 runs
// beside the next batches' steps 1 and 2 (effects.go), so the next events never wait for a
// start either; a commit waits until every batch it covers has done step 3. Step 4 is sent while
// the next batches go on (a commit in flight, below), and 5 follows when it lands.
//
// A crash before 4 replays the batch from the last durable state: the same matches, the same
// IDs, the starts collapse. A crash between 4 and 5 replays records the state has seen, which are
// skipped by offset. The state that produced a match is never durable before its start.

// crashPoint lets the fault test stop the process at each step of a batch (nil in production).
var crashPoint func(point string, matches int)

func crash(point string, matches int) {
	if crashPoint != nil {
		crashPoint(point, matches)
	}
}

// CrashAt makes the process call die at the first batch that reaches point with matches to
// start: the fault suite's way of killing a CEP replica at an exact step (omega cep reads it from
// OMEGA_CEP_CRASH_AT). Never set in production.
func CrashAt(point string, die func()) {
	crashPoint = func(p string, matches int) {
		if p == point && matches > 0 {
			die()
		}
	}
}

// Crash points, in batch order.
const (
	PointComputed  = "computed"  // matches computed, nothing started
	PointStarted   = "started"   // reaches started, state not durable
	PointCommitted = "committed" // state durable, offset not marked
)

// partition is one claimed partition: its machine, its changelog, and the next offset to read.
type partition struct {
	id int32
	// slice is how many timers the partition fires at a time (firstFireSlice when zero; adapt).
	slice int
	// partitions is the topic's partition count when the claim began (0: unknown, nothing is
	// forwarded).
	partitions int32
	log        *changelog
	m          *machine
	next       int64 // -1: the state has no offset; take what Kafka gives
	// published is the watermark last committed: the group's, the least of its partitions', decides
	// the shared absences (fireTimers).
	published int64
	fl        *flight       // the commit in flight, if any
	shared    *sharedSender // sends the batches' shared parts (shared.go)
}

// sharedItem is an event for a rule whose state is shared in Redis.
type sharedItem struct {
	rule *compiledRule
	ev   *event.Event
	vars *condVars
	at   time.Time // when Kafka took ev (zero: unknown)
}

// ownedByPartition reports whether r's state lives in the partition's machine: every rule keyed
// on the user (the partition key), but joins, whose link and trigger travel on different
// partitions.
func ownedByPartition(r *compiledRule) bool {
	if r.Kind == KindJoin {
		return false
	}
	for _, f := range r.keyFields {
		if f == "user" {
			return true
		}
	}
	return false
}

func rulesByID(rules []compiledRule) map[string]*compiledRule {
	byID := make(map[string]*compiledRule, len(rules))
	for i := range rules {
		byID[rules[i].ID] = &rules[i]
	}
	return byID
}

// rulesByType lists, per event type, the enabled rules that react to it, in rule order: an event
// looks up its rules once, not once per rule.
func rulesByType(rules []compiledRule) map[string][]int {
	out := map[string][]int{}
	for j := range rules {
		if rules[j].Disabled {
			continue
		}
		for t := range rules[j].types {
			out[t] = append(out[t], j)
		}
	}
	return out
}

// anyReadsTS reports whether a condition of one of the rules js may read event.ts.
func anyReadsTS(rules []compiledRule, js []int) bool {
	for _, j := range js {
		if rules[j].readsTS {
			return true
		}
	}
	return false
}

// sharedOf lists the events of evs for the rules whose state is shared in Redis (joins, rules not
// keyed on the user: ownedByPartition), in event order then rule order (appended[i] is the
// broker's time of evs[i], or zero). They are step 2's shared part, sent to Redis while the
// machine computes the rest (shared.go).
func sharedOf(rules []compiledRule, evs []event.Event, appended []time.Time, profiles map[string]map[string]any) []sharedItem {
	byType := rulesByType(rules)
	var out []sharedItem
	for i := range evs {
		ev := &evs[i]
		var vars *condVars
		for _, j := range byType[ev.Type] {
			r := &rules[j]
			if ownedByPartition(r) {
				continue
			}
			if vars == nil && r.hasCond { // a step without a condition reads no variables
				vars = newCondVars(rules, byType[ev.Type], ev, profiles)
			}
			var at time.Time
			if appended != nil {
				at = appended[i]
			}
			out = append(out, sharedItem{rule: r, ev: ev, vars: vars, at: at})
		}
	}
	return out
}

// newCondVars are the condition variables of ev, one of whose rules js has a condition.
func newCondVars(rules []compiledRule, js []int, ev *event.Event, profiles map[string]map[string]any) *condVars {
	vars := &condVars{ev: ev, withTS: anyReadsTS(rules, js)}
	vars.profile, vars.loaded = profiles[ev.UserID]
	return vars
}

// compute runs step 2 for evs in the machine (in partition order; appended[i] is the broker's time
// of evs[i], or zero): the rules the partition owns; the others' are sharedOf's. It cannot fail.
//
// A batch fires at most fireSlack more timers than its events set (negative: no bound), so it
// keeps up with a steady stream and does not carry a restart's thousands of overdue timers (their
// starts would hold its commit, and so the partition's next events, until all were started); the
// rest fire with the batches after it, or a slice at a time when the partition is idle
// (Stage.idle). The timers' matches come after the events' in the batch's, so its events' reaches
// start first.
func (p *partition) compute(rules []compiledRule, evs []event.Event, appended []time.Time, profiles map[string]map[string]any,
	now time.Time, fireSlack int) (local []workflows.Match) {
	byID, byType := rulesByID(rules), rulesByType(rules)
	armed0 := p.m.armed
	var timers []workflows.Match
	for i := range evs {
		if i%prefetchRun == 0 {
			p.m.prefetch(rules, byType, evs[i:min(i+prefetchRun, len(evs))])
		}
		ev := &evs[i]
		var at time.Time
		if appended != nil {
			at = appended[i]
		}
		var vars *condVars
		for _, j := range byType[ev.Type] {
			r := &rules[j]
			if !ownedByPartition(r) {
				continue // sharedOf's
			}
			if vars == nil && r.hasCond { // a step without a condition reads no variables
				vars = newCondVars(rules, byType[ev.Type], ev, profiles)
			}
			local = append(local, p.m.apply(r, ev, vars, now)...)
		}
		p.m.observe(ev.TS, at)
		limit := -1
		if fireSlack >= 0 {
			limit = max(0, fireSlack+p.m.armed-armed0-len(timers))
		}
		timers = append(timers, p.m.fire(byID, now, limit)...)
	}
	p.m.sweep()
	return append(local, timers...)
}

// complete adds the shared state's matches to the machine's and applies re-entry. Safe to retry:
// the shared scripts are idempotent per event and a match holds its own re-entry mark. shared is
// sent to Redis here, and waited for: a dry run's, a test's (a claimed partition's batches send
// theirs through the partition's shared sender, shared.go). prep (nil: none) sees the matches
// before the re-entry policies do: a match it suppresses (stale) holds no re-entry mark.
func (p *partition) complete(ctx context.Context, e *engine, rules []compiledRule, local []workflows.Match, shared []sharedItem,
	now time.Time, prep func([]workflows.Match)) ([]workflows.Match, error) {
	matches := slices.Clip(local)
	if len(shared) > 0 {
		sm, jobs, err := e.processShared(ctx, shared, now)
		if err != nil {
			return nil, err
		}
		matches = append(matches, sm...)
		p.m.addJobs(jobs)
	}
	if len(matches) == 0 {
		return nil, nil
	}
	if prep != nil {
		prep(matches)
	}
	return p.admit(ctx, e, rules, matches)
}

// process is compute and complete in one (dry runs and tests: no retries).
func (p *partition) process(ctx context.Context, e *engine, rules []compiledRule, evs []event.Event, appended []time.Time,
	profiles map[string]map[string]any, now time.Time) ([]workflows.Match, error) {
	shared := sharedOf(rules, evs, appended, profiles)
	local := p.compute(rules, evs, appended, profiles, now, -1)
	return p.complete(ctx, e, rules, local, shared, now, nil)
}

// admit applies the re-entry policies: in the machine for the rules it owns, in Redis for the
// rules whose state is shared (a join's users live on other partitions, and a shared absence's
// timer fires outside any partition). A match the policy suppresses stays, marked (Suppressed),
// for the audit trail: dispatch records it and starts nothing.
func (p *partition) admit(ctx context.Context, e *engine, rules []compiledRule, ms []workflows.Match) ([]workflows.Match, error) {
	byID := rulesByID(rules)
	out := ms[:0:0]
	var shared []workflows.Match
	for _, m := range ms {
		r := byID[m.RuleID]
		switch {
		case r == nil:
		case !ownedByPartition(r):
			shared = append(shared, m)
		case m.Suppressed != "": // stale: it holds no re-entry mark
			out = append(out, m)
		default:
			if m.Suppressed = p.m.reenter(r, m); m.Suppressed != "" {
				metrics.Matches.WithLabelValues(m.RuleID, "suppressed").Inc()
			}
			out = append(out, m)
		}
	}
	passed, err := admitShared(ctx, e, rules, shared)
	if err != nil {
		return nil, err
	}
	return dedupeMatches(append(out, passed...)), nil
}

// admitShared applies the re-entry policies of rules whose state is shared (ownedByPartition
// false) to their matches ms, in Redis; it reads nothing of a partition's machine.
func admitShared(ctx context.Context, e *engine, rules []compiledRule, ms []workflows.Match) ([]workflows.Match, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	var passed []workflows.Match
	err := e.withScripts(ctx, func() (err error) {
		// From the same matches each time: a first run that found Redis without its scripts
		// passed none of them.
		passed, err = e.applyReentryOnce(ctx, rules, ms)
		return err
	})
	return passed, err
}

type handler struct {
	s      *Stage
	dlq    sarama.SyncProducer
	client sarama.Client
}

// caughtUp asks the broker whether the partition holds nothing past readNext (-1: nothing read and
// no state, so the claim's first offset).
func (h *handler) caughtUp(claim sarama.ConsumerGroupClaim, readNext int64) bool {
	if claim.HighWaterMarkOffset() > readNext && readNext >= 0 {
		return false // the last fetch already saw more (asked of the broker only when it may not)
	}
	if readNext < 0 {
		switch readNext = claim.InitialOffset(); readNext {
		case sarama.OffsetNewest:
			return true
		case sarama.OffsetOldest:
			first, err := h.client.GetOffset(claim.Topic(), claim.Partition(), sarama.OffsetOldest)
			if err != nil {
				h.s.cfg.Log.Warn("read the partition's first offset", "partition", claim.Partition(), "err", err)
				return false
			}
			readNext = first
		}
	}
	end, err := h.client.GetOffset(claim.Topic(), claim.Partition(), sarama.OffsetNewest)
	if err != nil {
		h.s.cfg.Log.Warn("read the partition's end offset", "partition", claim.Partition(), "err", err)
		return false
	}
	return readNext >= end
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim owns one partition for the session: it fences the previous owner and restores the
// partition's state before its first record, then processes batches. Returning ends the whole
// session (Sarama), so a replica that finds itself fenced rejoins the group rather than go on.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	part := strconv.Itoa(int(claim.Partition()))
	// A partition this replica no longer owns reports nothing from here (its new owner does).
	defer metrics.ConsumerLag.DeleteLabelValues(part)
	defer metrics.WatermarkLag.DeleteLabelValues(part)
	defer metrics.StateInstances.DeleteLabelValues(part)
	defer metrics.StateBytes.DeleteLabelValues(part)
	// The claim's effects end with it (a fenced replica's too: the next owner replays them).
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	s := h.s
	cfg := s.cfg
	p := &partition{id: claim.Partition(), log: newChangelog(cfg.Redis, cfg.KeyPrefix, cfg.Group, claim.Topic(), claim.Partition()),
		shared: s.newSharedSender(ctx)}
	if ps, err := h.client.Partitions(claim.Topic()); err == nil && !cfg.KeepMisrouted && !cfg.DiscardDeadLetters {
		p.partitions = int32(len(ps))
	}
	began := time.Now()
	if err := retry(ctx, cfg.Log, "restore partition state", func() (err error) {
		p.m, p.next, err = p.log.claim(ctx, cfg.AllowedLateness)
		return err
	}); err != nil {
		return nil
	}
	metrics.StateRestores.Inc()
	if end, err := h.client.GetOffset(claim.Topic(), claim.Partition(), sarama.OffsetNewest); err == nil && p.next > end {
		// State from another life of the topic (deleted and created again): its offset would
		// skip records that were never seen. Its instances stay; the offset is Kafka's.
		cfg.Log.Warn("partition state is ahead of the partition's end: its offset is ignored", "partition", claim.Partition(),
			"state_offset", p.next, "end_offset", end)
		p.next = -1
	}
	cfg.Log.Info("partition state restored", "partition", claim.Partition(), "instances", p.m.inst.len(),
		"next_offset", p.next, "kafka_offset", claim.InitialOffset(), "watermark", time.UnixMilli(p.m.wm).UTC(),
		"took", time.Since(began).Round(time.Millisecond))

	readNext := p.next // the offset after the last record received
	if io := claim.InitialOffset(); io > readNext {
		readNext = io // Kafka's committed offset is past the state's (offsets reset forward, a Redis that lost commits)
	}
	batch := make([]*sarama.ConsumerMessage, 0, cfg.BatchSize)
	var first time.Time // when the batch's first record arrived
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	idle := time.NewTicker(cfg.TimerInterval)
	defer idle.Stop()
	// Batches are processed as they come and made durable together, at most CommitInterval
	// after the first of them (Kafka Streams' commit interval): a start never waits for a
	// commit, and a crash replays what no commit covered, to the same matches.
	var pending *sarama.ConsumerMessage // the last record processed and not yet durable
	pendingMatches := 0
	lastCommit := time.Now()
	commitTimer := time.NewTimer(time.Hour)
	commitTimer.Stop()
	// Batches' effects run beside the next batches (effects.go); a commit waits for them, and a
	// due one is put off while they run (the partition goes on), at most cfg.CommitDelay.
	eff := newEffects(p.m)
	defer func() {
		cancel()
		_ = eff.wait()
		if p.fl != nil {
			<-p.fl.done // the claim's context ends its retries
		}
	}()
	commitWanted := false
	// durable commits what was processed: in flight (the partition goes on, its offset marked when
	// the commit lands), or, forced, before it returns.
	durable := func(force bool) bool {
		if pending == nil {
			if force {
				if err := s.awaitCommit(p); err != nil {
					cfg.Log.Info("batches left for the next owner", "partition", claim.Partition(), "err", err)
					return false
				}
			}
			return true
		}
		if !force && p.fl != nil && time.Since(lastCommit) < cfg.CommitInterval+cfg.CommitDelay {
			// The last commit has not landed (a slow or unreachable Redis): this one follows it when
			// it does, and the partition reads on meanwhile, as for effects still running, up to the
			// same bounds (CommitDelay, maxPutOffChanges); past them it waits for the landing.
			commitWanted = true
			return true
		}
		if eff.inflight > 0 {
			if !force && time.Since(lastCommit) < cfg.CommitInterval+cfg.CommitDelay {
				commitWanted = true
				return true
			}
			if err := eff.wait(); err != nil {
				cfg.Log.Info("batches left for the next owner: their effects failed", "partition", claim.Partition(), "err", err)
				return false
			}
		}
		mark, matches, wm := pending, pendingMatches, p.m.wm
		after := func() {
			crash(PointCommitted, matches)
			sess.MarkMessage(mark, "")
			metrics.ConsumerLag.WithLabelValues(part).Set(float64(max(0, claim.HighWaterMarkOffset()-mark.Offset-1)))
			metrics.WatermarkLag.WithLabelValues(part).Set(time.Since(time.UnixMilli(wm)).Seconds())
		}
		var err error
		if force {
			began := time.Now()
			if err = s.commit(ctx, p, mark.Offset+1, s.currentRules()); err == nil {
				metrics.BatchSeconds.WithLabelValues("commit").Observe(time.Since(began).Seconds())
				after()
			}
		} else {
			err = s.startCommit(ctx, p, mark.Offset+1, s.currentRules(), after)
		}
		if err != nil {
			cfg.Log.Info("batches left for the next owner", "partition", claim.Partition(), "err", err)
			return false
		}
		pending, pendingMatches, lastCommit, commitWanted = nil, 0, time.Now(), false
		commitTimer.Stop()
		return true
	}
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		metrics.BatchSeconds.WithLabelValues("wait").Observe(time.Since(first).Seconds())
		out, err := s.processBatch(ctx, h.dlq, p, batch)
		if err != nil {
			// A cancelled session, or a fenced replica: the batch stays unmarked for the owner.
			cfg.Log.Info("batch left for the next owner", "partition", claim.Partition(), "err", err)
			return false
		}
		if err := eff.launch(ctx, s, out); err != nil {
			cfg.Log.Info("batches left for the next owner: their effects failed", "partition", claim.Partition(), "err", err)
			return false
		}
		if pending == nil {
			commitTimer.Reset(max(0, cfg.CommitInterval-time.Since(lastCommit)))
		}
		pending = batch[len(batch)-1]
		pendingMatches += len(out.matches)
		batch = batch[:0]
		if time.Since(lastCommit) >= cfg.CommitInterval {
			return durable(false)
		}
		return true
	}
	var holding time.Time // since when the partition reads nothing, its put-off commit at the bound
	for {
		msgs := claim.Messages()
		if commitWanted && len(p.m.dirty) >= maxPutOffChanges {
			msgs = nil // enough put off: the effects land, then the commit (eff.done below)
			if holding.IsZero() {
				holding = time.Now()
			}
		} else if !holding.IsZero() {
			metrics.BatchSeconds.WithLabelValues("hold").Observe(time.Since(holding).Seconds())
			holding = time.Time{}
		}
		select {
		case msg, ok := <-msgs:
			// Records already buffered join the batch without another pass through this
			// select (6% of the stage's CPU went to it, one record at a time); a full batch
			// goes back to it, so commits, effects and the session get their turn between batches.
		take:
			for {
				if !ok {
					_ = flush() && durable(true)
					return nil
				}
				if len(batch) == 0 {
					timer.Reset(cfg.BatchWait)
					first = time.Now()
				}
				batch = append(batch, msg)
				readNext = msg.Offset + 1
				if len(batch) >= cfg.BatchSize {
					timer.Stop()
					if !flush() {
						return nil
					}
					break take
				}
				select {
				case msg, ok = <-claim.Messages():
				default:
					break take
				}
			}
		case <-timer.C:
			if !flush() {
				return nil
			}
		case <-commitTimer.C:
			if !durable(false) {
				return nil
			}
			if commitWanted {
				// Put off for effects still running, or behind the commit in flight: forced once it
				// is CommitDelay late.
				commitTimer.Reset(max(0, cfg.CommitInterval+cfg.CommitDelay-time.Since(lastCommit)))
			}
		case res := <-p.landed():
			if err := s.landCommit(p, res); err != nil {
				cfg.Log.Info("batches left for the next owner", "partition", claim.Partition(), "err", err)
				return nil
			}
			if commitWanted && eff.inflight == 0 && !durable(false) {
				return nil
			}
		case res := <-eff.done:
			if err := eff.landed(res); err != nil {
				cfg.Log.Info("batches left for the next owner: their effects failed", "partition", claim.Partition(), "err", err)
				return nil
			}
			if commitWanted && eff.inflight == 0 && !durable(false) {
				return nil
			}
		case <-idle.C:
			// On an idle partition that has read everything, the wall clock (less the allowed
			// lateness) is the watermark: a cart left alone still gets its reminder. Whether it
			// has read everything is asked of the broker, and only when a timer would fire.
			now := time.Now()
			if len(batch) > 0 {
				continue
			}
			if len(p.m.jobs) > 0 {
				// What the idle steps commit must not get ahead of the processed records' offset.
				if !durable(true) {
					return nil
				}
				if err := s.idleFanOut(ctx, p); err != nil {
					cfg.Log.Info("partition left for the next owner", "partition", claim.Partition(), "err", err)
					return nil
				}
			}
			// Absences whose state is shared fire on the group's watermark, the least of the
			// partitions' committed ones: an idle partition publishes its own (at most once a
			// second), or it would hold them back.
			publish := ms(now)-p.m.lateness >= p.published+1000 && sharedAbsences(s.currentRules())
			if !(publish || p.m.dueBy(ms(now)-p.m.lateness)) || !h.caughtUp(claim, readNext) {
				continue
			}
			if !durable(true) {
				return nil
			}
			if err := s.idle(ctx, p, now, publish); err != nil {
				cfg.Log.Info("partition left for the next owner", "partition", claim.Partition(), "err", err)
				return nil
			}
			metrics.WatermarkLag.WithLabelValues(part).Set(time.Since(time.UnixMilli(p.m.wm)).Seconds())
		case <-ctx.Done():
			return nil
		}
	}
}

type decoded struct {
	msg *sarama.ConsumerMessage
	ev  event.Event
}

// processBatch takes one batch through steps 1 and 2 above (and a fan-out slice) and returns
// what its effects (step 3) need; ConsumeClaim runs them beside the next batches (effects.go) and
// makes the batch durable (4, 5), alone or with the batches after it. Failures of
// Redis, Kafka or Temporal are retried with backoff until they succeed or ctx ends
// (backpressure: the partition waits, nothing is dropped).
func (s *Stage) processBatch(ctx context.Context, dlq sarama.SyncProducer, p *partition, msgs []*sarama.ConsumerMessage) (batchOut, error) {
	step := time.Now()
	lap := func(name string) {
		now := time.Now()
		metrics.BatchSeconds.WithLabelValues(name).Observe(now.Sub(step).Seconds())
		step = now
	}
	good := make([]decoded, 0, len(msgs))
	var dead, forwards []*sarama.ProducerMessage
	replayed := 0
	for _, m := range msgs {
		if m.Offset < p.next {
			replayed++ // in the restored state already: its matches were started before it was
			continue
		}
		ev, err := event.Decode(m.Value)
		if err != nil {
			dead = append(dead, s.deadLetter(m, err))
			metrics.DeadLetters.WithLabelValues(deadReason(err)).Inc()
			continue
		}
		if to := keyPartition(ev.Key(), p.partitions); to != m.Partition && p.partitions > 0 {
			forwards = append(forwards, s.forward(m, &ev, to))
			continue
		}
		good = append(good, decoded{msg: m, ev: ev})
	}
	good = s.dropUndeclared(ctx, good)
	good, unfit := s.deadUnfit(good)
	dead = append(dead, unfit...)
	metrics.EventsConsumed.WithLabelValues("replayed").Add(float64(replayed))
	if len(dead)+len(forwards) > 0 {
		// Before the batch is durable: a crash replays the batch and sends them again (a forwarded
		// event twice is one event to its partition's state).
		out := append(dead, forwards...)
		if err := retry(ctx, s.cfg.Log, "write dead letters and forwards", func() error { return dlq.SendMessages(out) }); err != nil {
			return batchOut{}, err
		}
		metrics.EventsConsumed.WithLabelValues("dead_lettered").Add(float64(len(dead)))
		metrics.EventsConsumed.WithLabelValues("forwarded").Add(float64(len(forwards)))
	}
	metrics.EventsConsumed.WithLabelValues("processed").Add(float64(len(good)))
	lap("decode")
	evs := make([]event.Event, len(good))
	appended := make([]time.Time, len(good))
	for i := range good {
		evs[i], appended[i] = good[i].ev, good[i].msg.Timestamp
	}
	rules := s.currentRules()
	var profiles map[string]map[string]any
	if err := retry(ctx, s.cfg.Log, "read profiles", func() (err error) {
		profiles, err = s.profilesFor(ctx, rules, evs)
		return err
	}); err != nil {
		return batchOut{}, err
	}
	now := time.Now().UTC()
	// The shared part goes to the partition's sender first (shared.go): Redis answers while the
	// machine computes, and the batch's effects wait for the answer, not the partition.
	var call *sharedCall
	if shared := sharedOf(rules, evs, appended, profiles); len(shared) > 0 {
		call = p.shared.send(ctx, &sharedCall{items: shared, rules: rules, now: now, fresh: good, wm: p.m.wm})
	}
	local := p.compute(rules, evs, appended, profiles, now, p.fireLimit())
	matches, err := s.finish(ctx, p, rules, local, now, func(ms []workflows.Match) {
		annotate(good, ms)
		s.markStale(ms, p.m.wm)
	})
	if err != nil {
		return batchOut{}, err
	}
	lap("compute")
	crash(PointComputed, len(matches))
	if err := s.fanOut(ctx, p, rules, now); err != nil {
		return batchOut{}, err
	}
	lap("fanout")
	return batchOut{evs: evs, matches: matches, shared: call}, nil
}

// batchOut is what a computed batch leaves to its effects (effects.go).
type batchOut struct {
	evs     []event.Event
	matches []workflows.Match
	shared  *sharedCall // the batch's shared part, sent (nil: none)
}

// finish completes matches of the partition's own rules (re-entry, prep), retried until Redis
// answers.
func (s *Stage) finish(ctx context.Context, p *partition, rules []compiledRule, local []workflows.Match,
	now time.Time, prep func([]workflows.Match)) (ms []workflows.Match, err error) {
	err = retry(ctx, s.cfg.Log, "complete the partition's matches", func() (err error) {
		ms, err = p.complete(ctx, s.engine, rules, local, nil, now, prep)
		return err
	})
	return ms, err
}

// fanOut starts the next slice of the partition's fan-out jobs (at most Config.FanOutSlice).
func (s *Stage) fanOut(ctx context.Context, p *partition, rules []compiledRule, now time.Time) error {
	if len(p.m.jobs) == 0 {
		return nil
	}
	deadline := time.Now().Add(s.cfg.FanOutSlice)
	return retry(ctx, s.cfg.Log, "fan out", func() error {
		return p.fanOut(ctx, s.engine, rules, deadline, now, s.dispatch)
	})
}

// idleFanOut moves an idle partition's fan-out jobs on by one slice and commits their cursors.
func (s *Stage) idleFanOut(ctx context.Context, p *partition) error {
	rules := s.currentRules()
	if err := s.fanOut(ctx, p, rules, time.Now().UTC()); err != nil {
		return err
	}
	return s.commit(ctx, p, -1, rules)
}

// fireSlice is how many timers an idle partition fires and starts at a time (it goes on until its
// timers are fired or Config.FanOutSlice has passed, then reads the records that came meanwhile:
// a fresh event's reach does not wait behind a restart's overdue timers), and how many more than
// its events set a batch may fire (compute).
const fireSlice = 64

// minFireSlice is the least an adapted slice (partition.adapt) fires, firstFireSlice the first:
// slices start small and double while they are quick (a restart's first slice of 64 took 9-11 s
// from outside while Temporal was saturated, and a fresh event waited for it).
const (
	minFireSlice   = 4
	firstFireSlice = 8
)

// fireLimit is how many timers the partition fires at a time now.
func (p *partition) fireLimit() int {
	if p.slice == 0 {
		return firstFireSlice
	}
	return p.slice
}

// adapt sizes the next slice from how long this one took to fire, start and commit: halved when
// it took longer than bound, doubled (up to fireSlice) when it took less than half. When
// Temporal is saturated (a restart's thousands of overdue timers, a few dozen starts a second on
// a small host), the slices stay small, each about bound, and a fresh event waits for one.
func (p *partition) adapt(took, bound time.Duration) {
	n := p.fireLimit()
	switch {
	case took > bound:
		n = max(minFireSlice, n/2)
	case took < bound/2:
		n = min(fireSlice, 2*n)
	}
	p.slice = n
}

// idle advances an idle, caught-up partition's watermark to the wall clock (less the allowed
// lateness), starts what its timers fire, and makes that durable, a slice at a time.
// publish commits the watermark even when nothing changed.
func (s *Stage) idle(ctx context.Context, p *partition, now time.Time, publish bool) error {
	p.m.advance(ms(now) - p.m.lateness)
	rules := s.currentRules()
	byID := rulesByID(rules)
	deadline := time.Now().Add(s.cfg.FanOutSlice)
	for {
		began, limit := time.Now(), p.fireLimit()
		fired := p.m.fire(byID, now.UTC(), limit)
		p.m.sweep()
		if len(fired) == 0 && !p.m.changed() && !publish {
			return nil
		}
		matches, err := s.finish(ctx, p, rules, fired, now.UTC(), func(ms []workflows.Match) { s.markStale(ms, p.m.wm) })
		if err != nil {
			return err
		}
		crash(PointComputed, len(matches))
		if err := s.dispatch(ctx, matches); err != nil {
			return err
		}
		crash(PointStarted, len(matches))
		if err := s.commit(ctx, p, -1, rules); err != nil {
			return err
		}
		crash(PointCommitted, len(matches))
		if len(fired) > 0 {
			p.adapt(time.Since(began), s.cfg.FanOutSlice)
		}
		if len(fired) < limit || time.Now().After(deadline) {
			return nil
		}
		publish = false
	}
}

// commit makes the partition's state durable, after the commit in flight if there is one; a
// fenced replica stops at once.
func (s *Stage) commit(ctx context.Context, p *partition, next int64, rules []compiledRule) error {
	if err := s.awaitCommit(p); err != nil {
		return err
	}
	ttl := stateTTL(rules)
	wm := p.m.wm
	err := s.retryCommit(ctx, func() error { return p.log.commit(ctx, p.m, next, ttl) })
	if err == nil {
		s.committed(p, next, wm)
	}
	return err
}

// retryCommit retries a commit until Redis takes it or ctx ends; a fenced replica stops at once.
func (s *Stage) retryCommit(ctx context.Context, commit func() error) error {
	err := retry(ctx, s.cfg.Log, "commit partition state", func() error {
		err := commit()
		if errors.Is(err, errFenced) {
			return stopRetry{err}
		}
		return err
	})
	var stop stopRetry
	if errors.As(err, &stop) {
		metrics.StateFenced.Inc()
		return stop.err
	}
	return err
}

// committed records a durable commit: the next offset it holds (-1: unchanged), its watermark.
func (s *Stage) committed(p *partition, next, wm int64) {
	if next >= 0 {
		p.next = next
	}
	p.published = wm
	if p.id >= 0 {
		part := strconv.Itoa(int(p.id))
		metrics.StateInstances.WithLabelValues(part).Set(float64(p.m.inst.len()))
		metrics.StateBytes.WithLabelValues(part).Set(float64(p.m.a.held))
	}
}

// A commit in flight: the partition's loop prepares a commit (its record and snapshot piece
// encoded, the machine's changes handed to it) and goes on with the next batches while a
// goroutine sends it, retried until Redis takes it, the replica is fenced or the claim ends. The
// loop lands it (landCommit) when it is done, before it prepares the next, so commits stay in
// order and one is in flight at a time; a commit that must be durable before the loop goes on
// (an idle partition's, the claim's last) waits for it. A Redis slow to answer, or a commit that
// carries a snapshot's piece, no longer holds the partition's events back.
type flight struct {
	pl    commitPlan
	done  chan flightResult
	began time.Time
	after func() // run by the loop once the commit is durable: the offset marked
}

type flightResult struct {
	n   int64 // the log's length
	err error
}

// startCommit puts the partition's changes in flight with the next offset; after runs once they
// are durable.
func (s *Stage) startCommit(ctx context.Context, p *partition, next int64, rules []compiledRule, after func()) error {
	if err := s.awaitCommit(p); err != nil {
		return err
	}
	// No commit of this claim failed (a failed one ends the claim), so the changelog holds no
	// unsent plan whose buffers this one would take.
	ttl := stateTTL(rules)
	fl := &flight{pl: p.log.prepare(p.m, next), done: make(chan flightResult, 1), began: time.Now(), after: after}
	p.fl = fl
	go func() {
		var n int64
		err := s.retryCommit(ctx, func() (err error) {
			n, err = p.log.send(ctx, fl.pl, ttl)
			return err
		})
		fl.done <- flightResult{n: n, err: err}
	}()
	return nil
}

// landCommit takes the result of the commit in flight.
func (s *Stage) landCommit(p *partition, res flightResult) error {
	fl := p.fl
	p.fl = nil
	if res.err != nil {
		return res.err
	}
	p.log.settle(fl.pl, res.n)
	s.committed(p, fl.pl.next, fl.pl.wm)
	metrics.BatchSeconds.WithLabelValues("commit").Observe(time.Since(fl.began).Seconds())
	if fl.after != nil {
		fl.after()
	}
	return nil
}

// awaitCommit waits for the commit in flight, if any, and lands it.
func (s *Stage) awaitCommit(p *partition) error {
	if p.fl == nil {
		return nil
	}
	return s.landCommit(p, <-p.fl.done)
}

// landed is the channel on which the commit in flight ends (nil when none is: a select waits on
// it forever).
func (p *partition) landed() chan flightResult {
	if p.fl == nil {
		return nil
	}
	return p.fl.done
}

// stopRetry ends a retry loop with its error.
type stopRetry struct{ err error }

func (e stopRetry) Error() string { return e.err.Error() }

// stateTTL is how long a partition's state outlives its last commit: the longest any instance
// may need (a window plus its lateness, a cooldown, a once-mark), and a day for an idle topic.
func stateTTL(rules []compiledRule) time.Duration {
	d := 24 * time.Hour
	for _, r := range rules {
		d = max(d, r.Within.D()+lateness, r.Cooldown.D())
		if r.Reentry == ReentryOnce {
			d = max(d, OnceTTL)
		}
	}
	return d + 24*time.Hour
}
