package cep

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Keys that share a hash chain and stay apart: found, replaced and removed one by one.
func TestSlotIndexCollisions(t *testing.T) {
	a := newArena()
	x := newSlotIndex(a)
	key := func(r ref) string { return a.blk(r).key() }
	const h = 42 // every key under one hash, as if they collided
	keys := []string{"a", "b", "c", "d"}
	for _, k := range keys {
		require.Zero(t, x.find(h, k))
		x.add(h, keyBlock(a, k))
	}
	require.Equal(t, 4, x.len())
	for _, k := range keys {
		require.Equal(t, k, key(x.find(h, k)))
	}
	// the middle, the head, the tail, the last
	for i, k := range []string{"b", "d", "a", "c"} {
		require.Equal(t, k, key(x.remove(h, k)))
		require.Zero(t, x.find(h, k))
		require.Zero(t, x.remove(h, k))
		require.Equal(t, 3-i, x.len())
		var left []string
		x.each(func(r ref) { left = append(left, key(r)) })
		require.Len(t, left, 3-i)
		require.NotContains(t, left, k)
	}
	require.Zero(t, x.len())
	x.add(x.hash("e"), keyBlock(a, "e"))
	require.NotZero(t, x.find(x.hash("e"), "e"))
	var all []string
	x.each(func(r ref) { all = append(all, key(r)) })
	require.True(t, slices.Equal(all, []string{"e"}))
}

// keyBlock is a block holding key and no instance.
func keyBlock(a *arena, key string) ref {
	r := a.alloc(len(key))
	a.blk(r).setKey(key)
	return r
}

// An instance that outgrows its block moves to a larger one: the index, the commit and the sweep
// follow it, its old block is released (a ref to it is stale) and reused; a dropped instance's
// block keeps its key until the commit that writes its deletion releases it.
func TestBlockMoves(t *testing.T) {
	m := newMachine(0)
	m.put("r:v1:count:u1", &instance{Exp: 60_000})
	first := m.find("r:v1:count:u1")
	m.put("r:v1:count:u1", &instance{Exp: 60_000, Seen: []seen{{TS: 1, ID: strings.Repeat("e", 500)}}}) // outgrows its block
	moved := m.find("r:v1:count:u1")
	require.NotEqual(t, first, moved)
	require.False(t, m.a.live(first), "the old block is retired")
	require.True(t, m.a.live(moved))
	require.Equal(t, []ref{first, moved}, m.dirty, "the old block listed stale, the new one again")
	requireBlocksIndexed(t, m) // the retired block is not listed
	in := m.get("r:v1:count:u1")
	require.Len(t, in.Seen, 1)
	w := newRecord(nil)
	m.encodeDirty(w)
	m.clean()
	require.Equal(t, map[string]int{"r:v1:count:u1": 1}, recordKeys(t, w.b), "written once, the stale ref skipped")
	// Once the commit has encoded the list, a new instance of the old block's class takes it back,
	// under a new generation.
	m.put("r:v1:count:u2", &instance{Exp: 60_000})
	reused := m.find("r:v1:count:u2")
	require.Equal(t, first.chunk(), reused.chunk())
	require.Equal(t, first.off(), reused.off())
	require.NotEqual(t, first, reused)
	require.False(t, m.a.live(first))
	require.True(t, m.a.live(reused))
	m.encodeDirty(newRecord(nil))
	m.clean()

	m.drop("r:v1:count:u1")
	require.Zero(t, m.find("r:v1:count:u1"))
	require.True(t, m.a.blk(moved).gone())
	require.Equal(t, "r:v1:count:u1", m.a.blk(moved).key())
	requireBlocksIndexed(t, m) // nor the dropped one
	w = newRecord(nil)
	m.encodeDirty(w)
	m.clean()
	r, err := readRecord(w.b)
	require.NoError(t, err)
	k, raw, ok := r.next()
	require.True(t, ok)
	require.Equal(t, "r:v1:count:u1", k)
	require.Nil(t, raw, "a deletion")
	require.False(t, m.a.live(moved), "released once its deletion is written")

	// Moved, dropped, then made again before the commit: the record deletes the key, then writes
	// it, in that order.
	m.put("k", &instance{Exp: 60_000})
	m.put("k", &instance{Exp: 60_000, Seen: []seen{{TS: 1, ID: strings.Repeat("e", 300)}}})
	m.drop("k")
	m.put("k", &instance{Exp: 60_000, Seen: []seen{{TS: 2, ID: "x"}}})
	w = newRecord(nil)
	m.encodeDirty(w)
	m.clean()
	again := newMachine(0)
	again.put("k", &instance{Exp: 1})
	require.NoError(t, apply(again, w.b))
	require.Equal(t, m.get("k"), again.get("k"))
	require.Equal(t, "x", again.get("k").Seen[0].ID)
}

// An instance larger than every size class has a chunk of its own, with room to grow; released,
// its chunk number is reused under a new generation.
func TestHugeBlocks(t *testing.T) {
	m := newMachine(0)
	big := func(n int) *instance {
		in := &instance{Exp: 60_000}
		for i := range n {
			in.Seen = append(in.Seen, seen{TS: int64(i), ID: "event-" + strconv.Itoa(i)})
		}
		return in
	}
	m.put("k", big(8000))
	r := m.find("k")
	require.Equal(t, uint8(classHuge), m.a.blk(r)[9])
	m.put("k", big(8010)) // a little larger: in place
	require.Equal(t, r, m.find("k"))
	m.put("k", big(12000)) // much larger: moves
	moved := m.find("k")
	require.NotEqual(t, r, moved)
	require.False(t, m.a.live(r))
	require.Equal(t, big(12000).Seen, m.get("k").Seen)
	m.put("small", &instance{Exp: 60_000})
	requireBlocksIndexed(t, m)
	m.encodeDirty(newRecord(nil))
	m.clean()
	m.drop("k")
	m.encodeDirty(newRecord(nil))
	m.clean()
	require.False(t, m.a.live(moved))
	chunks := len(m.a.chunks)
	m.put("k2", big(8000))
	again := m.find("k2")
	require.Len(t, m.a.chunks, chunks, "a released chunk number is reused")
	require.Contains(t, []uint64{r.chunk(), moved.chunk()}, again.chunk())
	require.NotEqual(t, r, again)
	require.NotEqual(t, moved, again)
	require.Equal(t, big(8000).Seen, m.get("k2").Seen)
	requireBlocksIndexed(t, m)
}

