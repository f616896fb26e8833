package cep

import (
	"container/heap"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// The machine is the pattern state of one partition, held in memory by the replica that owns the
// partition, as Kafka Streams and Flink hold keyed state. Every rule keyed on the user (the
// partition key of the wire contract) lives here: single, count, sequence and absence patterns
// and every rule's re-entry marks. It is deterministic: the same events in the same order, from
// the same restored state, give the same matches, whatever the batching, because time inside it
// is event time only (the partition's watermark), never the wall clock.
//
// Durability is the changelog's (changelog.go): the instances a batch changed are written to
// Redis once per batch, after the batch's reaches started.

// instance is one pattern instance: the state of one rule for one correlation key. Only the fields
// of its rule's kind are set. Exp is the watermark (ms) after which it is forgotten.
type instance struct {
	// count: the counted events of the window (used: consumed by a match), the last unless time.
	Seen   []seen `json:"s,omitempty"`
	Unless int64  `json:"u,omitempty"`
	// sequence: the next step, the first step's time and the events so far; Done the events of
	// matches already made (a duplicate of one changes nothing).
	Next  int      `json:"n,omitempty"`
	Start int64    `json:"t,omitempty"`
	IDs   []string `json:"i,omitempty"`
	Done  []seen   `json:"d,omitempty"`
	// absence: the A that waits (or waited) for its B.
	A *waitA `json:"a,omitempty"`
	// fan-out: a join trigger's users being started (fanout.go).
	Fan *fanState `json:"f,omitempty"`
	// re-entry: the match holding the key, until when (event time).
	Match string `json:"m,omitempty"`
	Until int64  `json:"h,omitempty"`
	Exp   int64  `json:"x"`
}

// seen is an event a pattern remembers: its time, ID, and whether a match consumed it.
type seen struct {
	TS   int64  `json:"t"`
	ID   string `json:"i"`
	Used bool   `json:"u,omitempty"`
}

// waitA is an absence's A: what its match needs, when it is due, and how it ended.
type waitA struct {
	ID    string         `json:"i"`
	TS    int64          `json:"t"`
	Due   int64          `json:"d"`
	User  string         `json:"u,omitempty"`
	Item  string         `json:"it,omitempty"`
	Type  string         `json:"ty"`
	Attrs map[string]any `json:"a,omitempty"`
	// State: "" waiting, "c" cancelled by a B, "f" fired.
	State string `json:"s,omitempty"`
	// Prev are earlier As of this key that ended (a duplicate of one does not wait again).
	Prev []seen `json:"p,omitempty"`
}

// timer is a due absence in the partition's timer queue; entries whose instance moved on are
// skipped when they come up.
type timer struct {
	due int64
	key string
	id  string
}

type timerQueue []timer

func (q timerQueue) Len() int           { return len(q) }
func (q timerQueue) Less(i, j int) bool { return q[i].due < q[j].due }
func (q timerQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *timerQueue) Push(x any)        { *q = append(*q, x.(timer)) }
func (q *timerQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	*q = old[:len(old)-1]
	return t
}

// sweepEvery is how far the watermark moves between two sweeps of expired instances.
const sweepEvery = time.Minute

// machine holds one partition's instances, timers and watermark.
type machine struct {
	// inst holds the instances encoded (codec.go), behind a flags byte (flagDirty), the way Kafka
	// Streams' stores hold serialized state: a few dozen bytes and two objects per instance for
	// the collector to mark, whatever the instance holds, and the changelog copies them as they
	// are. An instance is decoded to advance it and encoded again when it changed.
	inst slotIndex
	// last is the slot get found last: put, which follows it on the same key, writes it without
	// looking the key up again; hashKey the key hashed last, with its hash.
	lastKey  string
	lastSlot *slot
	hashKey  string
	hashVal  uint64
	// kbuf holds the key of the current cursor (at), rkbuf the rule key of the event being
	// applied.
	kbuf, rkbuf []byte
	// scratch is the instance getAt decodes into: a rule's step reads, advances and writes it
	// back (putAt) before the next step decodes, and keeps none of it (a match clones what it
	// takes).
	scratch *instance
	// dirty lists the slots changed since the last commit, each once (its flags say whether it is
	// listed); a dropped slot (no bytes) writes its key's deletion. Slots, not keys: the commit
	// copies them without looking each up again.
	dirty  []*slot
	jobs   map[string]bool // the fan-out jobs among them (fanout.go)
	timers timerQueue
	// wm is the watermark (ms): event time up to which the partition is complete, less the
	// allowed lateness; timers due at or before it fire.
	wm        int64
	lateness  int64 // allowed lateness (ms)
	lastSweep int64
	// expiry indexes the slots by the minute (sweepEvery) of their expiry, so a sweep visits the
	// instances due, not all of them; a slot moved to another minute is listed again, and the
	// sweep checks each slot's current expiry (and skips the slots dropped meanwhile).
	expiry  map[int64][]*slot
	minutes minuteHeap
	// prefetch's buffers and the sum its reads go to (prefetch.go).
	pfKey, pfBuf []byte
	pfHash       []uint64
	pfSlots      []*slot
	pfSink       uint64
}

// minuteHeap orders the expiry index's minutes.
type minuteHeap []int64

func (h minuteHeap) Len() int           { return len(h) }
func (h minuteHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h minuteHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minuteHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *minuteHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// minuteOf is the sweep minute of a time in ms (floored, negative times too).
func minuteOf(t int64) int64 {
	d := msd(sweepEvery)
	q := t / d
	if t%d < 0 {
		q--
	}
	return q
}

// listExpiry lists sl under the minute of its expiry.
func (m *machine) listExpiry(sl *slot, exp int64) {
	mn := minuteOf(exp)
	sls, ok := m.expiry[mn]
	if !ok {
		heap.Push(&m.minutes, mn)
	}
	m.expiry[mn] = append(sls, sl)
}

func newMachine(allowedLateness time.Duration) *machine {
	return &machine{inst: newSlotIndex(), jobs: map[string]bool{}, lateness: msd(allowedLateness), expiry: map[int64][]*slot{}}
}

// Slot flags: flagDirty marks an instance changed since the last commit; flagGone a slot dropped
// from inst (a snapshot or a commit holding it skips it or deletes its key).
const (
	flagDirty = 1
	flagGone  = 2
)

// slot holds an instance in one allocation: a flags byte, its key, its encoding (b[kend:]); put
// rewrites the encoding in place. Key and instance side by side, a lookup that compares the key
// has the instance in the same cache lines, and the collector marks two objects per instance.
type slot struct {
	b    []byte
	kend uint32 // the key is b[1:kend]
}

// newSlot makes key's slot, with room for a small instance: one allocation, the bytes right
// after the slot's header (inlineSlot), so a lookup that reads the header finds the key next to
// it (the same or the next cache line), where a separate array cost the collector a second
// object and every lookup a second cache miss. A slot whose instance outgrows its room moves its bytes to an array of their
// own (append), its header staying where it is.
func newSlot(key string) *slot {
	need := 1 + len(key) + 48
	var sl *slot
	var buf []byte
	switch {
	case need <= 80:
		s := new(inlineSlot[[80]byte])
		sl, buf = &s.slot, s.buf[:]
	case need <= 112:
		s := new(inlineSlot[[112]byte])
		sl, buf = &s.slot, s.buf[:]
	case need <= 160:
		s := new(inlineSlot[[160]byte])
		sl, buf = &s.slot, s.buf[:]
	case need <= 224:
		s := new(inlineSlot[[224]byte])
		sl, buf = &s.slot, s.buf[:]
	default:
		sl, buf = new(slot), make([]byte, need)
	}
	sl.b = buf[:1+len(key)]
	copy(sl.b[1:], key)
	sl.kend = uint32(1 + len(key))
	return sl
}

// inlineSlot is a slot and its first bytes in one object; the sizes make whole Go size classes
// (a 32-byte header and 80 to 224 bytes: 112 to 256).
type inlineSlot[A [80]byte | [112]byte | [160]byte | [224]byte] struct {
	slot
	buf A
}

// key is the slot's key. It shares the slot's bytes, which never change once written (an
// encoding rewritten starts after them, a slot dropped keeps them), so it is never copied.
func (sl *slot) key() string {
	if sl.kend <= 1 {
		return ""
	}
	return unsafe.String(&sl.b[1], int(sl.kend)-1)
}

func (sl *slot) keyIs(key string) bool { return string(sl.b[1:sl.kend]) == key }

// raw is the slot's encoded instance.
func (sl *slot) raw() []byte { return sl.b[sl.kend:] }

func (sl *slot) gone() bool  { return sl.b[0]&flagGone != 0 }
func (sl *slot) dirty() bool { return sl.b[0]&flagDirty != 0 }

// drop marks sl dropped from inst, its key kept for the commit that deletes it.
func (sl *slot) drop() {
	sl.b = sl.b[:sl.kend]
	sl.b[0] |= flagGone
}

// hash is key's hash in inst; a key looked up and then put is hashed once.
func (m *machine) hash(key string) uint64 {
	if key != m.hashKey {
		m.hashKey, m.hashVal = key, m.inst.hash(key)
	}
	return m.hashVal
}

// find returns key's slot, nil when there is none.
func (m *machine) find(key string) *slot { return m.inst.find(m.hash(key), key) }

// lookup finds key's slot, through the one-entry cache.
func (m *machine) lookup(key string) *slot {
	if m.lastSlot != nil && key == m.lastKey {
		return m.lastSlot
	}
	s := m.find(key)
	if s != nil {
		m.lastKey, m.lastSlot = key, s
	}
	return s
}

// get decodes key's instance; nil when there is none.
func (m *machine) get(key string) *instance {
	sl := m.lookup(key)
	if sl == nil {
		return nil
	}
	in, err := decodeInstance(sl.raw())
	if err != nil {
		// Only this machine's encoder wrote it, and a restore checked what it read.
		panic(fmt.Sprintf("cep: instance %s does not decode: %v", key, err))
	}
	return in
}

// restoreRaw adds an encoded instance read from the changelog (checked: it decodes).
func (m *machine) restoreRaw(key string, raw []byte) error {
	var in *instance
	if instanceWaits(raw) {
		var err error
		if in, err = decodeInstance(raw); err != nil {
			return err
		}
	} else if _, err := decodeInstance(raw); err != nil {
		return err
	}
	sl := m.find(key)
	if sl == nil {
		sl = newSlot(key)
		m.inst.add(m.hash(key), sl)
		m.listExpiry(sl, instanceExp(raw))
	} else if minuteOf(instanceExp(sl.raw())) != minuteOf(instanceExp(raw)) {
		m.listExpiry(sl, instanceExp(raw))
	}
	sl.b = append(sl.b[:sl.kend], raw...)
	sl.b[0] = 0
	m.watch(key, in)
	return nil
}

// restore adds a decoded instance (the legacy JSON state).
func (m *machine) restore(key string, in *instance) {
	m.lastSlot = nil
	if sl := m.inst.remove(m.hash(key), key); sl != nil {
		sl.drop()
	}
	sl := newSlot(key)
	sl.b = appendInstance(sl.b, in)
	m.inst.add(m.hash(key), sl)
	m.listExpiry(sl, in.Exp)
	m.watch(key, in)
}

// watch registers what a restored instance waits for: an absence's timer, a fan-out job.
func (m *machine) watch(key string, in *instance) {
	if in == nil {
		return
	}
	if in.Fan != nil {
		m.jobs[key] = true
	}
	if in.A != nil && in.A.State == "" {
		heap.Push(&m.timers, timer{due: in.A.Due, key: key, id: in.A.ID})
	}
}

// forget removes a key a restored record deleted.
func (m *machine) forget(key string) {
	m.lastSlot = nil
	if sl := m.inst.remove(m.hash(key), key); sl != nil {
		sl.drop()
	}
	delete(m.jobs, key)
}

// put stores in as key's instance, changed since the last commit.
func (m *machine) put(key string, in *instance) {
	c := cursor{key: key, sl: m.lookup(key)}
	if c.sl == nil {
		c.h = m.hash(key)
	}
	m.putAt(&c, in)
	m.lastKey, m.lastSlot = key, c.sl
}

// cursor is an instance key the rules read and write as they apply an event: built in the
// machine's buffer (valid until the next cursor: a new slot copies it), hashed and looked up once.
type cursor struct {
	key string
	h   uint64
	sl  *slot // nil: no instance (h is the key's hash)
}

// at is the cursor of rule r's instance of kind for key: instKey's key, built without allocating.
func (m *machine) at(r *compiledRule, kind, key string) cursor {
	b := appendInstKey(m.kbuf[:0], r, kind, key)
	m.kbuf = b
	k := unsafe.String(unsafe.SliceData(b), len(b))
	h := m.inst.hash(k)
	return cursor{key: k, h: h, sl: m.inst.find(h, k)}
}

// getAt decodes the cursor's instance into the machine's scratch instance (nil when there is
// none): valid until the next getAt, for a rule's step that writes it back with putAt and keeps
// nothing of it. get decodes a new instance.
func (m *machine) getAt(c *cursor) *instance {
	if c.sl == nil {
		return nil
	}
	in := m.scratch
	if in == nil {
		in = &instance{}
		m.scratch = in
	}
	if err := decodeInstanceInto(c.sl.raw(), in); err != nil {
		// Only this machine's encoder wrote it, and a restore checked what it read.
		panic(fmt.Sprintf("cep: instance %s does not decode: %v", c.sl.key(), err))
	}
	return in
}

// blank is the scratch instance emptied (its slices' room kept), for a rule's step that finds
// no instance and makes one: under getAt's terms, written back with putAt and kept by nothing.
func (m *machine) blank() *instance {
	in := m.scratch
	if in == nil {
		in = &instance{}
		m.scratch = in
	}
	*in = instance{Seen: in.Seen[:0], IDs: in.IDs[:0], Done: in.Done[:0]}
	return in
}

// putAt stores in as the cursor's instance, changed since the last commit.
func (m *machine) putAt(c *cursor, in *instance) {
	sl := c.sl
	switch {
	case sl == nil:
		sl = newSlot(c.key)
		m.inst.add(c.h, sl)
		c.sl = sl
		m.dirty = append(m.dirty, sl)
		m.listExpiry(sl, in.Exp)
	default:
		if !sl.dirty() {
			m.dirty = append(m.dirty, sl)
		}
		if minuteOf(instanceExp(sl.raw())) != minuteOf(in.Exp) {
			m.listExpiry(sl, in.Exp)
		}
	}
	sl.b = appendInstance(sl.b[:sl.kend], in) // the old bytes are reused
	sl.b[0] = flagDirty
	if in.Fan != nil {
		m.jobs[sl.key()] = true
	}
}

func (m *machine) drop(key string) {
	if sl := m.inst.remove(m.hash(key), key); sl != nil {
		m.lastSlot = nil
		if !sl.dirty() {
			m.dirty = append(m.dirty, sl)
		}
		sl.drop()
	}
}

// changed reports whether anything changed since the last commit.
func (m *machine) changed() bool { return len(m.dirty) > 0 }

// encodeDirty writes what changed since the last commit: the instances written, the keys deleted.
// Their flags are cleared, and the commit's plan holds them (clean).
func (m *machine) encodeDirty(w *recordWriter) {
	n := 0
	for _, sl := range m.dirty {
		n += putSize(sl.key(), sl.raw())
	}
	w.grow(n)
	for _, sl := range m.dirty {
		switch {
		case sl.gone():
			w.del(sl.key())
		case sl.dirty():
			w.put(sl.key(), sl.raw())
			sl.b[0] &^= flagDirty
		}
	}
}

// slots lists the instances' slots (a snapshot's, written a piece at a time: a slot dropped
// meanwhile is skipped, its key's later life is in the log).
func (m *machine) slots() []*slot {
	out := make([]*slot, 0, m.inst.len())
	m.inst.each(func(sl *slot) { out = append(out, sl) })
	return out
}

// keys lists the instance keys (tests).
func (m *machine) keys() []string {
	out := make([]string, 0, m.inst.len())
	m.inst.each(func(sl *slot) { out = append(out, strings.Clone(sl.key())) })
	return out
}

// clean forgets the changes once a commit has encoded them (encodeDirty cleared their flags):
// the commit's plan holds them from there.
func (m *machine) clean() { m.dirty = m.dirty[:0] }

// instances decodes every instance (tests).
func (m *machine) instances() map[string]*instance {
	out := make(map[string]*instance, m.inst.len())
	for _, k := range m.keys() {
		out[k] = m.get(k)
	}
	return out
}

func instKey(r *compiledRule, kind, key string) string {
	return string(appendInstKey(nil, r, kind, key))
}

// appendInstKey appends the key of rule r's instance of kind for key to b.
func appendInstKey(b []byte, r *compiledRule, kind, key string) []byte {
	if r.instPrefix == "" { // a rule compiled before the prefix was cached (never in the stage)
		b = append(append(append(b, r.ID...), ":v"...), strconv.Itoa(r.Version)...)
		b = append(b, ':')
	} else {
		b = append(b, r.instPrefix...)
	}
	return append(append(append(b, kind...), ':'), key...)
}

func reentryKey(ruleID, userID string) string { return ruleID + ":reentry:" + userID }

// observe moves the watermark with an event: its time, but never past the time the broker
// appended it (a device clock running ahead must not fire everyone's timers), less the allowed
// lateness. Both times are the record's own, so a replay moves it the same way.
func (m *machine) observe(ts, appended time.Time) {
	t := ms(ts)
	if !appended.IsZero() && ms(appended) < t {
		t = ms(appended)
	}
	m.advance(t - m.lateness)
}

// dueBy reports whether a timer is due at or before wm.
func (m *machine) dueBy(wm int64) bool {
	for len(m.timers) > 0 && m.timers[0].due <= wm {
		t := m.timers[0]
		if in := m.get(t.key); in != nil && in.A != nil && in.A.ID == t.id && in.A.State == "" {
			return true
		}
		heap.Pop(&m.timers) // its instance moved on
	}
	return false
}

// advance moves the watermark forward (never back).
func (m *machine) advance(wm int64) {
	if wm > m.wm {
		m.wm = wm
	}
}

// ruleKey is ev's correlation key under r: the user, or r's fields built in *buf (valid until
// it is reused); false when ev lacks one.
func ruleKey(r *compiledRule, ev *event.Event, buf *[]byte) (string, bool) {
	if len(r.keyFields) == 1 && r.keyFields[0] == "user" {
		return ev.UserID, ev.UserID != ""
	}
	b, ok := r.appendKey((*buf)[:0], ev)
	*buf = b
	if !ok {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}

// apply advances rule r's instance for ev; r is a rule the machine owns (ownedByPartition).
func (m *machine) apply(r *compiledRule, ev *event.Event, vars map[string]any, now time.Time) []workflows.Match {
	if ev.UserID == "" {
		return nil
	}
	// The key is built in the machine's buffer: the cursors copy it, a match clones it.
	key, ok := ruleKey(r, ev, &m.rkbuf)
	if !ok {
		return nil
	}
	ts := ms(ev.TS)
	exp := ts + ttlFor(r)
	switch r.Kind {
	case KindSingle:
		if r.steps[0].test(ev, vars) {
			return []workflows.Match{newMatch(r, ev, strings.Clone(key), now)}
		}
	case KindCount:
		return m.applyCount(r, ev, vars, key, ts, exp, now)
	case KindSequence:
		return m.applySequence(r, ev, vars, key, ts, exp, now)
	case KindAbsence:
		return m.applyAbsence(r, ev, vars, key, ts, now)
	}
	return nil
}

func (m *machine) applyCount(r *compiledRule, ev *event.Event, vars map[string]any, key string, ts, exp int64, now time.Time) []workflows.Match {
	c := m.at(r, instKind(r), key)
	in := m.getAt(&c)
	if r.unless != nil && r.unless.test(ev, vars) {
		if in == nil {
			in = m.blank()
		}
		if ts > in.Unless {
			in.Unless = ts
		}
		in.Exp = max(in.Exp, exp)
		m.putAt(&c, in)
	}
	if !r.steps[0].test(ev, vars) {
		return nil
	}
	if in == nil {
		in = m.blank()
	}
	if slices.ContainsFunc(in.Seen, func(s seen) bool { return s.ID == ev.EventID }) {
		return nil // a duplicate changes nothing
	}
	in.Seen = append(in.Seen, seen{TS: ts, ID: ev.EventID})
	// The window ends at the latest event time of the key, so a late event still counts with the
	// others; events older than it are forgotten.
	var top int64
	for _, s := range in.Seen {
		top = max(top, s.TS)
	}
	w := msd(r.Within.D())
	in.Seen = slices.DeleteFunc(in.Seen, func(s seen) bool { return s.TS < top-w })
	in.Exp = max(in.Exp, top+ttlFor(r))
	n := 0
	for _, s := range in.Seen {
		if !s.Used {
			n++
		}
	}
	if n < r.Count {
		m.putAt(&c, in)
		return nil
	}
	// A match consumes the window: N more events are needed for the next. The consumed events
	// stay (marked) so a duplicate of one is still recognised.
	for i := range in.Seen {
		in.Seen[i].Used = true
	}
	m.putAt(&c, in)
	if in.Unless != 0 && in.Unless >= top-w {
		return nil // suppressed by the unless event
	}
	return []workflows.Match{newMatch(r, ev, strings.Clone(key), now)}
}

func (m *machine) applySequence(r *compiledRule, ev *event.Event, vars map[string]any, key string, ts, exp int64, now time.Time) []workflows.Match {
	c := m.at(r, instKind(r), key)
	in := m.getAt(&c)
	if r.unless != nil && r.unless.test(ev, vars) && in != nil && in.Next > 0 {
		// A sequence with an unless clause restarts when the unless event comes.
		in.Next, in.Start, in.IDs = 0, 0, nil
		m.putAt(&c, in)
	}
	mask := 0
	for i := range r.steps {
		if r.steps[i].test(ev, vars) {
			mask |= 1 << i
		}
	}
	if mask == 0 {
		return nil
	}
	if in == nil {
		in = m.blank()
	}
	if slices.Contains(in.IDs, ev.EventID) || slices.ContainsFunc(in.Done, func(s seen) bool { return s.ID == ev.EventID }) {
		return nil // a duplicate changes nothing
	}
	w := msd(r.Within.D())
	if in.Next > 0 && ts-in.Start > w {
		in.Next, in.Start, in.IDs = 0, 0, nil
	}
	switch {
	case in.Next > 0 && ts >= in.Start && mask&(1<<in.Next) != 0:
		in.IDs = append(in.IDs, ev.EventID)
		in.Next++
		if in.Next >= len(r.steps) {
			match := newMatch(r, ev, strings.Clone(key), now)
			match.EventIDs = slices.Clone(in.IDs)
			// The last matches' events are remembered for the window (a duplicate of one changes
			// nothing); older ones are forgotten, so a busy key's instance does not grow.
			in.Done = slices.DeleteFunc(in.Done, func(d seen) bool { return d.TS < ts-w-msd(lateness) })
			for _, id := range in.IDs {
				in.Done = append(in.Done, seen{TS: ts, ID: id})
			}
			in.Next, in.Start, in.IDs = 0, 0, nil
			in.Exp = max(in.Exp, exp)
			m.putAt(&c, in)
			return []workflows.Match{match}
		}
	case mask&1 != 0:
		// A step-0 event that does not advance the instance restarts it: the latest A counts.
		in.Next, in.Start, in.IDs = 1, ts, append(in.IDs[:0], ev.EventID)
	default:
		return nil
	}
	in.Exp = max(in.Exp, exp)
	m.putAt(&c, in)
	return nil
}

func (m *machine) applyAbsence(r *compiledRule, ev *event.Event, vars map[string]any, key string, ts int64, now time.Time) []workflows.Match {
	c := m.at(r, instKind(r), key)
	in := m.getAt(&c)
	w := msd(r.Within.D())
	if r.absent.test(ev, vars) && in != nil && in.A != nil && in.A.State == "" && ts >= in.A.TS && ts <= in.A.Due {
		in.A.State = "c" // a B within the window, in event time: no absence
		m.putAt(&c, in)
	}
	if !r.steps[0].test(ev, vars) {
		return nil
	}
	if in == nil {
		in = m.blank()
	}
	var out []workflows.Match
	if a := in.A; a != nil {
		if a.ID == ev.EventID || slices.ContainsFunc(a.Prev, func(s seen) bool { return s.ID == ev.EventID }) {
			return nil // a duplicate changes nothing
		}
		if a.TS > ts && a.State == "" {
			return nil // an older A does not replace a newer one's wait
		}
		if a.State == "" && a.Due < ts {
			// The wait ended, in event time, before this A: that absence happened, whether or not
			// the watermark has fired it yet.
			a.State = "f"
			out = append(out, absenceMatch(r, a, strings.Clone(key), now))
		}
	}
	next := &waitA{ID: ev.EventID, TS: ts, Due: ts + w, User: ev.UserID, Item: ev.ItemID, Type: ev.Type, Attrs: ev.Attrs}
	if a := in.A; a != nil {
		// The latest A restarts the wait; the ones before are remembered for the window.
		next.Prev = append(slices.DeleteFunc(a.Prev, func(s seen) bool { return s.TS < ts-w-msd(lateness) }), seen{TS: a.TS, ID: a.ID})
	}
	in.A = next
	in.Exp = max(in.Exp, next.Due+msd(lateness))
	m.putAt(&c, in)
	heap.Push(&m.timers, timer{due: next.Due, key: c.sl.key(), id: next.ID})
	return out
}

func absenceMatch(r *compiledRule, a *waitA, key string, now time.Time) workflows.Match {
	ev := event.Event{EventID: a.ID, UserID: a.User, ItemID: a.Item, Type: a.Type, TS: time.UnixMilli(a.TS).UTC(), Attrs: a.Attrs}
	return newMatch(r, &ev, key, now)
}

// fire fires the absences due at the watermark and returns their matches. A timer fires under
// the rule version that set it, when that version is still loaded; otherwise it ends with it.
func (m *machine) fire(rules map[string]*compiledRule, now time.Time) []workflows.Match {
	var out []workflows.Match
	for len(m.timers) > 0 && m.timers[0].due <= m.wm {
		t := heap.Pop(&m.timers).(timer)
		in := m.get(t.key)
		if in == nil || in.A == nil || in.A.ID != t.id || in.A.State != "" {
			continue
		}
		in.A.State = "f"
		m.put(t.key, in)
		r := rules[ruleOfKey(t.key)]
		if r == nil || instKey(r, "abs", keyOfInst(t.key)) != t.key {
			continue // the rule was disabled or replaced: its instances end with it
		}
		out = append(out, absenceMatch(r, in.A, keyOfInst(t.key), now))
	}
	return out
}

// ruleOfKey and keyOfInst split an instance key (rule:vN:kind:key).
func ruleOfKey(k string) string {
	for i := 0; i < len(k); i++ {
		if k[i] == ':' {
			return k[:i]
		}
	}
	return k
}

func keyOfInst(k string) string {
	n := 0
	for i := 0; i < len(k); i++ {
		if k[i] == ':' {
			if n++; n == 3 {
				return k[i+1:]
			}
		}
	}
	return ""
}

// reenter reports whether a match may start under its rule's re-entry policy, holding the key
// for it when it may. A replayed match holds its own mark and passes again.
func (m *machine) reenter(r *compiledRule, match workflows.Match) bool {
	if r.Reentry == ReentryEvery || match.Shadow {
		return true
	}
	ttl := OnceTTL
	if r.Reentry == ReentryCooldown {
		ttl = r.Cooldown.D()
	}
	at := ms(match.EventTime)
	if r.Kind == KindAbsence {
		at += msd(r.Within.D()) // an absence happens when its window ends
	}
	id := workflows.ReachID(match.RuleID, match.UserID, match.MatchKey)
	k := reentryKey(r.ID, match.UserID)
	if in := m.get(k); in != nil && in.Match != id && at < in.Until {
		return false
	} else if in != nil && in.Match == id {
		return true
	}
	m.put(k, &instance{Match: id, Until: at + msd(ttl), Exp: at + msd(ttl)})
	return true
}

// sweep forgets the instances the watermark has passed; it runs when the watermark moved on by
// sweepEvery, so its cost is spread over the partition's event time.
func (m *machine) sweep() {
	if m.wm-m.lastSweep < msd(sweepEvery) {
		return
	}
	m.lastSweep = m.wm
	// The minutes before the watermark's: every key listed there expired, unless it moved on.
	for now := minuteOf(m.wm); len(m.minutes) > 0 && m.minutes[0] < now; {
		mn := heap.Pop(&m.minutes).(int64)
		for _, sl := range m.expiry[mn] {
			if !sl.gone() && instanceExp(sl.raw()) < m.wm {
				m.drop(sl.key())
			}
		}
		delete(m.expiry, mn)
	}
}
