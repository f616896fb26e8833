package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/eventtype"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

const rulesUsage = `usage: omega rules <command> [flags]

  validate -f PATH                      check rule files (a file or a directory of .yaml/.yml/.json)
  apply -f PATH [--draft]               validate all, then store each changed rule as a new version
                                        (and activate it, unless --draft)
  activate ID VERSION                   make a stored version active (a rollback is an older one)
  list                                  the active version of every rule
  get ID [--version N]                  one rule, as JSON
  disable ID                            stop a rule (apply it again to re-enable)
  test -f PATH --events FILE.jsonl      dry run: print what the events would match; touches no real state
  backfill RULE --since 168h [--start]  replay the topic's history through a rule, report its matches
                                        per day (through the API; omega rules backfill for its flags)

flags: -o table|json (output format); validate and test work offline, against the demo journeys
plus --journeys PATH and the default event catalogue plus --types PATH (event type files)
`

// offlineEvents is the default event catalogue with the types in path (none when empty) over it:
// what offline validation checks a team's rules and journeys against.
func offlineEvents(path string) (func() *event.Catalog, error) {
	if path == "" {
		return nil, nil
	}
	ts, err := loadValid(path, event.LoadTypes, func(t event.Type) error { return t.Validate() })
	if err != nil {
		return nil, fmt.Errorf("--types: %w", err)
	}
	c := event.Overlay(event.Default(), ts)
	return func() *event.Catalog { return c }, nil
}

// ruleCatalog checks a rule's journey (and the fields its templates need) against the journey
// store and its event types against the stored catalogue, or against the demo journeys and the
// default catalogue when there is no database (validate and test work offline).
func ruleCatalog(pool *pgxpool.Pool, extra ...journey.Journey) cep.Catalog {
	if pool == nil {
		demo := map[string]journey.Journey{}
		for _, j := range append(journey.Demo(), extra...) {
			demo[j.ID] = j
		}
		return cep.Catalog{Journey: func(id string) bool { _, ok := demo[id]; return ok }, Chains: worker.Chains,
			JourneyFields: func(id string) map[string][]string { j := demo[id]; return j.TemplateFields() }}
	}
	st := journey.NewStore(pool, journeyCatalogFor(pool))
	return cep.Catalog{Journey: journeyExists(st), JourneyFields: journeyFields(st), Chains: worker.Chains,
		Events: eventtype.NewStore(pool).Current}
}

// journeyFields gives the fields a stored journey's templates need from a match.
func journeyFields(st *journey.Store) func(string) map[string][]string {
	return func(id string) map[string][]string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		j, err := st.Active(ctx, id)
		if err != nil {
			return nil // journey_id is checked apart
		}
		return j.TemplateFields()
	}
}

// journeyExists reports whether a journey is stored and enabled.
func journeyExists(st *journey.Store) func(string) bool {
	return func(id string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := st.Active(ctx, id)
		return err == nil
	}
}

// journeyCatalog validates journeys offline: the workers' channels and chains, the default event
// catalogue.
func journeyCatalog() journey.Catalog { return worker.Catalog() }

// journeyCatalogFor validates journeys against the event catalogue stored in pool, and against the
// active rules that route to them (their events must carry what the templates read).
func journeyCatalogFor(pool *pgxpool.Pool) journey.Catalog {
	cat := worker.Catalog()
	events := eventtype.NewStore(pool).Current
	cat.Events = events
	rules := cep.NewRuleStore(pool, cep.Catalog{})
	cat.Routed = func(j journey.Journey) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rs, err := rules.ActiveRules(ctx)
		if err != nil {
			return "" // the rules cannot be read now: the rule side checks on its next apply
		}
		need := j.TemplateFields()
		for _, r := range rs {
			if r.JourneyID == j.ID && !r.Disabled {
				if reason := cep.CheckTemplates(r, events(), need); reason != "" {
					return fmt.Sprintf("rule %s routes here: %s", r.ID, reason)
				}
			}
		}
		return ""
	}
	return cat
}

// rulesFlags: the flags each rules command reads.
var rulesFlags = map[string][]string{
	"validate": {"f", "types", "journeys", "o"},
	"apply":    {"f", "draft", "o"},
	"list":     {"o"},
	"get":      {"version", "o"},
	"disable":  {"o"},
	"activate": {"o"},
	"test":     {"f", "events", "types", "journeys", "o"},
}

