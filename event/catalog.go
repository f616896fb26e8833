package event

import (
	"embed"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/omegareach/omega/internal/spec"
)

// What an event type may be used as. A type declares one or more.
const (
	// UseTrigger: a rule's steps may match it.
	UseTrigger = "trigger"
	// UseResponse: a journey may wait for it (wait_for, branch conditions over responses); the CEP
	// stage routes it to the user's open reaches.
	UseResponse = "response"
	// UseGoal: a journey's goal may end on it (routed like a response, attributed after the run).
	UseGoal = "goal"
	// UseReceipt: a provider's delivery receipt (attrs.reach_id names the reach).
	UseReceipt = "receipt"
)

// Scopes of an event type: whom an event of it is about.
const (
	ScopeUser = "user" // user_id is required
	ScopeItem = "item" // item_id is required; user_id may be empty (a price drop)
)

// Attribute types of a schema; AttrAny (or empty) takes any JSON value.
const (
	AttrString = "string"
	AttrNumber = "number"
	AttrBool   = "bool"
	AttrObject = "object"
	AttrList   = "list"
	AttrAny    = "any"
)

var (
	uses      = []string{UseTrigger, UseResponse, UseGoal, UseReceipt}
	attrTypes = []string{AttrString, AttrNumber, AttrBool, AttrObject, AttrList, AttrAny}
)

// Type is one entry of the event catalogue: a growth team declares its own event types as data
// (YAML or JSON, one type a file), versioned like rules and journeys.
type Type struct {
	Name        string `json:"name"`
	Version     int    `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
	// Scope is user (the default) or item.
	Scope string `json:"scope,omitempty"`
	// Uses are what the type may be used as: trigger, response, goal, receipt.
	Uses []string `json:"uses"`
	// Attrs is the optional schema of the event's attributes. Attributes it does not name are
	// allowed (producers may add before the catalogue knows them); named ones are checked.
	Attrs    []Attr `json:"attrs,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
}

// Attr is one attribute of a type's schema.
type Attr struct {
	Name string `json:"name"`
	// Type is string, number, bool, object, list or any (any when empty).
	Type        string `json:"type,omitempty"`
	Required    bool   `json:"required,omitempty"`
	Description string `json:"description,omitempty"`
}

// Can reports whether t may be used as use.
func (t Type) Can(use string) bool { return slices.Contains(t.Uses, use) }

// AttrNames are the names of the attributes t's schema declares, in its order.
func (t Type) AttrNames() []string {
	names := make([]string, len(t.Attrs))
	for i, a := range t.Attrs {
		names[i] = a.Name
	}
	return names
}

// TypeError names the offending field of an event type and why.
type TypeError struct {
	Name   string
	Field  string
	Reason string
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("event type %q: %s: %s", e.Name, e.Field, e.Reason)
}

// ParseType reads one event type from YAML or JSON; unknown fields are refused.
func ParseType(b []byte) (Type, error) {
	var t Type
	if err := spec.Unmarshal(b, &t); err != nil {
		field, reason := spec.Refusal(err)
		return Type{}, &TypeError{Name: spec.Name(b, "name"), Field: field, Reason: reason}
	}
	return t, nil
}

// LoadTypes reads the event types in path: one file, or every *.yaml, *.yml and *.json in a
// directory, in name order. A parse error names the file.
func LoadTypes(path string) ([]Type, error) { return spec.Load(path, ParseType, typeName) }

func typeName(t Type) string { return t.Name }

