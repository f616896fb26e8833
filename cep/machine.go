package cep

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
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
	// inst indexes the instances, held encoded (codec.go) in the arena's blocks with their keys
	// and flags (flagDirty), the way Kafka Streams' stores hold serialized state: a few dozen
	// bytes per instance, none of them for the collector to mark, and the changelog copies them as
	// they are. An instance is decoded to advance it and encoded again when it changed.
	inst slotIndex
	a    *arena
	// lastKey's block is the one lookup found last: put, which follows it on the same key,
	// writes it without looking the key up again; hashKey the key hashed last, with its hash.
	// Neither key is ever a view of a block (a block is reused once released).
	lastKey string
	lastRef ref
	hashKey string
	hashVal uint64
	encBuf  []byte // putAt's encoding, before it goes to its block
	// kbuf holds the key of the current cursor (at), rkbuf the rule key of the event being
	// applied.
	kbuf, rkbuf []byte
	// scratch is the instance getAt decodes into: a rule's step reads, advances and writes it
	// back (putAt) before the next step decodes, and keeps none of it (a match clones what it
	// takes).
	scratch *instance
	// dirty lists the blocks changed since the last commit, each once (its flags say whether it is
	// listed; a block an instance moved out of is listed stale, its new one again); a dropped
	// block (no instance) writes its key's deletion. Blocks, not keys: the commit copies them
	// without looking each up again.
	dirty []ref
	// retired are the blocks instances moved out of since the last commit: released once it has
	// encoded the dirty list, so no block the list names stale is reused before.
	retired []ref
	jobs    map[string]bool // the fan-out jobs among them (fanout.go)
	timers  timerQueue
	armed   int // timers set by events (not restores), ever: a batch fires as many more as it set
	// wm is the watermark (ms): event time up to which the partition is complete, less the
	// allowed lateness; timers due at or before it fire.
	wm        int64
	lateness  int64 // allowed lateness (ms)
	lastSweep int64
	// expiry indexes the blocks by the minute (sweepEvery) of their expiry, so a sweep visits the
	// instances due, not all of them; an instance moved to another minute or block is listed
	// again, and the sweep checks each block's current expiry (and skips the blocks dropped or
	// released meanwhile).
	expiry  map[int64][]ref
	minutes minuteHeap
	// prefetch's buffers and the sum its reads go to (prefetch.go).
	pfKey, pfBuf []byte
	pfHash       []uint64
	pfRefs       []ref
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

// listExpiry lists r under the minute of its expiry.
func (m *machine) listExpiry(r ref, exp int64) {
	mn := minuteOf(exp)
	rs, ok := m.expiry[mn]
	if !ok {
		heap.Push(&m.minutes, mn)
	}
	m.expiry[mn] = append(rs, r)
}

func newMachine(allowedLateness time.Duration) *machine {
	a := newArena()
	return &machine{inst: newSlotIndex(a), a: a, jobs: map[string]bool{}, lateness: msd(allowedLateness), expiry: map[int64][]ref{}}
}

// newBlock makes a block for key's instance raw, marked dirty.
func (m *machine) newBlock(key string, raw []byte) ref {
	// A new instance grows: room for a few more bytes than it has, so its next events mostly
	// rewrite it in place.
	r := m.a.alloc(len(key) + len(raw) + 16)
	b := m.a.blk(r)
	b.setKey(key)
	b.setRaw(raw)
	b.setFlags(flagDirty)
	return r
}

// hash is key's hash in inst; a key looked up and then put is hashed once.
func (m *machine) hash(key string) uint64 {
	if key != m.hashKey {
		m.hashKey, m.hashVal = key, m.inst.hash(key)
	}
	return m.hashVal
}

// find returns key's block, 0 when there is none.
func (m *machine) find(key string) ref { return m.inst.find(m.hash(key), key) }

// lookup finds key's block, through the one-entry cache.
func (m *machine) lookup(key string) ref {
	if m.lastRef != 0 && key == m.lastKey {
		return m.lastRef
	}
	r := m.find(key)
	if r != 0 {
		m.lastKey, m.lastRef = key, r
	}
	return r
}

