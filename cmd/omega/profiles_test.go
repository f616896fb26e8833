package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/store"
)

// A partial import imports the good lines and fails, so a script sees the refused ones by the exit
// status; a clean one succeeds.
func TestProfilesImportFailsOnRefusedLines(t *testing.T) {
	env := testenv.Require(t)
	require.NoError(t, store.Migrate(env.PGURL))
	t.Setenv("OMEGA_PG_URL", env.PGURL)
	t.Setenv("OMEGA_REDIS_ADDR", env.RedisAddr)
	cfg := configFromEnv()
	good, other := testenv.Unique("imp-"), testenv.Unique("imp-")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}

	partial := write("partial.jsonl", `{"user_id":"`+good+`","locale":"en"}`+"\n"+`{"locale":"en"}`+"\n")
	var out bytes.Buffer
	err := runProfiles(context.Background(), cfg, []string{"import", "-f", partial}, &out)
	require.ErrorContains(t, err, "1 of 2 lines refused")
	require.Contains(t, out.String(), "partial.jsonl:2:")
	out.Reset()
	require.NoError(t, runProfiles(context.Background(), cfg, []string{"get", good}, &out), "the good line is in")
	require.Contains(t, out.String(), `"locale": "en"`)

	clean := write("clean.jsonl", `{"user_id":"`+other+`"}`+"\n")
	require.NoError(t, runProfiles(context.Background(), cfg, []string{"import", "-f", clean}, &out))
}

// A journey applied or activated under a rule that routes to it must render that rule's matches:
// a template reading a field the rule's event type does not declare is refused, naming the rule;
// one reading a declared field passes.
func TestJourneyCheckedAgainstItsRules(t *testing.T) {
	env := testenv.Require(t)
	require.NoError(t, store.Migrate(env.PGURL))
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, env.PGURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	typ := testenv.Unique("quote_")
	_, err = eventtype.NewStore(pool).Apply(ctx, event.Type{Name: typ, Uses: []string{event.UseTrigger},
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
	env := testenv.Require(t)
	require.NoError(t, store.Migrate(env.PGURL))
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, env.PGURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	st := eventTypeStore(pool)
	typ := testenv.Unique("quote_")
	_, err = st.Apply(ctx, event.Type{Name: typ, Uses: []string{event.UseTrigger}})
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
