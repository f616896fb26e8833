package cep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/workflows"
)

// dispatch starts the matches of live rules and records those that start nothing: shadow rules',
// and those a re-entry policy suppressed.
func (s *Stage) dispatch(ctx context.Context, ms []workflows.Match) error {
	var live, unstarted []workflows.Match
	for _, m := range ms {
		if m.Shadow || m.Suppressed != "" {
			unstarted = append(unstarted, m)
		} else {
			live = append(live, m)
		}
	}
	if len(unstarted) > 0 {
		if s.cfg.Unstarted == nil {
			for _, m := range unstarted {
				if m.Suppressed != "" { // counted (omega_cep_matches_total), and a backfill's may be many
					s.cfg.Log.Debug("match suppressed", "rule_id", m.RuleID, "user_id", m.UserID, "match_key", m.MatchKey, "reason", m.Suppressed)
					continue
				}
				s.cfg.Log.Info("shadow match", "rule_id", m.RuleID, "user_id", m.UserID, "match_key", m.MatchKey, "trace_id", m.TraceID)
			}
		} else if err := retry(ctx, s.cfg.Log, "record unstarted matches", func() error { return s.cfg.Unstarted.RecordUnstarted(ctx, unstarted) }); err != nil {
			return err
		}
	}
	s.markBulk(live, time.Now())
	if err := s.startAll(ctx, live); err != nil {
		return err
	}
	// Every path's matches: a batch's, the timers an idle partition fires, fan-out slices, shared
	// absences.
	observeEventToMatch(ms)
	return nil
}

// markBulk marks the matches that are late as bulk (workflows.Match.Bulk): those whose completing
// record Kafka took, or whose absence fell due, more than Config.BulkAfter ago. They are a backlog
// read after an outage or a lag, and the timers it left overdue; their reaches start on the bulk
// task queue, so a fresh event's reach does not wait behind them in Temporal's queue.
func (s *Stage) markBulk(ms []workflows.Match, now time.Time) {
	if s.cfg.BulkAfter < 0 {
		return
	}
	for i := range ms {
		m := &ms[i]
		at := m.Due
		if at.IsZero() {
			at = m.ReceivedAt
		}
		if !at.IsZero() && now.Sub(at) > s.cfg.BulkAfter {
			m.Bulk = true
		}
	}
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

// annotate gives each match the trace and the Kafka time of the event that completed it (the
// last record of that event ID in the batch). The batch's few completing events are looked for,
// not every record indexed: one small map per batch.
func annotate(fresh []decoded, ms []workflows.Match) {
	if len(ms) == 0 {
		return
	}
	msgs := make(map[string]*sarama.ConsumerMessage, len(ms)) // completing event ID -> its record
	for i := range ms {
		if ids := ms[i].EventIDs; len(ids) > 0 {
			msgs[ids[len(ids)-1]] = nil
		}
	}
	for _, d := range fresh {
		if _, ok := msgs[d.ev.EventID]; ok {
			msgs[d.ev.EventID] = d.msg
		}
	}
	for i := range ms {
		m := &ms[i]
		if len(m.EventIDs) == 0 {
			continue
		}
		last := m.EventIDs[len(m.EventIDs)-1]
		msg := msgs[last]
		if msg == nil {
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
// completed it (its ReceivedAt, set by annotate) to now.
func observeEventToMatch(ms []workflows.Match) {
	now := time.Now()
	for _, m := range ms {
		mode := "live"
		switch {
		case m.Suppressed != "":
			continue // counted where the policy suppressed it (fan-outs and timers too)
		case m.Shadow:
			mode = "shadow"
		}
		metrics.Matches.WithLabelValues(m.RuleID, mode).Inc()
		if !m.ReceivedAt.IsZero() {
			metrics.EventToMatch.Observe(now.Sub(m.ReceivedAt).Seconds())
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
			// The match's logger is built only to log (a logger's With formats its attributes:
			// a few microseconds a match, most of which start at the first try).
			var log *slog.Logger
			logger := func() *slog.Logger {
				if log == nil {
					log = s.cfg.Log.With("trace_id", ms[i].TraceID, "rule_id", ms[i].RuleID)
				}
				return log
			}
			errs[i] = retryLogging(ctx, logger, "start reach workflow", func() error {
				err := s.cfg.Starter.Start(ctx, ms[i])
				if errors.Is(err, ErrPermanent) {
					// Refused for good: skipped, so the partition goes on (the starter counted it).
					logger().Error("reach refused for good; match skipped", "err", err)
					return nil
				}
				return err
			})
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// retry calls fn with capped exponential backoff until it succeeds or ctx ends.
func retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	return retryLogging(ctx, func() *slog.Logger { return log }, what, fn)
}

// retryLogging is retry with the logger built only when there is something to log.
func retryLogging(ctx context.Context, log func() *slog.Logger, what string, fn func() error) error {
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
		log().Warn("retrying", "what", what, "attempt", attempt, "backoff", backoff, "err", err)
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
