package cep

import "hash/maphash"

// slotIndex finds a partition's slots by a 64-bit hash of their key, so the map it keeps holds
// no strings: growing it (a partition whose state grows splits its tables all the time) moves
// 16 bytes an entry without reading and hashing each key again, and a key is hashed once per
// event and rule, not once per map operation. Keys that share a hash (about one pair in ten
// million at two million keys) chain through slot.next, each compared whole.
type slotIndex struct {
	seed maphash.Seed
	m    map[uint64]*slot
	n    int
}

func newSlotIndex() slotIndex { return slotIndex{seed: maphash.MakeSeed(), m: map[uint64]*slot{}} }

func (x *slotIndex) hash(key string) uint64 { return maphash.String(x.seed, key) }

// find returns key's slot (h is its hash), nil when there is none.
func (x *slotIndex) find(h uint64, key string) *slot {
	for sl := x.m[h]; sl != nil; sl = sl.next {
		if sl.keyIs(key) {
			return sl
		}
	}
	return nil
}

// add indexes sl (its key absent, h its hash).
func (x *slotIndex) add(h uint64, sl *slot) {
	sl.next = x.m[h]
	x.m[h] = sl
	x.n++
}

// remove unindexes key's slot and returns it (nil when there is none).
func (x *slotIndex) remove(h uint64, key string) *slot {
	var prev *slot
	for sl := x.m[h]; sl != nil; prev, sl = sl, sl.next {
		if !sl.keyIs(key) {
			continue
		}
		switch {
		case prev != nil:
			prev.next = sl.next
		case sl.next != nil:
			x.m[h] = sl.next
		default:
			delete(x.m, h)
		}
		sl.next = nil
		x.n--
		return sl
	}
	return nil
}

func (x *slotIndex) len() int { return x.n }

// each calls f on every slot, in no order; f must not change the index.
func (x *slotIndex) each(f func(*slot)) {
	for _, sl := range x.m {
		for ; sl != nil; sl = sl.next {
			f(sl)
		}
	}
}