// get decodes key's instance; nil when there is none.
func (m *machine) get(key string) *instance {
	r := m.lookup(key)
	if r == 0 {
		return nil
	}
	in, err := decodeInstance(m.a.blk(r).raw())
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
	c := cursor{key: key, h: m.hash(key)}
	c.r = m.inst.find(c.h, key)
	n := len(m.dirty)
	m.write(&c, raw, instanceExp(raw))
	m.a.blk(c.r).setFlags(0) // restored: nothing to commit
	m.dirty = m.dirty[:n]
	m.watch(key, in)
	return nil
}

// restore adds a decoded instance (the legacy JSON state).
func (m *machine) restore(key string, in *instance) error {
	return m.restoreRaw(key, appendInstance(nil, in))
}

// watch registers what a restored instance waits for: an absence's timer, a fan-out job.
func (m *machine) watch(key string, in *instance) {
	if in == nil {
		return
	}
	if in.Fan != nil {
		m.jobs[strings.Clone(key)] = true
	}
	if in.A != nil && in.A.State == "" {
		heap.Push(&m.timers, timer{due: in.A.Due, key: strings.Clone(key), id: in.A.ID})
	}
}

// forget removes a key a restored record deleted.
func (m *machine) forget(key string) {
	m.lastRef = 0
	if r := m.inst.remove(m.inst.hash(key), key); r != 0 {
		m.a.release(r) // restored: no commit writes its deletion
	}
	delete(m.jobs, key)
}

// put stores in as key's instance, changed since the last commit.
func (m *machine) put(key string, in *instance) {
	c := cursor{key: key, h: m.hash(key), r: m.lookup(key)}
	m.putAt(&c, in)
	m.lastKey, m.lastRef = key, c.r
}

// cursor is an instance key the rules read and write as they apply an event: built in the
// machine's buffer (valid until the next cursor: a new block copies it), hashed and looked up
// once.
type cursor struct {
	key string
	h   uint64
	r   ref // 0: no instance
}

// at is the cursor of rule r's instance of kind for key: instKey's key, built without allocating.
func (m *machine) at(r *compiledRule, kind, key string) cursor {
	b := appendInstKey(m.kbuf[:0], r, kind, key)
	m.kbuf = b
	k := unsafe.String(unsafe.SliceData(b), len(b))
	h := m.inst.hash(k)
	return cursor{key: k, h: h, r: m.inst.find(h, k)}
}

