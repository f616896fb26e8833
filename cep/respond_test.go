package cep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/openreach"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/workflows"
)

// fakeSignaler records deliveries per reach in order; reaches in gone are closed, in refuse
// refuse for good.
type fakeSignaler struct {
	mu     sync.Mutex
	got    map[string][]string
	gone   map[string]bool
	refuse map[string]bool
}

func (f *fakeSignaler) Signal(_ context.Context, reachID string, r workflows.Response) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[reachID] {
		return false, nil
	}
	if f.refuse[reachID] {
		return false, fmt.Errorf("%w: too large", ErrPermanent)
	}
	f.got[reachID] = append(f.got[reachID], r.EventID)
	return true, nil
}

func TestRouteResponses(t *testing.T) {
	env := testenv.Require(t)
	rdb := env.Redis(t)
	ctx := context.Background()
	prefix := testenv.Unique("rr")
	now := time.Now()
	reg := func(user, reach string, events ...string) {
		_, err := openreach.Register(ctx, rdb, prefix, user, reach, openreach.Entry{RuleID: "r", Events: events}, 0, now)
		require.NoError(t, err)
	}
	reg("ann", "reach/r/ann/1", "push_open", "order_paid")
	reg("ann", "reach/r/ann/2", "order_paid")
	reg("ann", "reach/r/ann/closed", "order_paid")
	reg("ann", "reach/r/ann/huge", "chat_started")
	reg("bob", "reach/r/bob/1", "push_open")

	sig := &fakeSignaler{got: map[string][]string{}, gone: map[string]bool{"reach/r/ann/closed": true},
		refuse: map[string]bool{"reach/r/ann/huge": true}}
	cfg := Config{Redis: rdb, ReachPrefix: prefix, Signaler: sig, Log: slog.New(slog.DiscardHandler)}
	cfg.setDefaults()
	s := &Stage{cfg: cfg}

	ev := func(id, user, typ string, attrs map[string]any) event.Event {
		return event.Event{EventID: id, UserID: user, Type: typ, TS: now, Attrs: attrs}
	}
	err := s.routeResponses(ctx, []event.Event{
		ev("o1", "ann", "push_open", map[string]any{event.AttrReachID: "reach/r/ann/1"}),
		ev("o2", "ann", "push_open", map[string]any{event.AttrReachID: "reach/r/bob/1"}), // not ann's: ignored
		ev("v1", "ann", "view", nil),         // not a response
		ev("p1", "ann", "order_paid", nil),   // by user: every reach of ann waiting for it
		ev("p2", "ann", "order_paid", nil),   // order kept per reach
		ev("c1", "ann", "chat_started", nil), // refused for good: skipped, not blocking
		ev("o3", "bob", "push_open", nil),    // by user, no reach_id
		ev("o4", "cid", "push_open", nil),    // no open reaches
	})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{
		"reach/r/ann/1": {"o1", "p1", "p2"},
		"reach/r/ann/2": {"p1", "p2"},
		"reach/r/bob/1": {"o3"},
	}, sig.got)
	// A closed run's entry is dropped from the index.
	in, err := rdb.HExists(ctx, openreach.Key(prefix, "ann"), "reach/r/ann/closed").Result()
	require.NoError(t, err)
	require.False(t, in)
}

// A Redis error on the lookup is retried with the commands queued again: the responses are
// delivered once Redis answers, not silently dropped.
func TestRouteResponsesRetriesTheLookup(t *testing.T) {
	env := testenv.Require(t)
	rdb := env.Redis(t)
	ctx := context.Background()
	prefix := testenv.Unique("rr")
	_, err := openreach.Register(ctx, rdb, prefix, "ann", "reach/r/ann/1", openreach.Entry{RuleID: "r", Events: []string{"order_paid"}}, 0, time.Now())
	require.NoError(t, err)
	flaky := &flakyRedis{UniversalClient: rdb, fail: 1}
	sig := &fakeSignaler{got: map[string][]string{}}
	cfg := Config{Redis: flaky, ReachPrefix: prefix, Signaler: sig, Log: slog.New(slog.DiscardHandler)}
	cfg.setDefaults()
	s := &Stage{cfg: cfg}
	require.NoError(t, s.routeResponses(ctx, []event.Event{{EventID: "p1", UserID: "ann", Type: "order_paid", TS: time.Now()}}))
	require.Equal(t, map[string][]string{"reach/r/ann/1": {"p1"}}, sig.got)
	require.Zero(t, flaky.fail, "the first pipeline failed and was retried")
}

var errFlaky = errors.New("connection reset")

// flakyRedis fails the first fail pipeline Execs the way a dropped connection does: the queued
// commands are gone (go-redis empties a pipeline on Exec) and the call errs.
type flakyRedis struct {
	redis.UniversalClient
	fail int
}

func (f *flakyRedis) Pipeline() redis.Pipeliner {
	return &flakyPipe{Pipeliner: f.UniversalClient.Pipeline(), r: f}
}

type flakyPipe struct {
	redis.Pipeliner
	r *flakyRedis
}

func (p *flakyPipe) Exec(ctx context.Context) ([]redis.Cmder, error) {
	if p.r.fail > 0 {
		p.r.fail--
		p.Pipeliner.Discard()
		return nil, errFlaky
	}
	return p.Pipeliner.Exec(ctx)
}
