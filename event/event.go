// Package event is the wire contract of Omega Reach: the JSON value of a record on the Kafka topic
// omega.events, its validation, and the record key. The API produces it, the CEP stage consumes it,
// and outside services may produce it directly, so changes here must stay backward compatible.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Topics of the wire contract.
const (
	Topic    = "omega.events"
	DLQTopic = "omega.events.dlq"
	// HeaderDLQReason carries why a record was dead-lettered.
	HeaderDLQReason = "omega-dlq-reason"
)

// Limits that keep one bad producer from hurting everyone.
const (
	MaxSize    = 64 << 10 // a record value
	maxIDLen   = 256
	maxTypeLen = 64
)

// MaxFutureLag is how far past the clock of the process that decodes it an event's ts may be.
const MaxFutureLag = 24 * time.Hour

// Event is one behaviour event.
type Event struct {
	EventID string         `json:"event_id"`
	UserID  string         `json:"user_id,omitempty"`
	Type    string         `json:"type"`
	ItemID  string         `json:"item_id,omitempty"`
	TS      time.Time      `json:"ts"`
	Attrs   map[string]any `json:"attrs,omitempty"`
}

// FieldError names the offending field of an invalid event.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ErrDecode wraps a record value that is not a JSON event object.
var ErrDecode = errors.New("undecodable event")

// Decode parses and validates one record value. Unknown fields are ignored so producers may add
// fields before consumers know them.
func Decode(b []byte) (Event, error) {
	var e Event
	if len(b) > MaxSize {
		return e, &FieldError{Field: "value", Reason: fmt.Sprintf("%d bytes exceeds the %d byte limit", len(b), MaxSize)}
	}
	if !decodeFast(b, &e) {
		// Unmarshal refuses trailing data after the object itself.
		e = Event{}
		if err := json.Unmarshal(b, &e); err != nil {
			return e, fmt.Errorf("%w: %v", ErrDecode, err)
		}
	}
	return e, e.Validate(time.Now())
}

// Validate checks the event against the wire contract; now bounds how far in the future ts may be.
func (e *Event) Validate(now time.Time) error {
	switch {
	case e.EventID == "":
		return &FieldError{"event_id", "required"}
	case !printable(e.EventID):
		return &FieldError{"event_id", "must be UTF-8 without control characters"}
	case !printable(e.UserID):
		return &FieldError{"user_id", "must be UTF-8 without control characters"}
	case !printable(e.ItemID):
		return &FieldError{"item_id", "must be UTF-8 without control characters"}
	case len(e.EventID) > maxIDLen:
		return &FieldError{"event_id", fmt.Sprintf("longer than %d bytes", maxIDLen)}
	case e.Type == "":
		return &FieldError{"type", "required"}
	case len(e.Type) > maxTypeLen || !isToken(e.Type):
		return &FieldError{"type", "must be 1 to 64 characters of a-z, 0-9 and _"}
	case e.UserID == "" && e.ItemID == "":
		return &FieldError{"user_id", "required (only an item-scoped type's events, such as price_drop, go without it and name their item_id)"}
	case len(e.UserID) > maxIDLen || strings.ContainsAny(e.UserID, "/{}"):
		return &FieldError{"user_id", fmt.Sprintf("at most %d bytes, without '/', '{' or '}'", maxIDLen)}
	case len(e.ItemID) > maxIDLen:
		return &FieldError{"item_id", fmt.Sprintf("longer than %d bytes", maxIDLen)}
	case e.TS.IsZero():
		return &FieldError{"ts", "required (RFC 3339)"}
	case e.TS.After(now.Add(MaxFutureLag)):
		return &FieldError{"ts", "more than 24h in the future"}
	}
	return nil
}

// Key is the Kafka record key: the user for user events, the item for item-scoped ones, so one
// user's events stay ordered on one partition.
func (e *Event) Key() string {
	if e.UserID != "" {
		return e.UserID
	}
	return e.ItemID
}

// Encode returns the record value.
func (e *Event) Encode() ([]byte, error) { return json.Marshal(e) }

// printable: IDs land in Redis keys, workflow IDs and PostgreSQL text, none of which take a NUL.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

func isToken(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return s != ""
}

// The event types a system knows are data: the event catalogue (Catalog), the demo one in
// event/demo. The two below are the built-in types the tracking records treat specially.

// TypeDelivered is the demo catalogue's delivery receipt (any type declared a receipt is one):
// attrs.reach_id names the reach, and attrs.idempotency_key the send when the reach sent several.
// The trail records it as delivered.
const TypeDelivered = "message_delivered"

// TypeOpened is a push notification opened; with attrs.reach_id the trail records it for that
// reach even after its run ended (the funnel's "opened").
const TypeOpened = "push_open"

// AttrIdempotencyKey is the attribute of a receipt that names the send.
const AttrIdempotencyKey = "idempotency_key"

// AttrReachID is the attribute of a response event that names the reach it answers.
const AttrReachID = "reach_id"
