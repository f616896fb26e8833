package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/store"
)

// migratedPool is a pool on the stack's database, migrated.
func migratedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	env := testenv.Require(t)
	require.NoError(t, store.Migrate(env.PGURL))
	pool, err := pgxpool.New(context.Background(), env.PGURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// A journey applied or activated under a rule that routes to it must render that rule's matches:
// a template reading a field the rule's event type does not declare is refused, naming the rule;
// one reading a declared field passes.
func TestJourneyCheckedAgainstItsRules(t *testing.T) {
	ctx := context.Background()
	pool := migratedPool(t)

	typ := testenv.Unique("quote_")
	_, err := eventtype.NewStore(pool).Apply(ctx, event.Type{Name: typ, Uses: []string{event.UseTrigger},
		Attrs: []event.Attr{{Name: "amount", Type: "number"}}})
	require.NoError(t, err)
	jid, rid := testenv.Unique("quote-followup-"), testenv.Unique("quote-requested-")
	_, err = cep.NewRuleStore(pool, cep.Catalog{Events: eventtype.NewStore(pool).Current}).Apply(ctx, cep.Rule{ID: rid, Steps: []cep.Step{{Type: typ}}, JourneyID: jid})
	require.NoError(t, err)

	quote := func(body string) journey.Journey {
		return journey.Journey{ID: jid, Templates: map[string]journey.Template{"q_push": {Title: "Your quote", Body: body}},
			Steps: []journey.Step{{ID: "push", Send: &journey.Send{Channel: "push", Template: "q_push"}}}}
	}
	cat := journeyCatalogFor(pool)
	require.NoError(t, journey.Validate(quote("{{.amount}} EUR"), cat))
	err = journey.Validate(quote("code {{.quote_code}}"), cat)
	var je *journey.Error
	require.ErrorAs(t, err, &je)
	require.Equal(t, "templates", je.Field)
	require.Contains(t, je.Reason, "rule "+rid+" routes here")
	require.Contains(t, je.Reason, "template q_push reads .quote_code, which "+typ+" does not declare")
	require.NoError(t, journey.Validate(quote("code {{.quote_code}}"), journeyCatalog()), "offline, without the stored rules")
}

// An event type applied so that an active rule would no longer validate (its trigger no longer
// declared a trigger) is refused, naming the rule; a change that keeps it valid is applied.
func TestEventTypeInUse(t *testing.T) {
	ctx := context.Background()
	pool := migratedPool(t)

	st := eventTypeStore(pool)
	typ := testenv.Unique("quote_")
	_, err := st.Apply(ctx, event.Type{Name: typ, Uses: []string{event.UseTrigger}})
	require.NoError(t, err)
	rid := testenv.Unique("quote-requested-")
	_, err = cep.NewRuleStore(pool, cep.Catalog{Events: st.Current}).Apply(ctx, cep.Rule{ID: rid, Steps: []cep.Step{{Type: typ}}, JourneyID: "j"})
	require.NoError(t, err)

	_, err = st.Apply(ctx, event.Type{Name: typ, Uses: []string{event.UseResponse}})
	var te *event.TypeError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "uses", te.Field)
	require.Contains(t, te.Reason, "active rule "+rid+" would no longer validate")
	_, err = st.Apply(ctx, event.Type{Name: typ, Uses: []string{event.UseTrigger, event.UseResponse}})
	require.NoError(t, err, "still a trigger")
	require.NoError(t, st.Disable(ctx, typ), "disabling is the kill switch, not checked")
}

// An event type applied so that an attribute an active rule keys on, or its journey's templates
// read, is no longer declared is refused at attrs, naming the rule (before, the events then
// matched nothing and left no trace).
func TestEventTypeAttrsInUse(t *testing.T) {
	ctx := context.Background()
	pool := migratedPool(t)

	st := eventTypeStore(pool)
	quote := func(attrs ...string) event.Type {
		typ := event.Type{Name: "", Uses: []string{event.UseTrigger}, Attrs: []event.Attr{{Name: "amount", Type: "number"}}}
		for _, a := range attrs {
			typ.Attrs = append(typ.Attrs, event.Attr{Name: a, Type: event.AttrString, Required: true})
		}
		return typ
	}
	keyed, read := testenv.Unique("quote_"), testenv.Unique("quote_")
	for _, name := range []string{keyed, read} {
		typ := quote("quote_id")
		typ.Name = name
		_, err := st.Apply(ctx, typ)
		require.NoError(t, err)
	}
	jid := testenv.Unique("quote-hook-")
	_, err := journey.NewStore(pool, journeyCatalogFor(pool)).Apply(ctx, journey.Journey{ID: jid,
		Templates: map[string]journey.Template{"q": {Title: "Your quote", Body: "{{.quote_id}}"}},
		Steps:     []journey.Step{{ID: "push", Send: &journey.Send{Channel: "push", Template: "q"}}}})
	require.NoError(t, err)
	rules := cep.NewRuleStore(pool, cep.Catalog{Events: st.Current})
	byKey, byTemplate := testenv.Unique("quote-keyed-"), testenv.Unique("quote-read-")
	_, err = rules.Apply(ctx, cep.Rule{ID: byKey, Key: "user+attrs.quote_id", Steps: []cep.Step{{Type: keyed}}, JourneyID: "j"})
	require.NoError(t, err)
	_, err = rules.Apply(ctx, cep.Rule{ID: byTemplate, Steps: []cep.Step{{Type: read}}, JourneyID: jid})
	require.NoError(t, err)

	for name, rid := range map[string]string{keyed: byKey, read: byTemplate} {
		renamed := quote("quote_ref")
		renamed.Name = name
		_, err = st.Apply(ctx, renamed)
		var te *event.TypeError
		require.ErrorAs(t, err, &te, name)
		require.Equal(t, "attrs", te.Field)
		require.Contains(t, te.Reason, "active rule "+rid+" would no longer validate")
		kept := quote("quote_id", "quote_ref")
		kept.Name = name
		_, err = st.Apply(ctx, kept)
		require.NoError(t, err, "still declares quote_id")
	}
}