// getAt decodes the cursor's instance into the machine's scratch instance (nil when there is
// none): valid until the next getAt, for a rule's step that writes it back with putAt and keeps
// nothing of it. get decodes a new instance.
func (m *machine) getAt(c *cursor) *instance {
	if c.r == 0 {
		return nil
	}
	in := m.scratch
	if in == nil {
		in = &instance{}
		m.scratch = in
	}
	if err := decodeInstanceInto(m.a.blk(c.r).raw(), in); err != nil {
		// Only this machine's encoder wrote it, and a restore checked what it read.
		panic(fmt.Sprintf("cep: instance %s does not decode: %v", c.key, err))
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
	m.encBuf = appendInstance(m.encBuf[:0], in)
	m.write(c, m.encBuf, in.Exp)
	if in.Fan != nil {
		m.jobs[strings.Clone(c.key)] = true
	}
}

// write stores raw (expiring at exp) as the cursor's instance, marked dirty: in its block when it
// fits, else in a new one (a new instance, or one that outgrew its block: the index, the dirty
// list and the expiry index follow it, and the old block is released).
func (m *machine) write(c *cursor, raw []byte, exp int64) {
	if c.r == 0 {
		c.r = m.newBlock(c.key, raw)
		m.inst.add(c.h, c.r)
		m.dirty = append(m.dirty, c.r)
		m.listExpiry(c.r, exp)
		return
	}
	b := m.a.blk(c.r)
	relist := minuteOf(instanceExp(b.raw())) != minuteOf(exp)
	if !b.setRaw(raw) {
		old := c.r
		c.r = m.newBlock(c.key, raw)
		m.inst.move(c.h, c.key, c.r)
		m.a.blk(old).setFlags(flagFree) // not live: the dirty list skips it
		m.retired = append(m.retired, old)
		if m.lastRef == old {
			m.lastRef = c.r
		}
		m.dirty = append(m.dirty, c.r)
		m.listExpiry(c.r, exp)
		return
	}
	if !b.dirty() {
		m.dirty = append(m.dirty, c.r)
	}
	b.setFlags(flagDirty)
	if relist {
		m.listExpiry(c.r, exp)
	}
}

// drop removes key's instance: its block, marked gone, keeps the key for the commit that writes
// its deletion (and releases it).
func (m *machine) drop(key string) {
	if r := m.inst.remove(m.inst.hash(key), key); r != 0 {
		m.lastRef = 0
		b := m.a.blk(r)
		if !b.dirty() {
			m.dirty = append(m.dirty, r)
		}
		binary.LittleEndian.PutUint32(b[0:], uint32(b.keyLen())) // the instance's bytes dropped
		b.setFlags(flagGone)
	}
}

// changed reports whether anything changed since the last commit.
func (m *machine) changed() bool { return len(m.dirty) > 0 }

// encodeDirty writes what changed since the last commit: the instances written, the keys deleted.
// Their flags are cleared, and the commit's plan holds them (clean).
func (m *machine) encodeDirty(w *recordWriter) {
	n := 0
	for _, r := range m.dirty {
		if b, ok := m.a.current(r); ok {
			n += putSize(b.key(), b.raw())
		}
	}
	w.grow(n)
	for _, r := range m.dirty {
		b, ok := m.a.current(r)
		if !ok {
			continue // its instance moved to another block, listed after it
		}
		switch {
		case b.gone():
			w.del(b.key())
			m.a.release(r)
		case b.dirty():
			w.put(b.key(), b.raw())
			b.setFlags(0)
		}
	}
	for _, r := range m.retired {
		m.a.release(r)
	}
	m.retired = m.retired[:0]
}

// blocks lists the instances' blocks (a snapshot's, written a piece at a time: a block dropped or
// left meanwhile is skipped, its key's later life is in the log).
//
// They are the index's, listed from the arena in memory order (arena.inUse).
func (m *machine) blocks() []ref { return m.a.inUse(make([]ref, 0, m.inst.len())) }

// keys lists the instance keys (tests).
func (m *machine) keys() []string {
	out := make([]string, 0, m.inst.len())
	m.inst.each(func(r ref) { out = append(out, strings.Clone(m.a.blk(r).key())) })
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
		b = append(append(append(b, r.ID...), ":v"...), strconv.Itoa(r.StateFrom())...)
		b = append(b, ':')
	} else {
		b = append(b, r.instPrefix...)
	}
	return append(append(append(b, kind...), ':'), key...)
}

func reentryKey(ruleID, userID string) string { return ruleID + ":reentry:" + userID }

