package cep

import (
	"unsafe"

	"github.com/omegareach/omega/event"
)

// A batch's lookups wait on memory: a partition's state is far larger than the caches, each
// event reads instances no recent event touched, and a lookup's two reads (the table's entry,
// then the block it names) each miss, one after the other, as the rules apply one event after
// another (at a million instances the table's probe alone took a ninth of the stage's CPU). prefetch
// reads them ahead for a run of events, entries first and then blocks, in loops whose reads do
// not depend on each other, so the processor has many misses in flight at once instead of one;
// the rules then find their instances in the cache. It changes nothing (a hint: a key missed or
// evicted meanwhile is only looked up at the usual cost).

// prefetchRun is how many events prefetch reads ahead: their lines stay in the core's cache
// until the rules reach them.
const prefetchRun = 32

// instKind is the instance kind a rule the machine owns keeps per key, for its steps and
// prefetch alike ("" for none: a single event's rule keeps nothing until a match's re-entry
// mark).
func instKind(r *compiledRule) string {
	switch r.Kind {
	case KindCount:
		return "count"
	case KindSequence:
		return "seq"
	case KindAbsence:
		return "abs"
	}
	return ""
}

// prefetch reads ahead the table entries and blocks of the instances evs's rules will look up:
// the keys hashed first, then each loop only reads.
func (m *machine) prefetch(rules []compiledRule, byType map[string][]int, evs []event.Event) {
	hs := m.pfHash[:0]
	for i := range evs {
		ev := &evs[i]
		if ev.UserID == "" {
			continue
		}
		for _, j := range byType[ev.Type] {
			r := &rules[j]
			kind := instKind(r)
			if kind == "" || !ownedByPartition(r) {
				continue
			}
			key, ok := ruleKey(r, ev, &m.pfKey)
			if !ok {
				continue
			}
			b := appendInstKey(m.pfBuf[:0], r, kind, key)
			m.pfBuf = b
			hs = append(hs, m.inst.hash(unsafe.String(unsafe.SliceData(b), len(b))))
		}
	}
	m.pfHash = hs
	var sink uint64
	refs := m.pfRefs[:0]
	for _, h := range hs {
		t := m.inst.table(h)
		if n := uint64(len(t.tab)); n > 0 {
			e := &t.tab[h&(n-1)]
			sink += e.h
			refs = append(refs, e.r)
		}
	}
	for _, r := range refs {
		if r != 0 {
			sink += uint64(m.a.blk(r)[0])
		}
	}
	m.pfRefs = refs[:0]
	m.pfSink += sink
}
