package cep

import (
	"errors"
	"testing"
	"time"

	"github.com/omegareach/omega/event"
)

// FuzzParseRule: any rule document parses and validates to a rule or a *RuleError naming the
// field, never a panic; a valid rule compiles and tests events without panicking. The corpus is
// in testdata/fuzz/FuzzParseRule.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		`{"id":"r","steps":[{"type":"cart_add"}],"journey_id":"j"}`,
		`{"id":"r","kind":"sequence","within":"30m","steps":[{"type":"cart_add"},{"type":"order_paid"}],"journey_id":"j"}`,
		`{"id":"r","kind":"absence","within":"30m","steps":[{"type":"cart_add"},{"type":"order_paid"}],"journey_id":"j"}`,
		`{"id":"r","kind":"count","count":3,"within":"10m","steps":[{"type":"view","where":"event.attrs.price > 10"}],"journey_id":"j"}`,
		`{"id":"r","kind":"join","steps":[{"type":"favorite"},{"type":"price_drop"}],"journey_id":"j","within":"720h"}`,
		"kind: absence\nabsent: {type: order_paid}\nwithin: 1d\n",
		"id: r\nsteps:\n  - type: view\n    where: profile.attrs.tier == 'gold'\njourney_id: j\n",
		`{"id":"r","steps":[{"type":"x","where":"event.attrs.a +"}]}`, `{"id":"","steps":[]}`, `not yaml: [`,
	} {
		f.Add([]byte(s))
	}
	cat := Catalog{Journey: func(id string) bool { return id == "j" }, Chains: []string{"default"}}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	evs := []event.Event{
		{EventID: "e1", UserID: "u1", Type: "view", ItemID: "i1", TS: now, Attrs: map[string]any{"price": 12.5}},
		{EventID: "e2", UserID: "u1", Type: "cart_add", ItemID: "i1", TS: now},
		{EventID: "e3", ItemID: "i1", Type: "price_drop", TS: now, Attrs: map[string]any{"new_price": "x"}},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRule(b)
		var re *RuleError
		if err != nil {
			if !errors.As(err, &re) {
				t.Fatalf("parse error is not a *RuleError: %v", err)
			}
			return
		}
		if err := Validate(r, cat); err != nil {
			if !errors.As(err, &re) {
				t.Fatalf("validation error is not a *RuleError: %v", err)
			}
			return
		}
		c, err := compileWith(r, cat)
		if err != nil {
			t.Fatalf("Validate accepted a rule that does not compile: %v", err)
		}
		for i := range evs {
			vars := &condVars{ev: &evs[i], withTS: c.readsTS, profile: map[string]any{"attrs": map[string]any{}}, loaded: true}
			c.matches(&evs[i], vars)
			c.key(&evs[i])
		}
	})
}
