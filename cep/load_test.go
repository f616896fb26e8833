package cep

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/testenv"
)

func TestDemoRulesValid(t *testing.T) {
	rs := DemoRules()
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
		require.NoError(t, Validate(r, Catalog{Journey: func(id string) bool {
			return id == "cart-reminder" || id == "price-drop" || id == "chat-nudge" || id == "cart-retarget"
		}}), r.ID)
	}
	require.Equal(t, []string{"cart-abandoned", "cart-add", "price-drop-favorited", "viewed-3x-no-chat"}, ids)
}

func TestParseAndValidate(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantField string
	}{
		{name: "yaml count", in: "id: a\nkind: count\nsteps: [{type: view}]\ncount: 3\nwithin: 10m\njourney_id: j\n"},
		{name: "json single", in: `{"id":"a","steps":[{"type":"cart_add"}],"journey_id":"j"}`},
		{name: "days", in: "id: a\nkind: join\nsteps: [{type: favorite}, {type: price_drop}]\nlink_ttl: 7d\njourney_id: j\n"},
		{name: "typo is refused", in: "id: a\nsteps: [{type: view}]\njourney: j\n", wantField: "journey"},
		{name: "bad duration", in: "id: a\nkind: count\nsteps: [{type: view}]\ncount: 3\nwithin: soon\njourney_id: j\n", wantField: "within"},
		{name: "window missing", in: "id: a\nkind: absence\nsteps: [{type: cart_add}]\nabsent: {type: order_paid}\njourney_id: j\n", wantField: "within"},
		{name: "unknown event type", in: "id: a\nsteps: [{type: teleport}]\njourney_id: j\n", wantField: "steps[0].type"},
		{name: "not boolean", in: "id: a\nsteps: [{type: view, where: '1 + 2'}]\njourney_id: j\n", wantField: "steps[0].where"},
		{name: "sequence of one", in: "id: a\nkind: sequence\nsteps: [{type: view}]\nwithin: 1h\njourney_id: j\n", wantField: "steps"},
		{name: "unless on absence", in: "id: a\nkind: absence\nsteps: [{type: cart_add}]\nabsent: {type: order_paid}\nunless: {type: view}\nwithin: 1h\njourney_id: j\n", wantField: "unless"},
		{name: "cooldown missing", in: "id: a\nsteps: [{type: view}]\nreentry: cooldown\njourney_id: j\n", wantField: "cooldown"},
		{name: "bad key", in: "id: a\nsteps: [{type: view}]\nkey: user+price\njourney_id: j\n", wantField: "key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRule([]byte(tt.in))
			if err == nil {
				err = Validate(r, Catalog{})
			}
			if tt.wantField == "" {
				require.NoError(t, err)
				return
			}
			var re *RuleError
			require.True(t, errors.As(err, &re), "want a RuleError, got %v", err)
			require.Equal(t, tt.wantField, re.Field, re.Error())
		})
	}
}

func TestLoadRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("a.yaml", "id: a\nsteps: [{type: view}]\njourney_id: j\n")
	write("b.json", `{"id":"b","steps":[{"type":"view"}],"journey_id":"j"}`)
	write("notes.txt", "ignored")
	rs, err := LoadRules(dir)
	require.NoError(t, err)
	require.Len(t, rs, 2)
	write("c.yml", "id: a\nsteps: [{type: view}]\njourney_id: j\n")
	_, err = LoadRules(dir)
	require.ErrorContains(t, err, "also defined in")
}

