package cep

import "hash/maphash"

// slotIndex finds a partition's slots by a 64-bit hash of their key: open-addressing tables of
// (hash, slot) pairs, probed linearly. A partition's state is far larger than the caches and each
// event reads instances no recent event touched, so a lookup is bound by its cache misses: here
// one for the table (the hash and the slot pointer share a line) where Go's map takes one or two
// (its control word, then the slot's entry), then the slot. The tables hold no strings and keep
// each key's hash, so growing one moves 16 bytes an entry without reading a key; a key is hashed
// once per event and rule. Keys that share a hash (about one pair in ten million at two million
// keys) are separate entries, each compared whole. Removal shifts the entries after it back (no
// tombstones), so probes stay short however the state churns.
//
// The hash's top byte picks one of 256 tables, each growing on its own: a table doubles when it
// is three quarters full, which stops the partition for the time it takes to move its entries
// (about 70 ns each), so no growth moves more than about a 256th of the state: one table holding
// everything stopped 111 ms to move 786,432 entries; with 256, the slowest of two million adds
// took 8 ms.
type slotIndex struct {
	seed maphash.Seed
	segs [256]slotTable
	n    int
}

type slotTable struct {
	tab []slotEntry // a power of two (or empty), at most 3/4 full
	n   int
}

type slotEntry struct {
	h  uint64
	sl *slot // nil: empty
}

func newSlotIndex() slotIndex { return slotIndex{seed: maphash.MakeSeed()} }

func (x *slotIndex) hash(key string) uint64 { return maphash.String(x.seed, key) }

func (x *slotIndex) table(h uint64) *slotTable { return &x.segs[h>>56] }

// find returns key's slot (h its hash), nil when there is none.
func (x *slotIndex) find(h uint64, key string) *slot {
	t := x.table(h)
	if i := t.at(h, key); i >= 0 {
		return t.tab[i].sl
	}
	return nil
}

// add indexes sl (its key absent, h its hash).
func (x *slotIndex) add(h uint64, sl *slot) {
	x.table(h).add(slotEntry{h: h, sl: sl})
	x.n++
}

// remove unindexes key's slot and returns it (nil when there is none).
func (x *slotIndex) remove(h uint64, key string) *slot {
	sl := x.table(h).remove(h, key)
	if sl != nil {
		x.n--
	}
	return sl
}

func (x *slotIndex) len() int { return x.n }

// each calls f on every slot, in no order; f must not change the index.
func (x *slotIndex) each(f func(*slot)) {
	for i := range x.segs {
		for _, e := range x.segs[i].tab {
			if e.sl != nil {
				f(e.sl)
			}
		}
	}
}

// at returns the position of key's entry (h its hash), -1 when there is none.
func (t *slotTable) at(h uint64, key string) int {
	if len(t.tab) == 0 {
		return -1
	}
	mask := uint64(len(t.tab) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := &t.tab[i]
		if e.sl == nil {
			return -1
		}
		if e.h == h && e.sl.keyIs(key) {
			return int(i)
		}
	}
}

func (t *slotTable) add(e slotEntry) {
	if (t.n+1)*4 > len(t.tab)*3 {
		old := t.tab
		t.tab = make([]slotEntry, max(8, 2*len(old)))
		for _, o := range old {
			if o.sl != nil {
				t.insert(o)
			}
		}
	}
	t.insert(e)
	t.n++
}

func (t *slotTable) insert(e slotEntry) {
	mask := uint64(len(t.tab) - 1)
	i := e.h & mask
	for t.tab[i].sl != nil {
		i = (i + 1) & mask
	}
	t.tab[i] = e
}

func (t *slotTable) remove(h uint64, key string) *slot {
	at := t.at(h, key)
	if at < 0 {
		return nil
	}
	sl := t.tab[at].sl
	// Backward shift: each entry after the hole that may move into it (its home is not between
	// the hole and it, cyclically) does, leaving its own place as the hole.
	mask := uint64(len(t.tab) - 1)
	hole := uint64(at)
	for j := (hole + 1) & mask; t.tab[j].sl != nil; j = (j + 1) & mask {
		home := t.tab[j].h & mask
		if (j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j) {
			t.tab[hole] = t.tab[j]
			hole = j
		}
	}
	t.tab[hole] = slotEntry{}
	t.n--
	return sl
}
