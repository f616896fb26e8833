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
	a    *arena // the blocks its refs name
	segs [256]slotTable
	n    int
}

type slotTable struct {
	tab []slotEntry // a power of two (or empty), at most 3/4 full
	n   int
}

type slotEntry struct {
	h uint64
	r ref // 0: empty
}

func newSlotIndex(a *arena) slotIndex { return slotIndex{seed: maphash.MakeSeed(), a: a} }

func (x *slotIndex) hash(key string) uint64 { return maphash.String(x.seed, key) }

func (x *slotIndex) table(h uint64) *slotTable { return &x.segs[h>>56] }

// find returns key's block (h its hash), 0 when there is none.
func (x *slotIndex) find(h uint64, key string) ref {
	t := x.table(h)
	if i := t.at(x.a, h, key); i >= 0 {
		return t.tab[i].r
	}
	return 0
}

// add indexes r (its key absent, h its hash).
func (x *slotIndex) add(h uint64, r ref) {
	x.table(h).add(slotEntry{h: h, r: r})
	x.n++
}

// move points key's entry (h its hash) at its instance's new block.
func (x *slotIndex) move(h uint64, key string, r ref) {
	t := x.table(h)
	t.tab[t.at(x.a, h, key)].r = r
}

// remove unindexes key's block and returns it (0 when there is none).
func (x *slotIndex) remove(h uint64, key string) ref {
	r := x.table(h).remove(x.a, h, key)
	if r != 0 {
		x.n--
	}
	return r
}

func (x *slotIndex) len() int { return x.n }

// each calls f on every block, in no order; f must not change the index.
func (x *slotIndex) each(f func(ref)) {
	for i := range x.segs {
		for _, e := range x.segs[i].tab {
			if e.r != 0 {
				f(e.r)
			}
		}
	}
}

// at returns the position of key's entry (h its hash), -1 when there is none.
func (t *slotTable) at(a *arena, h uint64, key string) int {
	if len(t.tab) == 0 {
		return -1
	}
	mask := uint64(len(t.tab) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := &t.tab[i]
		if e.r == 0 {
			return -1
		}
		if e.h == h && a.blk(e.r).keyIs(key) {
			return int(i)
		}
	}
}

func (t *slotTable) add(e slotEntry) {
	if (t.n+1)*4 > len(t.tab)*3 {
		old := t.tab
		t.tab = make([]slotEntry, max(8, 2*len(old)))
		for _, o := range old {
			if o.r != 0 {
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
	for t.tab[i].r != 0 {
		i = (i + 1) & mask
	}
	t.tab[i] = e
}

func (t *slotTable) remove(a *arena, h uint64, key string) ref {
	at := t.at(a, h, key)
	if at < 0 {
		return 0
	}
	r := t.tab[at].r
	// Backward shift: each entry after the hole that may move into it (its home is not between
	// the hole and it, cyclically) does, leaving its own place as the hole.
	mask := uint64(len(t.tab) - 1)
	hole := uint64(at)
	for j := (hole + 1) & mask; t.tab[j].r != 0; j = (j + 1) & mask {
		home := t.tab[j].h & mask
		if (j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j) {
			t.tab[hole] = t.tab[j]
			hole = j
		}
	}
	t.tab[hole] = slotEntry{}
	t.n--
	return r
}