func runRules(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, rulesUsage)
		return errors.New("missing rules command")
	}
	if args[0] == "backfill" {
		return runRuleBackfill(ctx, cfg, args[1:], stdout, os.Stderr)
	}
	fs := flag.NewFlagSet("rules "+args[0], flag.ContinueOnError)
	path := fs.String("f", "", "rule file or directory")
	eventsPath := fs.String("events", "", "events, one JSON object per line (test)")
	output := fs.String("o", "table", "output: table or json")
	draft := fs.Bool("draft", false, "apply: store new versions without activating them")
	version := fs.Int("version", 0, "get: a stored version (the active one when 0)")
	typesPath := fs.String("types", "", "validate, test: event type files besides the default catalogue")
	journeysPath := fs.String("journeys", "", "validate, test: journey files besides the demo ones")
	scope := scopeFlags(fs, rulesFlags[args[0]])
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if err := scope(); err != nil {
		return err
	}
	events, err := offlineEvents(*typesPath)
	if err != nil {
		return err
	}
	var extra []journey.Journey
	if *journeysPath != "" {
		jcat := journeyCatalog()
		jcat.Events = events
		if extra, err = loadValid(*journeysPath, journey.Load, func(j journey.Journey) error { return journey.Validate(j, jcat) }); err != nil {
			return fmt.Errorf("--journeys: %w", err)
		}
	}
	cat := ruleCatalog(nil, extra...)
	cat.Events = events
	loadOffline := func() ([]cep.Rule, error) {
		return loadValid(*path, cep.LoadRules, func(r cep.Rule) error { return validateOffline(r, cat) })
	}
	store := func() (*cep.RuleStore, func(), error) {
		pool, err := openPool(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		return cep.NewRuleStore(pool, ruleCatalog(pool)), pool.Close, nil
	}
	switch args[0] {
	case "validate":
		rs, err := loadOffline()
		if err != nil {
			return err
		}
		for _, r := range rs {
			fmt.Fprintf(stdout, "ok  %s\n", r.ID)
		}
		return nil
	case "apply":
		st, done, err := store()
		if err != nil {
			return err
		}
		defer done()
		// Against the stored journeys, not the demo ones: a rule may start any applied journey.
		rs, err := loadValid(*path, cep.LoadRules, st.Validate)
		if err != nil {
			return err
		}
		// What happens to the open windows (pending absences, counts, links) of the version
		// before: a new version that keeps the pattern carries them on.
		type appliedRule struct {
			cep.Applied
			OpenState string
		}
		var applied []appliedRule
		apply := st.Apply
		if *draft {
			apply = st.Draft
		}
		for _, r := range rs {
			a, err := apply(ctx, r)
			if err != nil {
				return err
			}
			ar := appliedRule{Applied: a, OpenState: "-"}
			if a.Status == "updated" || a.Status == "draft" {
				if ar.OpenState, err = openWindowsOf(ctx, st, a); err != nil {
					return err
				}
			}
			applied = append(applied, ar)
		}
		return render(stdout, *output, applied, []string{"RULE", "VERSION", "STATUS", "OPEN WINDOWS"}, func(a appliedRule) []any {
			return []any{a.ID, a.Version, a.Status, a.OpenState}
		})
	case "list", "get", "disable", "activate":
		st, done, err := store()
		if err != nil {
			return err
		}
		defer done()
		switch args[0] {
		case "list":
			rs, err := st.List(ctx)
			if err != nil {
				return err
			}
			return render(stdout, *output, rs, []string{"RULE", "VERSION", "KIND", "JOURNEY", "STATE", "DESCRIPTION"}, func(r cep.Rule) []any {
				state := "active"
				if r.Disabled {
					state = "disabled"
				} else if r.Shadow {
					state = "shadow"
				}
				kind := r.Kind
				if kind == "" {
					kind = cep.KindSingle
				}
				return []any{r.ID, r.Version, kind, r.JourneyID, state, r.Description}
			})
		case "get":
			if fs.NArg() != 1 {
				return errors.New("usage: omega rules get ID")
			}
			r, err := st.Get(ctx, fs.Arg(0))
			if *version != 0 {
				r, err = st.Version(ctx, fs.Arg(0), *version)
			}
			if err != nil {
				if *version != 0 {
					return fmt.Errorf("rule %q version %d: %w", fs.Arg(0), *version, err)
				}
				return fmt.Errorf("rule %q: %w", fs.Arg(0), err)
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		case "activate":
			id, v, err := idVersion(fs, "rules")
			if err != nil {
				return err
			}
			prev, err := st.Get(ctx, id)
			if err != nil && !errors.Is(err, cep.ErrRuleNotFound) {
				return err
			}
			if err := st.Activate(ctx, id, v); err != nil {
				return err
			}
			now, err := st.Version(ctx, id, v)
			if err != nil {
				return err
			}
			// What becomes of the open windows of the version it replaces.
			windows := ""
			switch {
			case prev.Version == 0 || prev.Version == v:
			case prev.StateFrom() == now.StateFrom():
				windows = fmt.Sprintf(" (open windows carried on from v%d)", now.StateFrom())
			default:
				windows = fmt.Sprintf(" (its pattern differs from version %d's: those open windows end)", prev.Version)
			}
			fmt.Fprintf(stdout, "activated %s version %d%s\n", id, v, windows)
			return nil
		default:
			if fs.NArg() != 1 {
				return errors.New("usage: omega rules disable ID")
			}
			if err := st.Disable(ctx, fs.Arg(0)); err != nil {
				return fmt.Errorf("rule %q: %w", fs.Arg(0), err)
			}
			fmt.Fprintf(stdout, "disabled %s\n", fs.Arg(0))
			return nil
		}
	case "test":
		rs, err := loadOffline()
		if err != nil {
			return err
		}
		if *eventsPath == "" {
			return errors.New("--events is required")
		}
		evs, err := readEvents(*eventsPath)
		if err != nil {
			return err
		}
		rdb := cfg.newRedis()
		defer rdb.Close()
		ms, err := cep.DryRun(ctx, rdb, rs, evs)
		if err != nil {
			return err
		}
		if *output == "table" {
			fmt.Fprintf(stdout, "%d events, %d matches\n", len(evs), len(ms))
		}
		return render(stdout, *output, ms, []string{"RULE", "USER", "JOURNEY", "EVENTS"}, func(m workflows.Match) []any {
			return []any{m.RuleID, m.UserID, m.JourneyID, strings.Join(m.EventIDs, ",")}
		})
	default:
		fmt.Fprint(stdout, rulesUsage)
		return fmt.Errorf("unknown rules command %q", args[0])
	}
}

// parseInterspersed parses flags that may come before or after positional arguments
// (omega rules get ID --version 2).
// scopeFlags narrows a flag set that several commands share to the flags one of them reads (all
// when names is nil): its usage lists only those, and the returned check, run after parsing,
// refuses another command's flag rather than ignoring it.
func scopeFlags(fs *flag.FlagSet, names []string) func() error {
	if names == nil {
		return func() error { return nil }
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of omega %s:\n", fs.Name())
		for _, n := range names {
			f := fs.Lookup(n)
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %q)", f.DefValue)
			}
			fmt.Fprintf(fs.Output(), "  -%s\n    \t%s%s\n", f.Name, f.Usage, def)
		}
	}
	return func() error {
		dash := func(n string) string {
			if len(n) == 1 {
				return "-" + n
			}
			return "--" + n
		}
		var stray, takes []string
		fs.Visit(func(f *flag.Flag) {
			if !slices.Contains(names, f.Name) {
				stray = append(stray, dash(f.Name))
			}
		})
		for _, n := range names {
			takes = append(takes, dash(n))
		}
		if len(stray) > 0 {
			return fmt.Errorf("omega %s does not take %s (it takes %s)", fs.Name(), strings.Join(stray, ", "), strings.Join(takes, ", "))
		}
		return nil
	}
}

