package cep

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/omegareach/omega/event"
)

// The changelog's records are a compact binary encoding of instances, not JSON: a batch's delta is
// one value, encoded and decoded without reflection, and a pattern instance costs a few dozen
// bytes of Redis. A record is a version byte followed by entries:
//
//	put: 'P' key len(instance) instance
//	del: 'D' key
//
// Strings are a uvarint length and their bytes; integers varints; times milliseconds. An
// instance is a uvarint bit set of the fields present (instFields), then its expiry, then each
// present field in bit order. Event times inside an instance are stored as their distance from
// its expiry, which keeps them short. Attributes (an absence's A, a fan-out trigger) keep the
// JSON scalars in binary and anything else as JSON.

const recordVersion = 1

// recordS2 begins a record stored compressed: the rest is an S2 block (github.com/klauspost/
// compress/s2, Snappy's faster sibling) of a recordVersion record. Instance keys repeat their
// rule's prefix and instances their shape, so a record shrinks to a third or so: less Redis
// memory, less AOF to write and rewrite, for about a quarter of a microsecond per event (s2Chunk).
const recordS2 = 2

// s2Chunk is how much of a record is compressed at a time, as it is written (recordWriter.
// compressing): the chunk is compressed while it is still in the cache, in the buffer the next
// chunk is written over. A record compressed whole (hundreds of KiB a commit) went through the
// cache to memory as it was written, then was read back from it: S2 took 0.35 to 0.42 CPU-seconds
// per million events of the CEP benchmark, a tenth of the stage's CPU; by chunks, 0.24 to 0.28.
// Chunks' S2 blocks concatenate into one block (as s2.ConcatBlocks does), so a record compressed
// this way reads as one compressed whole.
const s2Chunk = 32 << 10

// zHead is the room kept in front of the compressed chunks for the record's head: its recordS2
// byte and the S2 block's header (the uvarint of the record's length).
const zHead = 1 + binary.MaxVarintLen32

// compressing makes w compress what it writes a chunk at a time into z (grown as needed, reused:
// the record is z's, from compressed). A record smaller than a chunk is compressed at the end,
// when that saves space; a bigger one is compressed in any case.
func (w *recordWriter) compressing(z []byte) {
	w.z, w.zOn, w.zRaw = append(z[:0], make([]byte, zHead)...), true, 0
}

// chunk compresses w's pending chunk, when it is whole (or, forced, when anything is pending),
// and starts the next at the front of w's buffer.
func (w *recordWriter) chunk(force bool) {
	if !w.zOn || len(w.b) < s2Chunk && !(force && len(w.b) > 0) {
		return
	}
	w.z = slices.Grow(w.z, s2.MaxEncodedLen(len(w.b)))
	enc := s2.Encode(w.z[len(w.z):cap(w.z)], w.b)
	_, n := binary.Uvarint(enc) // the chunk's own header: the record has one for all its chunks
	w.z = append(w.z, enc[n:]...)
	w.zRaw += len(w.b)
	w.b = w.b[:0]
}

// compressed ends a record written compressing and returns it: compressed (recordS2), or, small
// and no smaller compressed, as written. z is the buffer to keep for the next record.
func (w *recordWriter) compressed() (rec, z []byte) {
	if w.zRaw == 0 && len(w.b) < 128 {
		return w.b, w.z
	}
	raw := w.b
	if w.zRaw == 0 {
		w.chunk(true)
		if len(w.z)-zHead+1+binary.MaxVarintLen32 >= len(raw) {
			return raw[:len(raw):len(raw)], w.z // the buffer still holds it (chunk only copies from it)
		}
	} else {
		w.chunk(true)
	}
	var h [binary.MaxVarintLen32]byte
	n := binary.PutUvarint(h[:], uint64(w.zRaw))
	at := zHead - n - 1
	w.z[at] = recordS2
	copy(w.z[at+1:], h[:n])
	return w.z[at:], w.z
}

