package cep

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/openreach"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/workflows"
)

// Signaler delivers response events to open reaches. TemporalStarter is one.
type Signaler interface {
	// Signal returns false when the reach is gone; delivering the same response twice must be
	// harmless (the workflow keeps one per event ID).
	Signal(ctx context.Context, reachID string, r workflows.Response) (bool, error)
}

type delivery struct {
	userID, reachID string
	resp            workflows.Response
}

// routeResponses signals each response event (a type the catalogue declares a response or a
// goal) to the user's open reaches
// that wait for its type, found in the index the reach workflows keep (internal/openreach). A
// response carrying attrs.reach_id goes to that reach only, and only if it is the user's and
// waits for it. Users are looked up in one pipeline per batch.
func (s *Stage) routeResponses(ctx context.Context, evs []event.Event) error {
	if s.cfg.Signaler == nil {
		return nil
	}
	var resp []*event.Event
	users := map[string]*redis.MapStringStringCmd{}
	for i := range evs {
		ev := &evs[i]
		if ev.UserID != "" && s.routed(ev.Type) {
			resp = append(resp, ev)
			users[ev.UserID] = nil
		}
	}
	if len(resp) == 0 {
		return nil
	}
	// A pipeline is emptied by Exec: each attempt queues its commands afresh.
	if err := retry(ctx, s.cfg.Log, "read open reaches", func() error {
		pipe := s.cfg.Redis.Pipeline()
		for u := range users {
			users[u] = pipe.HGetAll(ctx, openreach.Key(s.cfg.ReachPrefix, u))
		}
		_, err := pipe.Exec(ctx)
		return err
	}); err != nil {
		return err
	}
	now := time.Now()
	var ds []delivery
	for _, ev := range resp {
		waiting := openreach.Waiting(users[ev.UserID].Val(), ev.Type, now)
		if rid, _ := ev.Attrs[event.AttrReachID].(string); rid != "" {
			if !slices.Contains(waiting, rid) {
				continue
			}
			waiting = []string{rid}
		}
		for _, id := range waiting {
			ds = append(ds, delivery{userID: ev.UserID, reachID: id, resp: workflows.Response{
				EventID: ev.EventID, Type: ev.Type, At: ev.TS, Attrs: ev.Attrs}})
		}
	}
	return s.signalAll(ctx, ds)
}

// signalAll delivers concurrently across reaches and in event order within one reach, so a run
// sees its responses in the order of the partition.
func (s *Stage) signalAll(ctx context.Context, ds []delivery) error {
	var order []string
	byReach := map[string][]delivery{}
	for _, d := range ds {
		if byReach[d.reachID] == nil {
			order = append(order, d.reachID)
		}
		byReach[d.reachID] = append(byReach[d.reachID], d)
	}
	sem := make(chan struct{}, s.cfg.StartConcurrency)
	var wg sync.WaitGroup
	errs := make([]error, len(order))
	for i, id := range order {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, d := range byReach[id] {
				if errs[i] = s.signal(ctx, d); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// signal delivers one response, retrying while Temporal is unavailable. A response Temporal
// refuses for good (too large, the run's signal limit) is logged and skipped: it must not block
// the partition.
func (s *Stage) signal(ctx context.Context, d delivery) error {
	return retry(ctx, s.cfg.Log, "signal response", func() error {
		found, err := s.cfg.Signaler.Signal(ctx, d.reachID, d.resp)
		if errors.Is(err, ErrPermanent) {
			s.cfg.Log.Error("response refused for good; skipped", "reach_id", d.reachID, "event_id", d.resp.EventID, "err", err)
			return nil
		}
		if err != nil {
			return err
		}
		if !found {
			// The run ended without unregistering (or raced with this event): drop the entry.
			return openreach.Unregister(ctx, s.cfg.Redis, s.cfg.ReachPrefix, d.userID, d.reachID)
		}
		return nil
	})
}

// ErrPermanent marks a failure a retry cannot fix.
var ErrPermanent = errors.New("permanent")

// track attributes the batch's response events to the reaches that sent before them, and
// records its delivery receipts and the opens that name their reach; all idempotent, so a
// replayed batch writes nothing new.
func (s *Stage) track(ctx context.Context, evs []event.Event) error {
	if s.cfg.Tracker == nil {
		return nil
	}
	var goals []audit.Goal
	var receipts []audit.Receipt
	for i := range evs {
		ev := &evs[i]
		rid, _ := ev.Attrs[event.AttrReachID].(string)
		key, _ := ev.Attrs[event.AttrIdempotencyKey].(string)
		switch {
		case rid != "" && s.catalog().Can(ev.Type, event.UseReceipt):
			receipts = append(receipts, audit.Receipt{Kind: audit.KindDelivered, Outcome: "delivered", ReachID: rid,
				IdempotencyKey: key, EventID: ev.EventID, At: ev.TS})
		case ev.UserID != "" && s.routed(ev.Type):
			goals = append(goals, audit.Goal{UserID: ev.UserID, Type: ev.Type, EventID: ev.EventID, At: ev.TS})
			if ev.Type == event.TypeOpened && rid != "" {
				receipts = append(receipts, audit.Receipt{Kind: audit.KindResponded, Outcome: ev.Type, ReachID: rid,
					IdempotencyKey: key, EventID: ev.EventID, At: ev.TS})
			}
		}
	}
	if len(goals) > 0 {
		if err := retry(ctx, s.cfg.Log, "attribute conversions", func() error {
			_, err := s.cfg.Tracker.Attribute(ctx, goals)
			return s.tolerate(err, "attribute conversions")
		}); err != nil {
			return err
		}
	}
	if len(receipts) > 0 {
		return retry(ctx, s.cfg.Log, "record receipts", func() error {
			_, err := s.cfg.Tracker.Receipts(ctx, receipts)
			return s.tolerate(err, "record receipts")
		})
	}
	return nil
}

// tolerate turns an error PostgreSQL will give for these very rows every time (store.IsDataError)
// into a logged, counted skip: tracking records are worth less than a partition that keeps moving.
// Outages and the like are returned, and retried.
func (s *Stage) tolerate(err error, what string) error {
	if store.IsDataError(err) {
		s.cfg.Log.Error(what+": records skipped, PostgreSQL refuses them", "err", err)
		metrics.TrackingSkipped.Inc()
		return nil
	}
	return err
}
