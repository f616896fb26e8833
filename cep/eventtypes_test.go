package cep

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

type nopStarter struct{}

func (nopStarter) Start(context.Context, workflows.Match) error { return nil }

// catalogSource is an event catalogue that changes when the test says so.
type catalogSource struct {
	c   *event.Catalog
	err error
}

func (s *catalogSource) EventTypes(context.Context) (*event.Catalog, error) { return s.c, s.err }

// The stage routes the types the catalogue declares responses or goals, a growth team's own
// included, picks a change up on reload, keeps the last catalogue while the source fails, and
// counts and skips the events of undeclared types, reading the catalogue again first.
func TestStageFollowsTheCatalogue(t *testing.T) {
	src := &catalogSource{}
	s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		Starter: nopStarter{}, EventTypes: src})
	require.NoError(t, err)
	ctx := context.Background()
	require.True(t, s.routed("push_open"), "the default catalogue before the source answered")
	require.False(t, s.routed("coupon_redeemed"))

	src.c = event.Overlay(event.Default(), []event.Type{
		{Name: "coupon_claimed", Uses: []string{event.UseTrigger}},
		{Name: "coupon_redeemed", Uses: []string{event.UseResponse}},
	})
	require.NoError(t, s.loadEventTypes(ctx))
	require.True(t, s.routed("coupon_redeemed"))
	require.False(t, s.routed("coupon_claimed"), "a trigger is not routed")

	src.err = errors.New("database away")
	require.Error(t, s.loadEventTypes(ctx))
	require.True(t, s.routed("coupon_redeemed"), "the last catalogue stays")

	mk := func(typ string, off int64) decoded {
		return decoded{msg: &sarama.ConsumerMessage{Offset: off}, ev: event.Event{EventID: typ, UserID: "u1", Type: typ}}
	}
	before := undeclaredCount(t)
	src.err = nil
	kept := s.dropUndeclared(ctx, []decoded{mk("coupon_claimed", 1), mk("teleport", 2), mk("view", 3), mk("teleport", 4)})
	require.Len(t, kept, 2)
	require.Equal(t, "coupon_claimed", kept[0].ev.Type)
	require.Equal(t, "view", kept[1].ev.Type)
	require.Equal(t, 2.0, undeclaredCount(t)-before)

	// A type declared a moment ago is read again before its event is skipped (at most once a
	// second).
	src.c = event.Overlay(src.c, []event.Type{{Name: "teleport", Uses: []string{event.UseTrigger}}})
	s.refreshed = time.Time{}
	require.Len(t, s.dropUndeclared(ctx, []decoded{mk("teleport", 5)}), 1)
	src.c = event.Overlay(src.c, []event.Type{{Name: "hover", Uses: []string{event.UseTrigger}}})
	require.Empty(t, s.dropUndeclared(ctx, []decoded{mk("hover", 6)}), "not read again within a second")

	// An explicit ResponseTypes wins over the catalogue.
	s.cfg.ResponseTypes = []string{"view"}
	require.True(t, s.routed("view"))
	require.False(t, s.routed("coupon_redeemed"))
}

func undeclaredCount(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, metrics.EventsConsumed.WithLabelValues("undeclared").Write(&m))
	return m.GetCounter().GetValue()
}

// An event of a declared type that breaks its type's contract (a user-scoped type without
// user_id, a required attribute missing) is dead-lettered with the field named, as the API
// refuses it; the batch's other events go on.
func TestStageDeadLettersUnfitEvents(t *testing.T) {
	s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		Starter: nopStarter{}})
	require.NoError(t, err)
	mk := func(e event.Event, off int64) decoded {
		return decoded{msg: &sarama.ConsumerMessage{Topic: "omega.events", Offset: off}, ev: e}
	}
	fit, dead := s.deadUnfit([]decoded{
		mk(event.Event{EventID: "a", UserID: "u1", Type: "cart_add"}, 1),
		mk(event.Event{EventID: "b", ItemID: "sku-1", Type: "cart_add"}, 2),
		mk(event.Event{EventID: "c", UserID: "u1", Type: "message_delivered"}, 3),
		mk(event.Event{EventID: "d", ItemID: "sku-1", Type: "price_drop"}, 4),
	})
	require.Equal(t, []string{"a", "d"}, []string{fit[0].ev.EventID, fit[1].ev.EventID})
	require.Len(t, fit, 2)
	require.Len(t, dead, 2)
	reason := func(m *sarama.ProducerMessage) string {
		for _, h := range m.Headers {
			if string(h.Key) == event.HeaderDLQReason {
				return string(h.Value)
			}
		}
		return ""
	}
	require.Equal(t, "user_id: required: cart_add is user-scoped", reason(dead[0]))
	require.Contains(t, reason(dead[1]), "attrs.reach_id")
}
