package event_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantField string // empty: valid
		wantDec   bool   // undecodable
	}{
		{name: "valid", in: `{"event_id":"e1","user_id":"u1","type":"cart_add","item_id":"i1","ts":"2026-11-24T10:00:00Z","attrs":{"price":12.5}}`},
		{name: "item scoped", in: `{"event_id":"e1","type":"price_drop","item_id":"i1","ts":"2026-11-24T10:00:00Z"}`},
		{name: "unknown field ignored", in: `{"event_id":"e1","user_id":"u1","type":"view","ts":"2026-11-24T10:00:00Z","x":1}`},
		{name: "not json", in: `not json`, wantDec: true},
		{name: "array", in: `[1,2]`, wantDec: true},
		{name: "trailing", in: `{"event_id":"e1","user_id":"u1","type":"view","ts":"2026-11-24T10:00:00Z"} {}`, wantDec: true},
		{name: "wrong type", in: `{"event_id":5,"user_id":"u1","type":"view","ts":"2026-11-24T10:00:00Z"}`, wantDec: true},
		{name: "bad ts", in: `{"event_id":"e1","user_id":"u1","type":"view","ts":"yesterday"}`, wantDec: true},
		{name: "missing id", in: `{"user_id":"u1","type":"view","ts":"2026-11-24T10:00:00Z"}`, wantField: "event_id"},
		{name: "missing type", in: `{"event_id":"e1","user_id":"u1","ts":"2026-11-24T10:00:00Z"}`, wantField: "type"},
		{name: "bad type", in: `{"event_id":"e1","user_id":"u1","type":"Cart Add","ts":"2026-11-24T10:00:00Z"}`, wantField: "type"},
		{name: "no user no item", in: `{"event_id":"e1","type":"view","ts":"2026-11-24T10:00:00Z"}`, wantField: "user_id"},
		{name: "user with slash", in: `{"event_id":"e1","user_id":"a/b","type":"view","ts":"2026-11-24T10:00:00Z"}`, wantField: "user_id"},
		{name: "NUL in event id", in: `{"event_id":"e\u0000","user_id":"u1","type":"view","ts":"2026-11-24T10:00:00Z"}`, wantField: "event_id"},
		{name: "control in user", in: `{"event_id":"e1","user_id":"u\u0007","type":"view","ts":"2026-11-24T10:00:00Z"}`, wantField: "user_id"},
		{name: "NUL in item", in: `{"event_id":"e1","user_id":"u1","item_id":"\u0000","type":"view","ts":"2026-11-24T10:00:00Z"}`, wantField: "item_id"},
		{name: "missing ts", in: `{"event_id":"e1","user_id":"u1","type":"view"}`, wantField: "ts"},
		{name: "far future", in: `{"event_id":"e1","user_id":"u1","type":"view","ts":"2099-01-01T00:00:00Z"}`, wantField: "ts"},
		{name: "oversized", in: `{"event_id":"e1","user_id":"u1","type":"view","ts":"2026-11-24T10:00:00Z","attrs":{"x":"` + strings.Repeat("a", event.MaxSize) + `"}}`, wantField: "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := event.Decode([]byte(tt.in))
			switch {
			case tt.wantDec:
				require.ErrorIs(t, err, event.ErrDecode)
			case tt.wantField != "":
				var fe *event.FieldError
				require.True(t, errors.As(err, &fe), "want a FieldError, got %v", err)
				require.Equal(t, tt.wantField, fe.Field)
			default:
				require.NoError(t, err)
			}
		})
	}
}

func TestKey(t *testing.T) {
	e := event.Event{UserID: "u1", ItemID: "i1"}
	require.Equal(t, "u1", e.Key())
	e.UserID = ""
	require.Equal(t, "i1", e.Key())
}

func TestRoundTrip(t *testing.T) {
	in := event.Event{EventID: "e1", UserID: "u1", Type: "cart_add", TS: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), Attrs: map[string]any{"q": "x"}}
	b, err := in.Encode()
	require.NoError(t, err)
	out, err := event.Decode(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

// BenchmarkDecode is the CEP stage's (and the ceiling's) per-record decode and validation.
//
//	go test -run '^$' -bench Decode ./event/
func BenchmarkDecode(b *testing.B) {
	v := []byte(`{"event_id":"ev-000012345","user_id":"u-0042317","type":"cart_add","item_id":"sku-31337","ts":"2026-11-25T10:00:00.123Z","attrs":{"price":19.9,"source":"app"}}`)
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if _, err := event.Decode(v); err != nil {
			b.Fatal(err)
		}
	}
}