func FuzzRuleDocument(f *testing.F) {
	for _, r := range []string{
		"id: a\nkind: count\nsteps: [{type: view, where: 'event.attrs.x > 1.0'}]\ncount: 3\nwithin: 10m\njourney_id: j\n",
		"id: a\nkind: join\nsteps: [{type: favorite}, {type: price_drop}]\njourney_id: j\n",
		"{}",
	} {
		f.Add([]byte(r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRule(b)
		if err != nil {
			return
		}
		c, err := compile(r)
		if err != nil {
			var re *RuleError
			require.True(t, errors.As(err, &re), "validation errors name a field: %v", err)
			return
		}
		// A valid rule evaluates any event without panicking.
		e := event.Event{EventID: "e", UserID: "u", Type: "view", ItemID: "i"}
		vars := varsOf(&e, c.readsTS)
		for i := range c.steps {
			c.steps[i].test(&e, vars)
		}
		c.key(&e)
	})
}

func TestDryRun(t *testing.T) { onRedises(t, testDryRun) }

func testDryRun(t *testing.T, rdb redis.UniversalClient) {
	evs := []event.Event{
		{EventID: "f1", UserID: "alice", Type: "favorite", ItemID: "sku", TS: t0},
		{EventID: "p1", Type: "price_drop", ItemID: "sku", TS: t0.Add(1)},
		{EventID: "a1", UserID: "bob", Type: "cart_add", TS: t0},
	}
	abandon := Rule{ID: "abandon", Kind: KindAbsence, Steps: []Step{{Type: "cart_add"}}, Absent: &Step{Type: "order_paid"}, Within: Duration(3600e9), JourneyID: "j"}
	ms, err := DryRun(context.Background(), rdb, []Rule{demoRule(t, "price-drop-favorited"), abandon}, evs)
	require.NoError(t, err)
	require.Equal(t, []string{"alice/p1", "bob/a1"}, matchKeys(ms))
	require.Zero(t, countKeys(t, rdb, "omega-dryrun-*"), "a dry run leaves no state behind")
}

// Shared join keys expire by event time; a dry run's sample events may be from long ago, and
// still join.
func TestDryRunJoinsOldEvents(t *testing.T) { onRedises(t, testDryRunJoinsOldEvents) }

func testDryRunJoinsOldEvents(t *testing.T, rdb redis.UniversalClient) {
	old := time.Now().Add(-90 * 24 * time.Hour)
	evs := []event.Event{
		{EventID: "f1", UserID: "alice", Type: "favorite", ItemID: "sku", TS: old},
		{EventID: "p1", Type: "price_drop", ItemID: "sku", TS: old.Add(30 * time.Minute)},
	}
	rule := Rule{ID: "drop", Kind: KindJoin, Steps: []Step{{Type: "favorite"}, {Type: "price_drop"}},
		LinkTTL: Duration(time.Hour), JourneyID: "j"}
	ms, err := DryRun(context.Background(), rdb, []Rule{rule}, evs)
	require.NoError(t, err)
	require.Equal(t, []string{"alice/p1"}, matchKeys(ms))
}

// A page of cancelled timers does not end the dry run's draining: the real one after them fires.
func TestDryRunDrainsPastCancelledTimers(t *testing.T) {
	env := testenv.Require(t)
	abandon := Rule{ID: "abandon", Kind: KindAbsence, Steps: []Step{{Type: "cart_add"}}, Absent: &Step{Type: "order_paid"}, Within: Duration(time.Minute), JourneyID: "j"}
	var evs []event.Event
	for i := range 600 {
		u := fmt.Sprintf("paid%d", i)
		evs = append(evs,
			event.Event{EventID: u + "-a", UserID: u, Type: "cart_add", TS: t0},
			event.Event{EventID: u + "-p", UserID: u, Type: "order_paid", TS: t0.Add(time.Second)})
	}
	evs = append(evs, event.Event{EventID: "late-a", UserID: "late", Type: "cart_add", TS: t0.Add(time.Second)})
	ms, err := DryRun(context.Background(), env.Redis(t), []Rule{abandon}, evs)
	require.NoError(t, err)
	require.Equal(t, []string{"late/late-a"}, matchKeys(ms))
}

func demoRule(t testing.TB, id string) Rule {
	t.Helper()
	for _, r := range DemoRules() {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no demo rule %s", id)
	return Rule{}
}

// countKeys counts the keys matching pattern on every node.
func countKeys(t *testing.T, rdb redis.UniversalClient, pattern string) int {
	t.Helper()
	ctx := context.Background()
	var n atomic.Int64 // ForEachMaster runs on the nodes at once
	count := func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, pattern).Result()
		n.Add(int64(len(keys)))
		return err
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		require.NoError(t, cc.ForEachMaster(ctx, count))
	} else {
		require.NoError(t, count(ctx, rdb.(*redis.Client)))
	}
	return int(n.Load())
}