// Validate checks t; the error is a *TypeError naming the field.
func (t Type) Validate() error {
	fail := func(field, format string, args ...any) error {
		return &TypeError{Name: t.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case t.Name == "":
		return fail("name", "required")
	case len(t.Name) > maxTypeLen || !isToken(t.Name):
		return fail("name", "must be 1 to 64 characters of a-z, 0-9 and _")
	case t.Scope != "" && t.Scope != ScopeUser && t.Scope != ScopeItem:
		return fail("scope", "%q: want user or item", t.Scope)
	case len(t.Uses) == 0:
		return fail("uses", "name at least one of %s", strings.Join(uses, ", "))
	}
	for i, u := range t.Uses {
		if !slices.Contains(uses, u) {
			return fail(fmt.Sprintf("uses[%d]", i), "%q: want one of %s", u, strings.Join(uses, ", "))
		}
		if slices.Index(t.Uses, u) != i {
			return fail(fmt.Sprintf("uses[%d]", i), "%q is listed twice", u)
		}
	}
	if t.Scope == ScopeItem && (t.Can(UseResponse) || t.Can(UseGoal) || t.Can(UseReceipt)) {
		return fail("uses", "an item-scoped type can only be a trigger: responses, goals and receipts are a user's")
	}
	seen := map[string]bool{}
	for i, a := range t.Attrs {
		f := fmt.Sprintf("attrs[%d]", i)
		switch {
		case a.Name == "" || len(a.Name) > maxTypeLen:
			return fail(f+".name", "required, at most 64 characters")
		case seen[a.Name]:
			return fail(f+".name", "%q is declared twice", a.Name)
		case a.Type != "" && !slices.Contains(attrTypes, a.Type):
			return fail(f+".type", "%q: want one of %s", a.Type, strings.Join(attrTypes, ", "))
		}
		seen[a.Name] = true
	}
	return nil
}

// ValidateNew checks a type being written (applied, drafted, activated, validated offline): Validate,
// and what types stored before these checks may lack, which the catalogue still loads. A delivery
// receipt declares attrs.reach_id, a required string: a receipt without it names no reach and
// would be dropped unseen.
func (t Type) ValidateNew() error {
	if err := t.Validate(); err != nil {
		return err
	}
	if t.Can(UseReceipt) {
		i := slices.IndexFunc(t.Attrs, func(a Attr) bool { return a.Name == AttrReachID })
		if i < 0 || t.Attrs[i].Type != AttrString || !t.Attrs[i].Required {
			return &TypeError{Name: t.Name, Field: "attrs", Reason: fmt.Sprintf(
				"a receipt declares {name: %s, type: string, required: true}: the reach it confirms", AttrReachID)}
		}
	}
	return nil
}

// Catalog is the event catalogue: the declared event types by name. A nil *Catalog is the
// default one (Default).
type Catalog struct {
	types map[string]Type
}

// NewCatalog validates ts and refuses a name declared twice. Disabled types are left out.
func NewCatalog(ts ...Type) (*Catalog, error) {
	c := &Catalog{types: make(map[string]Type, len(ts))}
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		if _, dup := c.types[t.Name]; dup {
			return nil, &TypeError{Name: t.Name, Field: "name", Reason: "declared twice"}
		}
		if !t.Disabled {
			c.types[t.Name] = t
		}
	}
	return c, nil
}

// Overlay is base with ts applied over it: a type of ts replaces base's of the same name, a
// disabled one removes it. Types that do not validate are left out (the store validated them on
// write; this guards against a newer writer).
func Overlay(base *Catalog, ts []Type) *Catalog {
	base = base.orDefault()
	c := &Catalog{types: make(map[string]Type, len(base.types)+len(ts))}
	for n, t := range base.types {
		c.types[n] = t
	}
	for _, t := range ts {
		switch {
		case t.Disabled:
			delete(c.types, t.Name)
		case t.Validate() == nil:
			c.types[t.Name] = t
		}
	}
	return c
}

//go:embed demo/*.yaml
var demoFS embed.FS

// DemoTypes are the event types of the demo catalogue (event/demo), versions 1: the types the
// demo rules and journeys use, and the delivery receipt.
func DemoTypes() []Type {
	ts, err := spec.LoadFS(demoFS, "demo", ParseType, typeName)
	if err != nil {
		panic(err) // embedded and tested: cannot happen
	}
	for i := range ts {
		ts[i].Version = 1
	}
	return ts
}

