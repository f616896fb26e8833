package event

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeFast: whatever the bytes, the fast path either declines or decodes exactly what
// json.Unmarshal decodes (and only what it accepts).
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"event_id":"e1","user_id":"u1","type":"cart_add","item_id":"sku-1","ts":"2026-11-25T10:00:00Z"}`,
		`{"event_id":"e2","item_id":"i9","type":"price_drop","ts":"2026-11-25T10:00:00.123Z","attrs":{"old":10,"new":8.5}}`,
		` { "event_id" : "e3" , "user_id":"u1","type":"push_open","ts":"2026-11-25T10:00:00+02:00","attrs":{"reach_id":"reach/a/u1/k","n":[1,{"x":"}"}]}} `,
		`{"attrs":{"a":1},"attrs":{"b":2}}`, `{"attrs":{"a":1},"attrs":null}`, `{"type":"a","type":"b"}`, `{"Type":"a"}`,
		`{"event_id":"e\u0031"}`, `{"ts":null}`, `{"ts":"2026-13-25T10:00:00Z"}`, `{"attrs":[1]}`, `{}`, `{} {}`, `{"a":1}`,
		"{\"user_id\":\"\xff\"}", `{"attrs":{"a":"\"}"}}`, `{"attrs":{"a":1}}}`, `{"event_id":1}`, `{"event_id":"e1",}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Event
		if !decodeFast(b, &fast) {
			return
		}
		var want Event
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("the fast path accepted what json.Unmarshal refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q: fast %+v, json.Unmarshal %+v", b, fast, want)
		}
	})
}
