package cep

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/spec"
)

// Pattern kinds.
const (
	KindSingle   = "single"   // one event with a condition
	KindSequence = "sequence" // A then B (then C...) within T, relaxed contiguity
	KindAbsence  = "absence"  // A then no B within T
	KindCount    = "count"    // N or more A within a sliding window T
	KindJoin     = "join"     // a link event (user, item) then the item's trigger event fans out to the linked users
)

// Re-entry policies: what a second match for the same key does.
const (
	ReentryEvery    = "every"    // every match starts a reach
	ReentryOnce     = "once"     // one reach per key (remembered for OnceTTL)
	ReentryCooldown = "cooldown" // at most one reach per key per Cooldown
)

// OnceTTL is how long a "once" rule remembers a key: every Redis key has a TTL.
const OnceTTL = 365 * 24 * time.Hour

// Rule is a pattern growth teams write as data (YAML or JSON).
type Rule struct {
	ID          string `json:"id"`
	Version     int    `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
	// Kind is one of single, sequence, absence, count, join (single when empty).
	Kind string `json:"kind,omitempty"`
	// Key is what the pattern correlates on: fields joined by "+", each user, item or attrs.<name>
	// ("user" when empty). Join rules always correlate the link on its item.
	Key string `json:"key,omitempty"`
	// Steps: single and count take one, sequence two or more in order, absence one (the A), join
	// two (the link event, then the item-scoped trigger).
	Steps []Step `json:"steps"`
	// Absent is the B that must not follow the A of an absence rule.
	Absent *Step `json:"absent,omitempty"`
	// Count is N for count rules.
	Count int `json:"count,omitempty"`
	// Within is the window T of sequence, absence and count rules.
	Within Duration `json:"within,omitempty"`
	// Unless: no such event of the same key inside the window (count and sequence rules).
	Unless *Step `json:"unless,omitempty"`
	// LinkTTL is how long a join link lives (30 days when zero); MaxFanout bounds the users one
	// trigger reaches (100000 when zero).
	LinkTTL   Duration `json:"link_ttl,omitempty"`
	MaxFanout int      `json:"max_fanout,omitempty"`
	// Reentry is every (default), once or cooldown (with Cooldown).
	Reentry  string   `json:"reentry,omitempty"`
	Cooldown Duration `json:"cooldown,omitempty"`
	// MaxOpen bounds the runs of this rule a user may have open at once (0: no bound); a match
	// beyond it ends at once as suppressed, audited.
	MaxOpen int `json:"max_open,omitempty"`
	// Rollout is the gray rollout: the percentage of users (a stable subset, plus the whitelist)
	// the rule reaches; 0 means everyone.
	Rollout int `json:"rollout,omitempty"`
	// Chain is the filter chain of the journey's sends that name none ("default" when empty).
	Chain string `json:"chain,omitempty"`
	// JourneyID is the journey a match starts.
	JourneyID string `json:"journey_id"`
	// Shadow rules record their matches and start nothing.
	Shadow   bool `json:"shadow,omitempty"`
	Disabled bool `json:"disabled,omitempty"`
	// StateVersion is the version whose pattern state (open windows, counts, pending absences,
	// join links) this version continues; 0: its own. The rule store sets it: a version that
	// changes nothing of the pattern (samePattern) continues the state of the version it follows,
	// so a new description, journey or rollout costs no open window.
	StateVersion int `json:"state_version,omitempty"`
}

// StateFrom is the version that names r's pattern state: its StateVersion, else its own.
func (r Rule) StateFrom() int {
	if r.StateVersion > 0 {
		return r.StateVersion
	}
	return r.Version
}

// samePattern reports whether a and b detect the same pattern over the same state: the fields
// that shape its instances (kind, key, steps and their conditions, absent, unless, count, within,
// the join's link TTL). The others (description, journey, re-entry, open-run bound, rollout,
// chain, fan-out bound, shadow) act on the matches only.
func samePattern(a, b Rule) bool {
	type pattern struct {
		Kind, Key      string
		Steps          []Step
		Absent, Unless *Step
		Count          int
		Within, Link   Duration
	}
	of := func(r Rule) pattern {
		return pattern{r.Kind, r.Key, r.Steps, r.Absent, r.Unless, r.Count, r.Within, r.LinkTTL}
	}
	return reflect.DeepEqual(of(a), of(b))
}

// ContinuedState is the StateVersion a new version r of the rule whose active version is prev
// takes: prev's state when r's pattern is prev's (and prev's own StateVersion when r is prev's
// content unchanged, so the store sees no change), else its own (0).
func ContinuedState(prev, r Rule) int {
	if !samePattern(prev, r) {
		return 0
	}
	a, b := prev, r
	a.Version, a.Disabled, b.Version, b.Disabled, b.StateVersion = 0, false, 0, false, prev.StateVersion
	if reflect.DeepEqual(a, b) {
		return prev.StateVersion
	}
	return prev.StateFrom()
}

// Step is one event of a pattern: its type and an optional CEL condition over `event`.
type Step struct {
	Type  string `json:"type"`
	Where string `json:"where,omitempty"`
}

// Duration reads "10m", "24h" or "30d".
type Duration = spec.Duration

// RuleError names the offending field of a rule and why.
type RuleError struct {
	RuleID string
	Field  string
	Reason string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("rule %q: %s: %s", e.RuleID, e.Field, e.Reason)
}

// ParseRule reads one rule from YAML or JSON; unknown fields are refused so a typo is not silently
// ignored.
func ParseRule(b []byte) (Rule, error) {
	var r Rule
	if err := spec.Unmarshal(b, &r); err != nil {
		field, reason := spec.Refusal(err)
		return Rule{}, &RuleError{RuleID: spec.Name(b, "id"), Field: field, Reason: reason}
	}
	return r, nil
}

// Catalog is what a rule is validated against.
type Catalog struct {
	// Events gives the event catalogue the rule's steps must use (event.Default when nil, or
	// when it returns nil): a step's type must be declared a trigger, an absent or unless step's
	// type declared.
	Events func() *event.Catalog
	// Journey reports whether a journey exists (any when nil).
	Journey func(id string) bool
	// JourneyFields gives, by template, the fields a journey's templates need from the match's
	// attrs (journey.Journey.TemplateFields; not checked when nil): when the event that completes
	// the rule's match has an attribute schema, each must be one of its attributes.
	JourneyFields func(id string) map[string][]string
	// Chains are the filter chains a rule may name (any when nil).
	Chains []string
	// anyType skips the event types: the CEP stage runs what the store validated on write, even
	// after the catalogue dropped a type.
	anyType bool
}

func (c Catalog) events() *event.Catalog {
	if c.Events == nil {
		return nil // the default catalogue
	}
	return c.Events()
}

// Limits of one rule.
const (
	maxSteps  = 8
	maxWindow = 31 * 24 * time.Hour
)

type compiledStep struct {
	Step
	prog cel.Program // nil: no condition
	// native decides the condition without CEL where it can (fastcond.go); nil: CEL only.
	native nativeCond
}

type compiledRule struct {
	Rule
	keyFields []string
	steps     []compiledStep
	absent    *compiledStep
	unless    *compiledStep
	types     map[string]bool // every type the rule reacts to
	// needsProfile is set when a condition reads the user's profile: the stage loads the
	// profiles of the batch's users for it.
	needsProfile bool
	// hasCond is set when any step has a condition: only then are an event's CEL variables built;
	// readsTS when a condition may read event.ts.
	hasCond, readsTS bool
	// instPrefix begins the keys of the rule's pattern instances (rule:vN:).
	instPrefix string
}

// Uses reports whether one of r's steps (absent and unless included) is of event type typ.
func (r Rule) Uses(typ string) bool {
	for _, s := range r.Steps {
		if s.Type == typ {
			return true
		}
	}
	return (r.Absent != nil && r.Absent.Type == typ) || (r.Unless != nil && r.Unless.Type == typ)
}

// Validate checks r against cat and compiles it; the error is a *RuleError naming the field.
func Validate(r Rule, cat Catalog) error {
	_, err := compileWith(r, cat)
	return err
}

func compile(r Rule) (compiledRule, error) { return compileWith(r, Catalog{anyType: true}) }

func compileWith(r Rule, cat Catalog) (compiledRule, error) {
	fail := func(field, format string, args ...any) (compiledRule, error) {
		return compiledRule{}, &RuleError{RuleID: r.ID, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if r.Kind == "" {
		r.Kind = KindSingle
	}
	if r.Key == "" {
		r.Key = "user"
	}
	if r.Reentry == "" {
		r.Reentry = ReentryEvery
	}
	if r.Kind == KindJoin {
		if r.LinkTTL == 0 {
			r.LinkTTL = Duration(30 * 24 * time.Hour)
		}
		if r.MaxFanout == 0 {
			r.MaxFanout = 100000
		}
	}
	var types *event.Catalog
	if !cat.anyType {
		types = cat.events()
	}
	switch {
	case r.ID == "":
		return fail("id", "required")
	case len(r.ID) > 64 || strings.ContainsAny(r.ID, "/{}: "):
		return fail("id", "at most 64 characters, without '/', '{', '}', ':' or spaces")
	case r.JourneyID == "":
		return fail("journey_id", "required")
	case cat.Journey != nil && !cat.Journey(r.JourneyID):
		return fail("journey_id", "unknown journey %q", r.JourneyID)
	case r.Chain != "" && cat.Chains != nil && !slices.Contains(cat.Chains, r.Chain):
		return fail("chain", "unknown filter chain %q (known: %s)", r.Chain, strings.Join(cat.Chains, ", "))
	}
	wantSteps := map[string][2]int{KindSingle: {1, 1}, KindCount: {1, 1}, KindAbsence: {1, 1}, KindJoin: {2, 2}, KindSequence: {2, maxSteps}}
	bounds, ok := wantSteps[r.Kind]
	if !ok {
		return fail("kind", "unknown kind %q (single, sequence, absence, count or join)", r.Kind)
	}
	if len(r.Steps) < bounds[0] || len(r.Steps) > bounds[1] {
		if bounds[0] == bounds[1] {
			return fail("steps", "a %s rule has exactly %d step(s), got %d", r.Kind, bounds[0], len(r.Steps))
		}
		return fail("steps", "a %s rule has %d to %d steps, got %d", r.Kind, bounds[0], bounds[1], len(r.Steps))
	}
	needsWindow := r.Kind == KindSequence || r.Kind == KindAbsence || r.Kind == KindCount
	switch {
	case needsWindow && r.Within <= 0:
		return fail("within", "required for a %s rule", r.Kind)
	case r.Within.D() > maxWindow:
		return fail("within", "at most %s", maxWindow)
	case r.Kind == KindCount && r.Count < 1:
		return fail("count", "required for a count rule (at least 1)")
	case r.Kind != KindCount && r.Count != 0:
		return fail("count", "only count rules take a count")
	case r.Kind == KindAbsence && r.Absent == nil:
		return fail("absent", "required for an absence rule")
	case r.Kind != KindAbsence && r.Absent != nil:
		return fail("absent", "only absence rules take an absent step")
	case r.Unless != nil && r.Kind != KindCount && r.Kind != KindSequence:
		return fail("unless", "only count and sequence rules take an unless clause")
	case r.Reentry != ReentryEvery && r.Reentry != ReentryOnce && r.Reentry != ReentryCooldown:
		return fail("reentry", "unknown policy %q (every, once or cooldown)", r.Reentry)
	case r.Reentry == ReentryCooldown && r.Cooldown <= 0:
		return fail("cooldown", "required with reentry: cooldown")
	case r.MaxOpen < 0:
		return fail("max_open", "must not be negative")
	case r.Rollout < 0 || r.Rollout > 100:
		return fail("rollout", "a percentage: 0 (everyone) to 100")
	}
	c := compiledRule{Rule: r, types: map[string]bool{}, instPrefix: r.ID + ":v" + strconv.Itoa(r.StateFrom()) + ":"}
	for i, f := range strings.Split(r.Key, "+") {
		f = strings.TrimSpace(f)
		if f != "user" && f != "item" && !(strings.HasPrefix(f, "attrs.") && len(f) > len("attrs.")) {
			return fail("key", "part %d is %q: want user, item or attrs.<name>", i, f)
		}
		c.keyFields = append(c.keyFields, f)
	}
	compileStep := func(field string, s Step) (compiledStep, error) {
		if s.Type == "" {
			return compiledStep{}, &RuleError{r.ID, field + ".type", "required"}
		}
		if err := checkType(types, cat.anyType, s.Type, strings.HasPrefix(field, "steps[")); err != "" {
			return compiledStep{}, &RuleError{r.ID, field + ".type", err}
		}
		c.types[s.Type] = true
		cs := compiledStep{Step: s}
		if s.Where == "" {
			return cs, nil
		}
		ast, iss := celEnv.Compile(s.Where)
		if iss.Err() != nil {
			return compiledStep{}, &RuleError{r.ID, field + ".where", iss.Err().Error()}
		}
		if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
			return compiledStep{}, &RuleError{r.ID, field + ".where", "must be boolean, is " + ast.OutputType().String()}
		}
		attrKind := func(path, attr string) string {
			if path != "event.attrs" || types == nil {
				return ""
			}
			t, _ := types.Lookup(s.Type)
			for _, a := range t.Attrs {
				if a.Name == attr {
					return a.Type
				}
			}
			return ""
		}
		// On validation only: the stage compiles what was validated on write (anyType), so a rule
		// stored before this check runs as it did.
		if err := spec.CheckCondition(ast, conditionFields, attrKind); err != nil && !cat.anyType {
			return compiledStep{}, &RuleError{r.ID, field + ".where", err.Error()}
		}
		prog, err := celEnv.Program(ast)
		if err != nil {
			return compiledStep{}, &RuleError{r.ID, field + ".where", err.Error()}
		}
		cs.prog = prog
		cs.native = compileNative(ast)
		c.hasCond = true
		if readsProfile.MatchString(s.Where) {
			c.needsProfile = true
		}
		if readsTS.MatchString(s.Where) {
			c.readsTS = true
		}
		return cs, nil
	}
	for i, s := range r.Steps {
		cs, err := compileStep(fmt.Sprintf("steps[%d]", i), s)
		if err != nil {
			return compiledRule{}, err
		}
		c.steps = append(c.steps, cs)
	}
	if !cat.anyType {
		if reason := checkKeyAttrs(r, c.keyFields, types); reason != "" {
			return fail("key", "%s", reason)
		}
	}
	if r.Kind == KindJoin && !cat.anyType {
		if t, ok := types.Lookup(r.Steps[1].Type); ok && t.Scope != event.ScopeItem {
			return fail("steps[1].type", "%q is user-scoped: a join's trigger is an item's event (scope: item)", t.Name)
		}
	}
	if r.Kind == KindJoin && r.Steps[0].Type == "favorite" && (cat.anyType || types.Has("unfavorite")) {
		c.types["unfavorite"] = true // an unfavourite removes the link
	}
	if !cat.anyType && cat.JourneyFields != nil {
		if reason := CheckTemplates(r, types, cat.JourneyFields(r.JourneyID)); reason != "" {
			return fail("journey_id", "%s", reason)
		}
	}
	for _, opt := range []struct {
		field string
		step  *Step
		dst   **compiledStep
	}{{"absent", r.Absent, &c.absent}, {"unless", r.Unless, &c.unless}} {
		if opt.step == nil {
			continue
		}
		cs, err := compileStep(opt.field, *opt.step)
		if err != nil {
			return compiledRule{}, err
		}
		*opt.dst = &cs
	}
	return c, nil
}

// checkType says why typ may not be a rule's step ("" when it may): a pattern step needs a type
// declared a trigger, an absent or unless step a declared type.
func checkType(cat *event.Catalog, anyType bool, typ string, trigger bool) string {
	t, ok := cat.Lookup(typ)
	switch {
	case anyType:
		return ""
	case !ok && cat == nil:
		// Offline (omega rules validate|test): the stored catalogue is not read.
		return fmt.Sprintf("unknown event type %q: not in the default event catalogue (pass your team's types with --types DIR)", typ)
	case !ok:
		return fmt.Sprintf("unknown event type %q: not in the event catalogue (omega events types list)", typ)
	case trigger && !t.Can(event.UseTrigger):
		return fmt.Sprintf("%q is not declared a trigger (its uses: %s)", typ, strings.Join(t.Uses, ", "))
	}
	return ""
}

// checkKeyAttrs says why r's key cannot correlate its events ("" when it can): an attrs.<name>
// part that a type it takes (a step's, absent's, unless') declares no such attribute of. A type
// without a schema may carry anything, so it is not checked; an attribute it declares optional is
// allowed, and its events without it are counted (omega_cep_unkeyed_events_total).
func checkKeyAttrs(r Rule, fields []string, types *event.Catalog) string {
	steps := slices.Clone(r.Steps)
	for _, s := range []*Step{r.Absent, r.Unless} {
		if s != nil {
			steps = append(steps, *s)
		}
	}
	for _, f := range fields {
		name, ok := strings.CutPrefix(f, "attrs.")
		if !ok {
			continue
		}
		for _, s := range steps {
			t, ok := types.Lookup(s.Type)
			if !ok || len(t.Attrs) == 0 {
				continue
			}
			if declared := t.AttrNames(); !slices.Contains(declared, name) {
				return fmt.Sprintf("%s: %s declares no attribute %q (its attrs: %s), so its events have no key", f, t.Name, name,
					strings.Join(declared, ", "))
			}
		}
	}
	return ""
}

// matchType is the type of the event whose attrs a match of r carries (the one that completes it).
func matchType(r Rule) string {
	switch r.Kind {
	case KindSequence:
		return r.Steps[len(r.Steps)-1].Type
	case KindJoin:
		return r.Steps[1].Type
	default:
		return r.Steps[0].Type
	}
}

// CheckTemplates says why the journey's templates, which need these fields (journey.Journey.
// TemplateFields), cannot render over r's matches ("" when they can): a field they need that the
// matching event's attribute schema does not declare. A type without a schema may carry anything,
// so it is not checked. A rule's validation asks it of its journey; a journey applied or activated
// later, of the rules that route to it.
func CheckTemplates(r Rule, cat *event.Catalog, need map[string][]string) string {
	t, ok := cat.Lookup(matchType(r))
	if !ok || len(t.Attrs) == 0 {
		return ""
	}
	declared := t.AttrNames()
	ids := make([]string, 0, len(need))
	for id := range need {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		for _, f := range need[id] {
			if !slices.Contains(declared, f) {
				return fmt.Sprintf("journey %q: template %s reads .%s, which %s does not declare (its attrs: %s) and the template gives no default",
					r.JourneyID, id, f, t.Name, strings.Join(declared, ", "))
			}
		}
	}
	return ""
}

var celEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("profile", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(err)
	}
	return env
}()

// test reports whether e satisfies the step. A condition that fails at run time (a missing attr, a
// type mismatch) is no match, not an error: one odd event must not stall the partition.
func (s *compiledStep) test(e *event.Event, vars *condVars) bool {
	if e.Type != s.Type {
		return false
	}
	if s.prog == nil {
		return true
	}
	if s.native != nil {
		switch s.native.decide(e) {
		case holds:
			return true
		case fails:
			return false
		}
	}
	out, _, err := s.prog.Eval(vars.get())
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// matches reports whether e satisfies a single-event rule.
func (c *compiledRule) matches(e *event.Event, vars *condVars) bool {
	return e.UserID != "" && len(c.steps) > 0 && c.steps[0].test(e, vars)
}

// key returns the correlation key of e, or false when e lacks one of its fields.
func (c *compiledRule) key(e *event.Event) (string, bool) {
	if len(c.keyFields) == 1 && c.keyFields[0] == "user" { // the common case, without allocating
		return e.UserID, e.UserID != ""
	}
	b, ok := c.appendKey(nil, e)
	return string(b), ok
}

// appendKey appends e's correlation key (its fields joined by "|") to b; false when e lacks one.
func (c *compiledRule) appendKey(b []byte, e *event.Event) ([]byte, bool) {
	for i, f := range c.keyFields {
		if i > 0 {
			b = append(b, '|')
		}
		n := len(b)
		switch f {
		case "user":
			b = append(b, e.UserID...)
		case "item":
			b = append(b, e.ItemID...)
		default:
			a, ok := e.Attrs[strings.TrimPrefix(f, "attrs.")]
			if !ok {
				return b, false
			}
			b = fmt.Append(b, a)
		}
		if len(b) == n {
			return b, false
		}
	}
	return b, true
}

// readsProfile spots a condition that reads the profile (a false positive only costs a lookup).
var readsProfile = regexp.MustCompile(`\bprofile\b`)

// conditionFields are what a rule's conditions read (celVars).
var conditionFields = spec.Fields{
	"event":   {"event_id": "string", "user_id": "string", "type": "string", "item_id": "string", "ts": "string", "attrs": "map"},
	"profile": {"time_zone": "string", "locale": "string", "attrs": "map"},
}

// readsTS spots a condition that reads the event's ts (a false positive only costs formatting it).
var readsTS = regexp.MustCompile(`\bts\b`)

// noProfile is what a condition reads for a user without a profile (or when none was loaded).
var noProfile = map[string]any{"time_zone": "", "locale": "", "attrs": map[string]any{}}

// celVars is what the conditions on e read; event.ts only when withTS (formatting it cost more
// than the rest of the variables, and few conditions read it).
func celVars(e *event.Event, withTS bool) map[string]any {
	attrs := e.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	ev := map[string]any{"event_id": e.EventID, "user_id": e.UserID, "type": e.Type, "item_id": e.ItemID, "attrs": attrs}
	if withTS {
		ev["ts"] = e.TS.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{"event": ev, "profile": noProfile}
}
