package cep

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Keys that share a hash chain and stay apart: found, replaced and removed one by one.
func TestSlotIndexCollisions(t *testing.T) {
	x := newSlotIndex()
	const h = 42 // every key under one hash, as if they collided
	keys := []string{"a", "b", "c", "d"}
	for _, k := range keys {
		require.Nil(t, x.find(h, k))
		x.add(h, newSlot(k))
	}
	require.Equal(t, 4, x.len())
	for _, k := range keys {
		require.Equal(t, k, x.find(h, k).key())
	}
	// the middle, the head, the tail, the last
	for i, k := range []string{"b", "d", "a", "c"} {
		require.Equal(t, k, x.remove(h, k).key())
		require.Nil(t, x.find(h, k))
		require.Nil(t, x.remove(h, k))
		require.Equal(t, 3-i, x.len())
		var left []string
		x.each(func(sl *slot) { left = append(left, sl.key()) })
		require.Len(t, left, 3-i)
		require.NotContains(t, left, k)
	}
	require.Zero(t, x.len())
	x.add(x.hash("e"), newSlot("e"))
	require.NotNil(t, x.find(x.hash("e"), "e"))
	var all []string
	x.each(func(sl *slot) { all = append(all, sl.key()) })
	require.True(t, slices.Equal(all, []string{"e"}))
}

// A slot's key shares the slot's bytes: it survives its instance rewritten (in place and
// reallocated) and dropped, and its commit still names it.
func TestSlotKeyOutlivesRewrites(t *testing.T) {
	m := newMachine(0)
	m.put("r:v1:count:u1", &instance{Exp: 60_000})
	sl := m.find("r:v1:count:u1")
	key := sl.key()
	m.put("r:v1:count:u1", &instance{Exp: 60_000, Seen: []seen{{TS: 1, ID: strings.Repeat("e", 500)}}}) // outgrows its bytes
	require.Same(t, sl, m.find("r:v1:count:u1"))
	require.Equal(t, "r:v1:count:u1", key)
	require.Equal(t, "r:v1:count:u1", sl.key())
	in := m.get("r:v1:count:u1")
	require.Len(t, in.Seen, 1)
	m.encodeDirty(newRecord(nil))
	m.clean()
	m.drop("r:v1:count:u1")
	require.Nil(t, m.find("r:v1:count:u1"))
	require.True(t, sl.gone())
	require.Equal(t, "r:v1:count:u1", sl.key())
	w := newRecord(nil)
	m.encodeDirty(w)
	r, err := readRecord(w.b)
	require.NoError(t, err)
	k, raw, ok := r.next()
	require.True(t, ok)
	require.Equal(t, "r:v1:count:u1", k)
	require.Nil(t, raw, "a deletion")
}

// The table against a map, through many adds and removes whose hashes crowd a few homes (the
// last ones wrapping around the table's end): every key present is found, every key removed is
// not, and the table grows as it fills.
func TestSlotIndexAgainstAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := newSlotIndex()
	model := map[string]uint64{}
	var keys []string
	for step := range 6_000 {
		if len(keys) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(keys))
			k := keys[i]
			keys[i] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			require.NotNil(t, x.remove(model[k], k), k)
			delete(model, k)
		} else {
			k := "k" + strconv.Itoa(step)
			// Few distinct homes, some at the top of a small table's range: long clusters that wrap.
			h := uint64(rng.IntN(8)) | uint64(rng.IntN(2))<<63
			if t := x.table(h); rng.IntN(2) == 0 && len(t.tab) > 0 {
				h = uint64(len(t.tab)-1-rng.IntN(4)) | h&(1<<63)
			}
			x.add(h, newSlot(k))
			model[k] = h
			keys = append(keys, k)
		}
		if step%499 == 0 {
			for k, h := range model {
				sl := x.find(h, k)
				require.NotNil(t, sl, k)
				require.Equal(t, k, sl.key())
			}
		}
	}
	require.Equal(t, len(model), x.len())
	n := 0
	x.each(func(sl *slot) { n++; require.Contains(t, model, sl.key()) })
	require.Equal(t, len(model), n)
	for k, h := range model {
		require.NotNil(t, x.remove(h, k))
		require.Nil(t, x.find(h, k))
	}
	require.Zero(t, x.len())
}