func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// idVersion reads the ID VERSION arguments of activate.
func idVersion(fs *flag.FlagSet, kind string) (string, int, error) {
	if fs.NArg() != 2 {
		return "", 0, fmt.Errorf("usage: omega %s activate ID VERSION", kind)
	}
	v, err := strconv.Atoi(fs.Arg(1))
	if err != nil || v <= 0 {
		return "", 0, fmt.Errorf("VERSION: want a stored version number, got %q", fs.Arg(1))
	}
	return fs.Arg(0), v, nil
}

// readEvents reads JSONL; a bad line is an error naming its number.
func readEvents(path string) ([]event.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []event.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), event.MaxSize+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := event.Decode([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// render prints rows as an aligned table, or the values as JSON.
func render[T any](w io.Writer, output string, rows []T, header []string, cols func(T) []any) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []T{}
		}
		return enc.Encode(rows)
	}
	if output != "table" {
		return fmt.Errorf("-o %s: want table or json", output)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		vals := cols(r)
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(v)
		}
		fmt.Fprintln(tw, strings.Join(parts, "\t"))
	}
	return tw.Flush()
}

// loadValid reads the files at path (-f) and validates every document, reporting all the invalid
// ones at once.
func loadValid[T any](path string, load func(string) ([]T, error), validate func(T) error) ([]T, error) {
	if path == "" {
		return nil, errors.New("-f is required")
	}
	vs, err := load(path)
	if err != nil {
		return nil, err
	}
	// A refusal names the file, as a decoding error does (a directory's rules are named by ID).
	name := ""
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		name = filepath.Base(path) + ": "
	}
	var errs []error
	for _, v := range vs {
		if err := validate(v); err != nil {
			errs = append(errs, fmt.Errorf("%s%w", name, err))
		}
	}
	return vs, errors.Join(errs...)
}