// Offline, a journey only the server knows does not hide the rule's own errors, and its refusal
// says how to bring the journeys (found from outside: the real error was hidden behind it).
func TestValidateOffline(t *testing.T) {
	cat := ruleCatalog(nil)
	bad := cep.Rule{ID: "t1", Steps: []cep.Step{{Type: "cart_add", Where: "event.usr == 1"}}, JourneyID: "server-only"}
	require.ErrorContains(t, validateOffline(bad, cat), "steps[0].where: event has no field usr")
	good := cep.Rule{ID: "t2", Steps: []cep.Step{{Type: "cart_add"}}, JourneyID: "server-only"}
	require.ErrorContains(t, validateOffline(good, cat), `unknown journey "server-only" (offline, only the demo journeys are known: pass yours with --journeys DIR)`)
	good.JourneyID = "cart-reminder"
	require.NoError(t, validateOffline(good, cat))
}

// A rule applied again with only its description changed continues its pattern state (the
// version's StateVersion names the first); applied again unchanged it is unchanged; a new window
// starts afresh; a user's own state_version is ignored.
func TestRuleVersionsContinueState(t *testing.T) {
	ctx := context.Background()
	rules := cep.NewRuleStore(migratedPool(t), cep.Catalog{})
	id := testenv.Unique("abandon-")
	r := cep.Rule{ID: id, Kind: cep.KindAbsence, Steps: []cep.Step{{Type: "cart_add"}}, Absent: &cep.Step{Type: "order_paid"},
		Within: cep.Duration(30 * time.Minute), JourneyID: "j", StateVersion: 7}
	applied := func(r cep.Rule, wantVersion int, wantStatus string, wantState int) {
		t.Helper()
		a, err := rules.Apply(ctx, r)
		require.NoError(t, err)
		require.Equal(t, wantVersion, a.Version)
		require.Equal(t, wantStatus, a.Status)
		got, err := rules.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, wantState, got.StateVersion)
	}
	applied(r, 1, "created", 0)
	r.Description = "carts left behind"
	applied(r, 2, "updated", 1)
	applied(r, 2, "unchanged", 1)
	r.JourneyID = "j2"
	applied(r, 3, "updated", 1)
	r.Within = cep.Duration(time.Hour)
	applied(r, 4, "updated", 0)
	r.Description = "an hour now"
	applied(r, 5, "updated", 4)
}

// omega rules apply says what becomes of the open windows: carried on when the pattern is kept,
// started afresh when it changed.
func TestRulesApplySaysWhatBecomesOfOpenWindows(t *testing.T) {
	pool := migratedPool(t)
	cfg := config{pgURL: testenv.Require(t).PGURL}
	id := testenv.Unique("views-")
	var j journey.Journey
	for _, d := range journey.Demo() {
		if d.ID == "cart-reminder" {
			j = d
		}
	}
	j.ID = id
	_, err := journey.NewStore(pool, journeyCatalogFor(pool)).Apply(context.Background(), j)
	require.NoError(t, err)
	doc := func(within, desc string) string {
		path := filepath.Join(t.TempDir(), "rule.yaml")
		require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf("id: %s\nkind: count\nsteps: [{type: view}]\ncount: 3\nwithin: %s\ndescription: %s\njourney_id: %s\n",
			id, within, desc, id)), 0o600))
		return path
	}
	apply := func(path string) string {
		var out bytes.Buffer
		require.NoError(t, runRules(context.Background(), cfg, []string{"apply", "-f", path}, &out))
		return out.String()
	}
	require.Contains(t, apply(doc("10m", "a")), "created  -")
	require.Contains(t, apply(doc("10m", "b")), "updated  carried on from v1 (pattern unchanged)")
	require.Contains(t, apply(doc("20m", "b")), "updated  start afresh (pattern changed)")

	// A draft says what its activation would do now.
	draft := func(path string) string {
		var out bytes.Buffer
		require.NoError(t, runRules(context.Background(), cfg, []string{"apply", "--draft", "-f", path}, &out))
		return out.String()
	}
	require.Contains(t, draft(doc("20m", "c")), "if activated now: carried on from v3 (pattern unchanged)")
	require.Contains(t, draft(doc("30m", "c")), "if activated now: start afresh (pattern changed)")
	// A draft of a rule with no active version: no open windows to carry on or end.
	newID := id + "-new"
	first := filepath.Join(t.TempDir(), "first.yaml")
	require.NoError(t, os.WriteFile(first, []byte(fmt.Sprintf("id: %s\nkind: count\nsteps: [{type: view}]\ncount: 3\nwithin: 10m\njourney_id: %s\n",
		newID, id)), 0o600))
	require.Regexp(t, `(?m)^`+regexp.QuoteMeta(newID)+`\s+1\s+draft\s+-\s*$`, draft(first))

	// Activating an older version says the same.
	activate := func(v string) string {
		var out bytes.Buffer
		require.NoError(t, runRules(context.Background(), cfg, []string{"activate", id, v}, &out))
		return out.String()
	}
	require.Equal(t, "activated "+id+" version 2 (its pattern differs from version 3's: those open windows end)\n", activate("2"))
	require.Equal(t, "activated "+id+" version 1 (open windows carried on from v1)\n", activate("1"))
	require.Equal(t, "activated "+id+" version 1\n", activate("1"))
}