var defaultCatalog = func() *Catalog {
	c, err := NewCatalog(DemoTypes()...)
	if err != nil {
		panic(err) // embedded and tested: cannot happen
	}
	return c
}()

// Default is the catalogue a system without stored event types runs with: the demo types.
// Stored types are applied over it (Overlay).
func Default() *Catalog { return defaultCatalog }

func (c *Catalog) orDefault() *Catalog {
	if c == nil {
		return defaultCatalog
	}
	return c
}

// Lookup returns the declared type of name.
func (c *Catalog) Lookup(name string) (Type, bool) {
	t, ok := c.orDefault().types[name]
	return t, ok
}

// Has reports whether name is declared.
func (c *Catalog) Has(name string) bool {
	_, ok := c.Lookup(name)
	return ok
}

// Can reports whether name is declared and may be used as use.
func (c *Catalog) Can(name, use string) bool {
	t, ok := c.Lookup(name)
	return ok && t.Can(use)
}

// Routed reports whether the CEP stage routes events of name to the user's open reaches: the
// responses and goals.
func (c *Catalog) Routed(name string) bool {
	t, ok := c.Lookup(name)
	return ok && (t.Can(UseResponse) || t.Can(UseGoal))
}

// Names returns the names of the types that may be used as use (every type when use is ""),
// sorted.
func (c *Catalog) Names(use string) []string {
	var out []string
	for n, t := range c.orDefault().types {
		if use == "" || t.Can(use) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Types returns the declared types by name.
func (c *Catalog) Types() []Type {
	names := c.Names("")
	out := make([]Type, len(names))
	for i, n := range names {
		out[i] = c.orDefault().types[n]
	}
	return out
}

// Check validates e against its type: the type is declared, the field its scope needs is set,
// and the attributes the schema names have their types (required ones present). The error is a
// *FieldError naming the field (type, user_id, item_id, attrs.<name>).
func (c *Catalog) Check(e *Event) error {
	t, ok := c.Lookup(e.Type)
	if !ok {
		return &FieldError{"type", fmt.Sprintf("undeclared event type %q: declare it in the event catalogue (omega events types apply)", e.Type)}
	}
	switch {
	case t.Scope == ScopeItem && e.ItemID == "":
		return &FieldError{"item_id", fmt.Sprintf("required: %s is item-scoped", t.Name)}
	case t.Scope != ScopeItem && e.UserID == "":
		return &FieldError{"user_id", fmt.Sprintf("required: %s is user-scoped", t.Name)}
	}
	for _, a := range t.Attrs {
		v, ok := e.Attrs[a.Name]
		if !ok || v == nil {
			if a.Required {
				return &FieldError{"attrs." + a.Name, fmt.Sprintf("required by %s", t.Name)}
			}
			continue
		}
		if !hasType(v, a.Type) {
			return &FieldError{"attrs." + a.Name, fmt.Sprintf("must be a %s (%s), is %s", a.Type, t.Name, jsonKind(v))}
		}
	}
	if rid, _ := e.Attrs[AttrReachID].(string); t.Can(UseReceipt) && rid == "" {
		return &FieldError{"attrs." + AttrReachID, fmt.Sprintf("required: %s is a delivery receipt, and names the reach it confirms", t.Name)}
	}
	return nil
}

func hasType(v any, typ string) bool {
	switch typ {
	case "", AttrAny:
		return true
	default:
		return jsonKind(v) == typ
	}
}

// jsonKind names the kind of a decoded JSON value as the schema does.
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return AttrString
	case float64, float32, int, int64, int32, uint, uint64, uint32:
		return AttrNumber
	case bool:
		return AttrBool
	case map[string]any:
		return AttrObject
	case []any:
		return AttrList
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}