// reentryOf is what a match's re-entry mark is kept under: its correlation key (a rule keyed on
// user and coupon allows one reach per user and coupon), written as the user alone for a rule
// keyed on the user alone (the marks' form before keys other than the user were told apart).
func reentryOf(m workflows.Match) string {
	if m.CorrelationKey == "" || m.CorrelationKey == m.UserID {
		return m.UserID
	}
	return m.UserID + "|" + m.CorrelationKey
}

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
func (m *machine) apply(r *compiledRule, ev *event.Event, vars *condVars, now time.Time) []workflows.Match {
	if ev.UserID == "" {
		return nil
	}
	// The key is built in the machine's buffer: the cursors copy it, a match clones it.
	key, ok := ruleKey(r, ev, &m.rkbuf)
	if !ok {
		metrics.Unkeyed.WithLabelValues(r.ID).Inc()
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

func (m *machine) applyCount(r *compiledRule, ev *event.Event, vars *condVars, key string, ts, exp int64, now time.Time) []workflows.Match {
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

func (m *machine) applySequence(r *compiledRule, ev *event.Event, vars *condVars, key string, ts, exp int64, now time.Time) []workflows.Match {
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

func (m *machine) applyAbsence(r *compiledRule, ev *event.Event, vars *condVars, key string, ts int64, now time.Time) []workflows.Match {
	c := m.at(r, instKind(r), key)
	in := m.getAt(&c)
	w := msd(r.Within.D())
	if r.absent.test(ev, vars) && in != nil && in.A != nil && in.A.State == "" && ts >= in.A.TS && ts <= in.A.Due &&
		in.A.Due > m.wm {
		// A B within the window, in event time, before the watermark passed its end (after, the
		// absence is decided, fired or not yet): no absence.
		in.A.State = "c"
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
	heap.Push(&m.timers, timer{due: next.Due, key: strings.Clone(c.key), id: next.ID})
	m.armed++
	return out
}

func absenceMatch(r *compiledRule, a *waitA, key string, now time.Time) workflows.Match {
	ev := event.Event{EventID: a.ID, UserID: a.User, ItemID: a.Item, Type: a.Type, TS: time.UnixMilli(a.TS).UTC(), Attrs: a.Attrs}
	m := newMatch(r, &ev, key, now)
	m.Due = time.UnixMilli(a.Due).UTC()
	return m
}

// fire fires the absences due at the watermark and returns their matches, at most limit of them
// (none when limit is 0, every one due when it is negative). A timer fires under the rule version
// that set it, when that version is still loaded; otherwise it ends with it.
//
// What the watermark passed is decided whether or not it has fired yet: a B that arrives after
// the watermark passed the wait's end does not cancel it (applyAbsence), and the sweep keeps the
// instances of timers still due. So a partition may fire a restart's thousands of overdue timers
// a slice at a time, between its batches, with the same matches as at once.
func (m *machine) fire(rules map[string]*compiledRule, now time.Time, limit int) []workflows.Match {
	var out []workflows.Match
	for len(m.timers) > 0 && m.timers[0].due <= m.wm && (limit < 0 || len(out) < limit) {
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
func (m *machine) reenter(r *compiledRule, match workflows.Match) (suppressed string) {
	if r.Reentry == ReentryEvery || match.Shadow {
		return ""
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
	k := reentryKey(r.ID, reentryOf(match))
	if in := m.get(k); in != nil && in.Match != id && at < in.Until {
		return reentryReason(r, match, in.Match, in.Until)
	} else if in != nil && in.Match == id {
		return ""
	}
	m.put(k, &instance{Match: id, Until: at + msd(ttl), Exp: at + msd(ttl)})
	return ""
}

// reentryReason says why rule r's re-entry policy suppresses match: the reach that holds its key,
// until when in event time (ms; 0 when unknown).
func reentryReason(r *compiledRule, match workflows.Match, holder string, until int64) string {
	per := "user"
	if k := reentryOf(match); k != match.UserID {
		per = "user and key " + match.CorrelationKey
	}
	policy := "one reach per " + per + " (reentry: once)"
	if r.Reentry == ReentryCooldown {
		policy = "one reach per " + per + " every " + r.Cooldown.D().String() + " (reentry: cooldown)"
	}
	s := fmt.Sprintf("rule %s allows %s: reach %s holds it", r.ID, policy, holder)
	if until > 0 {
		s += " until " + time.UnixMilli(until).UTC().Format(time.RFC3339)
	}
	return s
}

// sweep forgets the instances the watermark has passed; it runs when the watermark moved on by
// sweepEvery, so its cost is spread over the partition's event time.
func (m *machine) sweep() {
	if m.wm-m.lastSweep < msd(sweepEvery) {
		return
	}
	if m.dueBy(m.wm) {
		return // an instance whose timer is due waits for it to fire (fire's slices), then goes
	}
	m.lastSweep = m.wm
	// The minutes before the watermark's: every key listed there expired, unless it moved on.
	for now := minuteOf(m.wm); len(m.minutes) > 0 && m.minutes[0] < now; {
		mn := heap.Pop(&m.minutes).(int64)
		for _, r := range m.expiry[mn] {
			b, ok := m.a.current(r)
			if !ok {
				continue // released: its instance moved (and is listed again) or its drop is committed
			}
			if !b.gone() && instanceExp(b.raw()) < m.wm {
				m.drop(b.key())
			}
		}
		delete(m.expiry, mn)
	}
}