// The fields of an instance, as bits of its header.
const (
	fSeen = 1 << iota
	fUnless
	fNext
	fStart
	fIDs
	fDone
	fA
	fFan
	fMatch
	fUntil
)

const (
	opPut = 'P'
	opDel = 'D'
)

// recordWriter appends entries to a record, and compresses it as it goes when asked (compressing):
// then b holds only the chunk being written, and z the compressed chunks before it.
type recordWriter struct {
	b    []byte
	z    []byte
	zOn  bool
	zRaw int // bytes written and compressed into z
}

func newRecord(b []byte) *recordWriter { return &recordWriter{b: append(b[:0], recordVersion)} }

func (w *recordWriter) empty() bool { return w.zRaw == 0 && len(w.b) <= 1 }

// grow makes room for n more bytes at once, so a large record is not copied at each doubling, and
// at least doubles the buffer when it grows: a partition's buffers follow its commits' size in a
// few steps (each a fresh allocation, whose pages the process may touch for the first time).
func (w *recordWriter) grow(n int) {
	if w.zOn {
		n = min(n, s2Chunk) // the buffer holds one chunk at a time
	}
	if cap(w.b)-len(w.b) < n {
		w.b = slices.Grow(w.b, max(n, cap(w.b)))
	}
}

// putSize bounds what put(key, raw) writes: an op byte and two varints of at most 10 bytes.
func putSize(key string, raw []byte) int { return 21 + len(key) + len(raw) }

func (w *recordWriter) del(key string) {
	w.b = append(w.b, opDel)
	w.str(key)
	w.chunk(false)
}

// put writes an encoded instance (appendInstance) under key.
func (w *recordWriter) put(key string, raw []byte) {
	w.b = append(w.b, opPut)
	w.str(key)
	w.b = binary.AppendUvarint(w.b, uint64(len(raw)))
	w.b = append(w.b, raw...)
	w.chunk(false)
}

// appendInstance appends in's encoding to b.
func appendInstance(b []byte, in *instance) []byte {
	w := recordWriter{b: b}
	w.instance(in)
	return w.b
}

// decodeInstance decodes what appendInstance wrote.
func decodeInstance(raw []byte) (*instance, error) {
	in := &instance{}
	if err := decodeInstanceInto(raw, in); err != nil {
		return nil, err
	}
	return in, nil
}

// decodeInstanceInto decodes raw over in, reusing its slices' arrays (the machine's scratch
// instance: decoded, advanced and encoded again within one rule's step, never kept).
func decodeInstanceInto(raw []byte, in *instance) error {
	r := recordReader{b: raw}
	r.instanceInto(in)
	if r.err == nil && len(r.b) > 0 {
		r.err = errRecord
	}
	return r.err
}

// instanceExp reads an encoded instance's expiry without decoding the rest.
func instanceExp(raw []byte) int64 {
	_, n := binary.Uvarint(raw)
	if n <= 0 {
		return 0
	}
	exp, _ := binary.Varint(raw[n:])
	return exp
}

// instanceWaits reports whether an encoded instance holds an absence's A or a fan-out job: the
// instances a restore must look into (timers, jobs).
func instanceWaits(raw []byte) bool {
	f, _ := binary.Uvarint(raw)
	return f&(fA|fFan) != 0
}

func (w *recordWriter) str(s string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *recordWriter) int(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *recordWriter) uint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }

func (w *recordWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

func (w *recordWriter) seens(s []seen, exp int64) {
	w.uint(uint64(len(s)))
	for _, x := range s {
		w.int(exp - x.TS)
		w.str(x.ID)
		w.bool(x.Used)
	}
}

// Attribute values: the JSON scalars in binary, anything else (objects, arrays) as JSON.
const (
	attrNull   = 'n'
	attrFalse  = 'f'
	attrTrue   = 't'
	attrNumber = 'd'
	attrString = 's'
	attrJSON   = 'j'
)

func (w *recordWriter) attrs(a map[string]any) {
	w.uint(uint64(len(a)))
	for k, v := range a {
		w.str(k)
		switch v := v.(type) {
		case nil:
			w.b = append(w.b, attrNull)
		case bool:
			if v {
				w.b = append(w.b, attrTrue)
			} else {
				w.b = append(w.b, attrFalse)
			}
		case float64:
			w.b = binary.LittleEndian.AppendUint64(append(w.b, attrNumber), math.Float64bits(v))
		case string:
			w.b = append(w.b, attrString)
			w.str(v)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				// Attributes come from JSON events: only a value built in code could fail here.
				w.b = append(w.b, attrNull)
				continue
			}
			w.b = append(w.b, attrJSON)
			w.str(string(b))
		}
	}
}