// recordKeys counts a record's keys.
func recordKeys(t *testing.T, rec []byte) map[string]int {
	r, err := readRecord(rec)
	require.NoError(t, err)
	out := map[string]int{}
	for {
		k, _, ok := r.next()
		if !ok {
			break
		}
		out[k]++
	}
	return out
}

// The table against a map, through many adds and removes whose hashes crowd a few homes (the
// last ones wrapping around the table's end): every key present is found, every key removed is
// not, and the table grows as it fills.
func TestSlotIndexAgainstAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a := newArena()
	x := newSlotIndex(a)
	model := map[string]uint64{}
	var keys []string
	for step := range 6_000 {
		if len(keys) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(keys))
			k := keys[i]
			keys[i] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			require.NotZero(t, x.remove(model[k], k), k)
			delete(model, k)
		} else {
			k := "k" + strconv.Itoa(step)
			// Few distinct homes, some at the top of a small table's range: long clusters that wrap.
			h := uint64(rng.IntN(8)) | uint64(rng.IntN(2))<<63
			if t := x.table(h); rng.IntN(2) == 0 && len(t.tab) > 0 {
				h = uint64(len(t.tab)-1-rng.IntN(4)) | h&(1<<63)
			}
			x.add(h, keyBlock(a, k))
			model[k] = h
			keys = append(keys, k)
		}
		if step%499 == 0 {
			for k, h := range model {
				r := x.find(h, k)
				require.NotZero(t, r, k)
				require.Equal(t, k, a.blk(r).key())
			}
		}
	}
	require.Equal(t, len(model), x.len())
	n := 0
	x.each(func(r ref) { n++; require.Contains(t, model, a.blk(r).key()) })
	require.Equal(t, len(model), n)
	for k, h := range model {
		require.NotZero(t, x.remove(h, k))
		require.Zero(t, x.find(h, k))
	}
	require.Zero(t, x.len())
}

// The arena under churn: instances made, grown past their blocks (moved), shrunk, dropped and
// made again in random order, committed as the stage commits (records, and snapshots in small
// pieces). After every commit the log replayed from its start, and the last finished snapshot
// with the log kept after it, restore exactly the machine's instances.
func TestArenaChurnRestores(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := newMachine(0)
	c := newChangelog(nil, "t", "g", "t", 0)
	c.snapMin, c.piece = 1, 8 // a snapshot whenever the log outgrows the last, 8 keys a commit
	var log, pieces, snap [][]byte
	durable := newMachine(0) // the log replayed from its start
	trimmed, snapLog := 0, 0 // records trimmed off the log; where the last snapshot's log begins
	restore := func(lists ...[][]byte) map[string]*instance {
		again := newMachine(0)
		for _, l := range lists {
			for _, rec := range l {
				require.NoError(t, apply(again, rec))
			}
		}
		return again.instances()
	}
	snapshots := 0
	for step := range 4000 {
		k := "r:v1:count:k" + strconv.Itoa(rng.IntN(40))
		if rng.IntN(4) == 0 {
			m.drop(k)
		} else {
			in := &instance{Exp: int64(60_000 + step)}
			for i := range rng.IntN(4) * rng.IntN(50) { // sizes that outgrow blocks and shrink
				in.Seen = append(in.Seen, seen{TS: int64(i), ID: "e" + strconv.Itoa(step)})
			}
			m.put(k, in)
		}
		requireBlocksIndexed(t, m)
		if step%5 != 4 {
			continue
		}
		pl := c.prepare(m, -1)
		if pl.rec != nil { // its bytes are the changelog's buffers: Redis would have copied them
			log = append(log, bytes.Clone(pl.rec))
			require.NoError(t, apply(durable, pl.rec))
		}
		if pl.first != "" {
			pieces = nil
		}
		if pl.piece != nil {
			pieces = append(pieces, bytes.Clone(pl.piece))
		}
		if pl.last != "" {
			from, err := strconv.Atoi(pl.from)
			require.NoError(t, err)
			trimmed += from
			snap, snapLog = pieces, trimmed
			snapshots++
		}
		c.settle(pl, int64(len(log)-trimmed))
		want := m.instances()
		require.Equal(t, want, durable.instances(), "step %d: the log from its start", step)
		if snap != nil {
			require.Equal(t, want, restore(snap, log[snapLog:]), "step %d: the snapshot and the log after it", step)
		}
	}
	require.Greater(t, snapshots, 10)
}

// requireBlocksIndexed checks that the blocks a snapshot lists from the arena are the index's, in
// memory order.
func requireBlocksIndexed(t *testing.T, m *machine) {
	t.Helper()
	got := m.blocks()
	var want []ref
	m.inst.each(func(r ref) { want = append(want, r) })
	require.True(t, slices.IsSortedFunc(got, func(a, b ref) int {
		return cmp.Or(cmp.Compare(a.chunk(), b.chunk()), cmp.Compare(a.off(), b.off()))
	}), "memory order")
	slices.Sort(got)
	slices.Sort(want)
	require.Equal(t, want, got)
}
