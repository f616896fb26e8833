package cep

import (
	"slices"
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
		x.add(h, &slot{key: k, b: []byte(k)})
	}
	require.Equal(t, 4, x.len())
	for _, k := range keys {
		require.Equal(t, k, string(x.find(h, k).b))
	}
	// the middle, the head, the tail, the last
	for i, k := range []string{"b", "d", "a", "c"} {
		require.Equal(t, k, x.remove(h, k).key)
		require.Nil(t, x.find(h, k))
		require.Nil(t, x.remove(h, k))
		require.Equal(t, 3-i, x.len())
		var left []string
		x.each(func(sl *slot) { left = append(left, sl.key) })
		require.Len(t, left, 3-i)
		require.NotContains(t, left, k)
	}
	require.Empty(t, x.m)
	x.add(x.hash("e"), &slot{key: "e"})
	require.NotNil(t, x.find(x.hash("e"), "e"))
	var all []string
	x.each(func(sl *slot) { all = append(all, sl.key) })
	require.True(t, slices.Equal(all, []string{"e"}))
}
