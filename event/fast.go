package event

import (
	"encoding/json"
	"unicode/utf8"
)

// decodeFast decodes the common shape of a record value without reflection: one object whose
// keys are the contract's own names spelled exactly, string values without escapes, attrs an
// object (decoded by encoding/json) or null. Anything else (escapes, other keys or spellings, a
// wrong type, invalid UTF-8, bad syntax) returns false and Decode asks encoding/json, so what
// is accepted and how it decodes never differ from json.Unmarshal (FuzzDecodeFast holds the two
// against each other).
func decodeFast(b []byte, e *Event) bool {
	d := scanner{b: b}
	d.ws()
	if !d.byte('{') {
		return false
	}
	d.ws()
	if d.byte('}') {
		return d.end()
	}
	for {
		d.ws()
		key, ok := d.str()
		if !ok {
			return false
		}
		d.ws()
		if !d.byte(':') {
			return false
		}
		d.ws()
		switch string(key) {
		case "event_id", "user_id", "type", "item_id":
			v, ok := d.str()
			if !ok {
				return false
			}
			s := string(v)
			switch string(key) {
			case "event_id":
				e.EventID = s
			case "user_id":
				e.UserID = s
			case "type":
				e.Type = s
			default:
				e.ItemID = s
			}
		case "ts":
			start := d.i
			if _, ok := d.str(); !ok || e.TS.UnmarshalJSON(b[start:d.i]) != nil {
				return false
			}
		case "attrs":
			start := d.i
			if !d.skipObject() {
				return false
			}
			var attrs map[string]any
			if err := json.Unmarshal(b[start:d.i], &attrs); err != nil {
				return false
			}
			if attrs == nil { // null
				e.Attrs = nil
			} else if e.Attrs == nil {
				e.Attrs = attrs
			} else { // a repeated key merges into the map, as encoding/json does
				for k, v := range attrs {
					e.Attrs[k] = v
				}
			}
		default:
			return false
		}
		d.ws()
		if d.byte('}') {
			return d.end()
		}
		if !d.byte(',') {
			return false
		}
	}
}

type scanner struct {
	b []byte
	i int
}

func (d *scanner) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *scanner) byte(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// end: only whitespace follows.
func (d *scanner) end() bool {
	d.ws()
	return d.i == len(d.b)
}

// str reads a string without escapes or control characters, of valid UTF-8, and returns its
// content.
func (d *scanner) str() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// skipObject moves past an object (or null), tracking strings and nesting only: json.Unmarshal
// checks the slice it spans.
func (d *scanner) skipObject() bool {
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	if d.i >= len(d.b) || d.b[d.i] != '{' {
		return false
	}
	depth := 0
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				d.i++
				return true
			}
		case '"':
			d.i++
			for d.i < len(d.b) && d.b[d.i] != '"' {
				if d.b[d.i] == '\\' {
					d.i++
				}
				d.i++
			}
		}
		d.i++
	}
	return false
}