// openPool brings the schema up to date and connects to PostgreSQL.
func openPool(ctx context.Context, cfg config) (*pgxpool.Pool, error) {
	return store.Open(ctx, cfg.pgURL)
}

// eventTypeStore is the event catalogue that refuses a type applied or activated under the active
// rules and journeys it would invalidate, naming the first: at uses, a rule's trigger no longer
// declared a trigger or a journey's response no longer a response; at attrs, an attribute a
// rule's key or its journey's templates read no longer declared.
func eventTypeStore(pool *pgxpool.Pool) *eventtype.Store {
	st := eventtype.NewStore(pool)
	rules := cep.NewRuleStore(pool, cep.Catalog{})
	journeys := journey.NewStore(pool, worker.Catalog())
	fields := journeyFields(journeys) // a rule's journey's templates read its event's attributes
	st.InUse = func(ctx context.Context, cand *event.Catalog, name string) (string, string) {
		cur, err := st.EventTypes(ctx)
		if err != nil {
			return "", "" // read again on the next apply; the rule and journey sides check their own
		}
		with := func(c *event.Catalog) func() *event.Catalog { return func() *event.Catalog { return c } }
		rs, err := rules.ActiveRules(ctx)
		if err == nil {
			for _, r := range rs {
				if r.Disabled || !r.Uses(name) || cep.Validate(r, cep.Catalog{Events: with(cur), JourneyFields: fields}) != nil {
					continue // another type's rule, or already invalid: not this change's doing
				}
				if err := cep.Validate(r, cep.Catalog{Events: with(cand), JourneyFields: fields}); err != nil {
					var re *cep.RuleError
					return inUseField(errors.As(err, &re) && strings.HasSuffix(re.Field, "type")),
						fmt.Sprintf("active rule %s would no longer validate: %v", r.ID, err)
				}
			}
		}
		js, err := journeys.List(ctx)
		if err == nil {
			for _, j := range js {
				jc := worker.Catalog()
				jc.Events = with(cur)
				if j.Disabled || journey.Validate(j, jc) != nil {
					continue
				}
				jc.Events = with(cand)
				if err := journey.Validate(j, jc); err != nil {
					var je *journey.Error
					return inUseField(!errors.As(err, &je) || je.Field != "templates"),
						fmt.Sprintf("active journey %s would no longer validate: %v", j.ID, err)
				}
			}
		}
		return "", ""
	}
	return st
}

// inUseField is the event type's field a refusal names: uses when what it breaks needs the type
// in a use (a step's or a wait's type), attrs when it reads an attribute.
func inUseField(uses bool) string {
	if uses {
		return "uses"
	}
	return "attrs"
}

// validateOffline validates r against cat, which knows the demo journeys and --journeys' only: a
// journey it does not know may well be on the server, so the rest of the rule is checked first
// (its own errors are the ones to mend), and the refusal says how to bring the journeys.
func validateOffline(r cep.Rule, cat cep.Catalog) error {
	err := cep.Validate(r, cat)
	var re *cep.RuleError
	if !errors.As(err, &re) || re.Field != "journey_id" || !strings.HasPrefix(re.Reason, "unknown journey") {
		return err
	}
	rest := cat
	rest.Journey, rest.JourneyFields = nil, nil
	if rerr := cep.Validate(r, rest); rerr != nil {
		return rerr
	}
	return fmt.Errorf("%w (offline, only the demo journeys are known: pass yours with --journeys DIR)", err)
}

// openWindowsOf says what becomes of the open windows of the active version before a: carried on
// when a keeps its pattern (the rule store set its StateVersion), else they end. For a draft, that
// is what its activation would do now; a draft of a rule with no active version has none.
func openWindowsOf(ctx context.Context, st *cep.RuleStore, a cep.Applied) (string, error) {
	v, err := st.Version(ctx, a.ID, a.Version)
	if err != nil {
		return "", err
	}
	what := "start afresh (pattern changed)"
	if v.StateVersion > 0 {
		what = fmt.Sprintf("carried on from v%d (pattern unchanged)", v.StateVersion)
	}
	if a.Status != "draft" {
		return what, nil
	}
	switch _, err := st.Get(ctx, a.ID); {
	case errors.Is(err, cep.ErrRuleNotFound):
		return "-", nil
	case err != nil:
		return "", err
	}
	return "if activated now: " + what, nil
}
