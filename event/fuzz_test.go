package event_test

import (
	"testing"
	"time"

	"github.com/omegareach/omega/event"
)

// FuzzDecode: any bytes on the topic decode to a valid event or an error, never a panic; a
// decoded event encodes and decodes back to itself (what the CEP stage re-reads is what was
// produced). The corpus is in testdata/fuzz/FuzzDecode (make fuzz adds what it finds).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"event_id":"e1","user_id":"u1","type":"cart_add","item_id":"sku-1","ts":"2026-11-25T10:00:00Z"}`,
		`{"event_id":"e2","item_id":"i9","type":"price_drop","ts":"2026-11-25T10:00:00.123Z","attrs":{"old":10,"new":8.5}}`,
		`{"event_id":"e3","user_id":"u1","type":"push_open","ts":"2026-11-25T10:00:00+02:00","attrs":{"reach_id":"reach/a/u1/k"}}`,
		`{"event_id":"","type":"x"}`, `{}`, `[]`, `null`, `{"ts":"not a time"}`, `{"attrs":{"a":[1,{"b":null}]}}`,
		`{"event_id":"e1","user_id":"u/1","type":"view","ts":"2026-11-25T10:00:00Z"}`, `{"event_id":"e1"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := event.Decode(b)
		if err != nil {
			return
		}
		if err := e.Validate(time.Now()); err != nil {
			t.Fatalf("Decode accepted an invalid event: %v", err)
		}
		out, err := e.Encode()
		if err != nil {
			return // attrs that JSON cannot carry back (e.g. huge numbers) are refused at encode
		}
		e2, err := event.Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if e2.EventID != e.EventID || e2.UserID != e.UserID || e2.Type != e.Type || e2.ItemID != e.ItemID || !e2.TS.Equal(e.TS) {
			t.Fatalf("round trip changed the event: %+v -> %+v", e, e2)
		}
	})
}

// FuzzParseType: any document parses to a type or an error, never a panic; a type that validates
// checks events without panicking, whatever their attributes.
func FuzzParseType(f *testing.F) {
	for _, s := range []string{
		"name: coupon_claimed\nuses: [trigger]\nattrs:\n  - {name: coupon_id, type: string, required: true}\n",
		`{"name":"price_drop","scope":"item","uses":["trigger"],"attrs":[{"name":"new_price","type":"any"}]}`,
		"name: x\nuses: [response, goal]\n", "uses: []\n", "name: [1]\n", "{}", "not yaml: [",
	} {
		f.Add([]byte(s), []byte(`{"coupon_id":"c","new_price":[1,{"a":null}],"x":true}`))
	}
	f.Fuzz(func(t *testing.T, doc, attrs []byte) {
		ty, err := event.ParseType(doc)
		if err != nil || ty.Validate() != nil {
			return
		}
		c, err := event.NewCatalog(ty)
		if err != nil {
			t.Fatalf("a valid type refused by NewCatalog: %v", err)
		}
		e, err := event.Decode([]byte(`{"event_id":"e","user_id":"u","item_id":"i","type":"` + ty.Name + `","ts":"2026-11-25T10:00:00Z","attrs":` + string(attrs) + `}`))
		if err != nil {
			return
		}
		_ = c.Check(&e)
	})
}