func (w *recordWriter) event(e *event.Event) {
	w.str(e.EventID)
	w.str(e.UserID)
	w.str(e.ItemID)
	w.str(e.Type)
	w.int(e.TS.UnixNano())
	w.attrs(e.Attrs)
}

func (w *recordWriter) instance(in *instance) {
	var f uint64
	set := func(bit uint64, ok bool) {
		if ok {
			f |= bit
		}
	}
	set(fSeen, len(in.Seen) > 0)
	set(fUnless, in.Unless != 0)
	set(fNext, in.Next != 0)
	set(fStart, in.Start != 0)
	set(fIDs, len(in.IDs) > 0)
	set(fDone, len(in.Done) > 0)
	set(fA, in.A != nil)
	set(fFan, in.Fan != nil)
	set(fMatch, in.Match != "")
	set(fUntil, in.Until != 0)
	w.uint(f)
	w.int(in.Exp)
	if f&fSeen != 0 {
		w.seens(in.Seen, in.Exp)
	}
	if f&fUnless != 0 {
		w.int(in.Exp - in.Unless)
	}
	if f&fNext != 0 {
		w.int(int64(in.Next))
	}
	if f&fStart != 0 {
		w.int(in.Exp - in.Start)
	}
	if f&fIDs != 0 {
		w.uint(uint64(len(in.IDs)))
		for _, id := range in.IDs {
			w.str(id)
		}
	}
	if f&fDone != 0 {
		w.seens(in.Done, in.Exp)
	}
	if f&fA != 0 {
		a := in.A
		w.str(a.ID)
		w.int(in.Exp - a.TS)
		w.int(a.Due - a.TS)
		w.str(a.User)
		w.str(a.Item)
		w.str(a.Type)
		w.str(a.State)
		w.seens(a.Prev, in.Exp)
		w.attrs(a.Attrs)
	}
	if f&fFan != 0 {
		w.event(&in.Fan.Trigger)
		w.str(in.Fan.Snap)
		w.int(in.Fan.Total)
		w.int(in.Fan.Next)
	}
	if f&fMatch != 0 {
		w.str(in.Match)
	}
	if f&fUntil != 0 {
		w.int(in.Exp - in.Until)
	}
}

// errRecord reports a record that does not decode: a bug, or a store written by a newer version.
var errRecord = errors.New("malformed changelog record")

// recordReader reads a record's entries in order.
type recordReader struct {
	b   []byte
	err error
}

func readRecord(b []byte) (*recordReader, error) {
	if len(b) > 0 && b[0] == recordS2 {
		var err error
		if b, err = s2.Decode(nil, b[1:]); err != nil {
			return nil, fmt.Errorf("%w: %v", errRecord, err)
		}
	}
	if len(b) == 0 || b[0] != recordVersion {
		v := -1
		if len(b) > 0 {
			v = int(b[0])
		}
		return nil, fmt.Errorf("%w: version %d, this replica reads %d", errRecord, v, recordVersion)
	}
	return &recordReader{b: b[1:]}, nil
}

// next returns the next entry: raw is the encoded instance of a put (part of the record), nil
// for a delete. ok is false at the end or on an error (see r.err).
func (r *recordReader) next() (key string, raw []byte, ok bool) {
	if len(r.b) == 0 || r.err != nil {
		return "", nil, false
	}
	op := r.b[0]
	r.b = r.b[1:]
	key = r.str()
	switch op {
	case opDel:
	case opPut:
		n := r.count()
		raw, r.b = r.b[:n:n], r.b[n:]
		if n == 0 {
			r.fail()
		}
	default:
		r.fail()
	}
	return key, raw, r.err == nil
}

