package cep

import (
	"context"
	"slices"
	"time"

	"github.com/IBM/sarama"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
)

// EventTypeSource gives the event catalogue (eventtype.Store is one); the stage polls it with the
// rules, so a type declared, changed or disabled applies within ReloadInterval.
type EventTypeSource interface {
	EventTypes(ctx context.Context) (*event.Catalog, error)
}

// catalog is the event catalogue the stage runs with (event.Default until a source answered).
func (s *Stage) catalog() *event.Catalog { return s.events.Load() }

// loadEventTypes takes the source's catalogue; without a source the default one stays.
func (s *Stage) loadEventTypes(ctx context.Context) error {
	if s.cfg.EventTypes == nil {
		return nil
	}
	c, err := s.cfg.EventTypes.EventTypes(ctx)
	if err != nil {
		return err
	}
	if c != nil {
		s.events.Store(c)
	}
	return nil
}

// routed reports whether events of type t go to the user's open reaches: the types the catalogue
// declares a response or a goal (or Config.ResponseTypes, when set).
func (s *Stage) routed(t string) bool {
	if s.cfg.ResponseTypes != nil {
		return slices.Contains(s.cfg.ResponseTypes, t)
	}
	return s.catalog().Routed(t)
}

// maxUndeclaredLogged bounds the undeclared types a replica remembers having logged.
const maxUndeclaredLogged = 1000

// refreshOnUnknown is how often at most a batch holding an undeclared type reads the catalogue
// again before skipping: a type declared a moment ago (the API already takes it) is not skipped
// for want of the next reload.
const refreshOnUnknown = time.Second

// deadUnfit dead-letters the events of declared types that break their type's contract, as the
// API refuses them (event.Catalog.Check): the field their scope needs (a user-scoped cart_add
// without user_id), an attribute the schema requires or types otherwise. Decoding checked the
// wire contract alone; produced straight to Kafka, such an event would match nothing and vanish.
func (s *Stage) deadUnfit(good []decoded) (fit []decoded, dead []*sarama.ProducerMessage) {
	cat := s.catalog()
	fit = good[:0]
	for _, d := range good {
		if err := cat.Check(&d.ev); err != nil {
			dead = append(dead, s.deadLetter(d.msg, err))
			metrics.DeadLetters.WithLabelValues(deadReason(err)).Inc()
			continue
		}
		fit = append(fit, d)
	}
	return fit, dead
}

// dropUndeclared counts and skips the events of types the catalogue does not declare: valid on
// the wire, produced straight to Kafka before (or without) being declared. No rule can match them
// and no journey wait for them; they stay in the topic, so declaring the type later and
// backfilling sees them. Counted in omega_cep_events_total{outcome="undeclared"}; each type is
// logged once per replica.
func (s *Stage) dropUndeclared(ctx context.Context, good []decoded) []decoded {
	cat := s.catalog()
	if s.cfg.EventTypes != nil && slices.ContainsFunc(good, func(d decoded) bool { return !cat.Has(d.ev.Type) }) {
		s.undeclaredMu.Lock()
		refresh := time.Since(s.refreshed) >= refreshOnUnknown
		if refresh {
			s.refreshed = time.Now()
		}
		s.undeclaredMu.Unlock()
		if refresh {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := s.loadEventTypes(rctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("reload event types", "err", err)
			}
			cancel()
			cat = s.catalog()
		}
	}
	out := good[:0]
	skipped := 0
	for _, d := range good {
		if cat.Has(d.ev.Type) {
			out = append(out, d)
			continue
		}
		skipped++
		s.undeclaredMu.Lock()
		first := !s.undeclared[d.ev.Type] && len(s.undeclared) < maxUndeclaredLogged
		if first {
			s.undeclared[d.ev.Type] = true
		}
		s.undeclaredMu.Unlock()
		if first {
			s.cfg.Log.Warn("events of an undeclared type are skipped; declare it with omega events types apply",
				"type", d.ev.Type, "event_id", d.ev.EventID, "partition", d.msg.Partition, "offset", d.msg.Offset)
		}
	}
	if skipped > 0 {
		metrics.EventsConsumed.WithLabelValues("undeclared").Add(float64(skipped))
	}
	return out
}