func (r *recordReader) fail() {
	if r.err == nil {
		r.err = errRecord
	}
	r.b = nil
}

func (r *recordReader) uint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) int() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length and checks that the record can hold at least that many bytes.
func (r *recordReader) count() int {
	n := r.uint()
	if n > uint64(len(r.b)) || n > math.MaxInt32 {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *recordReader) str() string {
	n := r.count()
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *recordReader) bool() bool {
	if len(r.b) == 0 {
		r.fail()
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *recordReader) seens(exp int64) []seen { return r.appendSeens(nil, exp) }

// appendSeens appends the encoded seens to s (nil when there are none and s is empty).
func (r *recordReader) appendSeens(s []seen, exp int64) []seen {
	n := r.count()
	if n == 0 {
		return s
	}
	for range n {
		s = append(s, seen{TS: exp - r.int(), ID: r.str(), Used: r.bool()})
	}
	return s
}

func (r *recordReader) attrs() map[string]any {
	n := r.count()
	if n == 0 {
		return nil
	}
	a := make(map[string]any, n)
	for range n {
		k := r.str()
		if len(r.b) == 0 {
			r.fail()
			return nil
		}
		t := r.b[0]
		r.b = r.b[1:]
		switch t {
		case attrNull:
			a[k] = nil
		case attrFalse, attrTrue:
			a[k] = t == attrTrue
		case attrNumber:
			if len(r.b) < 8 {
				r.fail()
				return nil
			}
			a[k] = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
			r.b = r.b[8:]
		case attrString:
			a[k] = r.str()
		case attrJSON:
			var v any
			if err := json.Unmarshal([]byte(r.str()), &v); err != nil {
				r.fail()
				return nil
			}
			a[k] = v
		default:
			r.fail()
			return nil
		}
	}
	return a
}

func (r *recordReader) event() event.Event {
	e := event.Event{EventID: r.str(), UserID: r.str(), ItemID: r.str(), Type: r.str()}
	e.TS = time.Unix(0, r.int()).UTC()
	e.Attrs = r.attrs()
	return e
}

// instanceInto decodes an instance over in, reusing the arrays of its Seen, IDs and Done.
func (r *recordReader) instanceInto(in *instance) {
	seen, ids, done := in.Seen[:0], in.IDs[:0], in.Done[:0]
	f := r.uint()
	*in = instance{Exp: r.int()}
	if f&fSeen != 0 {
		in.Seen = r.appendSeens(seen, in.Exp)
	}
	if f&fUnless != 0 {
		in.Unless = in.Exp - r.int()
	}
	if f&fNext != 0 {
		in.Next = int(r.int())
	}
	if f&fStart != 0 {
		in.Start = in.Exp - r.int()
	}
	if f&fIDs != 0 {
		n := r.count()
		for range n {
			ids = append(ids, r.str())
		}
		in.IDs = ids
	}
	if f&fDone != 0 {
		in.Done = r.appendSeens(done, in.Exp)
	}
	if f&fA != 0 {
		a := &waitA{ID: r.str()}
		a.TS = in.Exp - r.int()
		a.Due = a.TS + r.int()
		a.User, a.Item, a.Type, a.State = r.str(), r.str(), r.str(), r.str()
		a.Prev = r.seens(in.Exp)
		a.Attrs = r.attrs()
		in.A = a
	}
	if f&fFan != 0 {
		in.Fan = &fanState{Trigger: r.event(), Snap: r.str(), Total: r.int(), Next: r.int()}
	}
	if f&fMatch != 0 {
		in.Match = r.str()
	}
	if f&fUntil != 0 {
		in.Until = in.Exp - r.int()
	}
	if f >= fUntil<<1 {
		r.fail() // a field this version does not know
	}
}
