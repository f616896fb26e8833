package cep

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/testenv"
)

// every instance shape the machine writes, each field set.
func sampleInstances() map[string]*instance {
	return map[string]*instance{
		"r:v1:count:u": {Seen: []seen{{TS: 1000, ID: "e1", Used: true}, {TS: 2000, ID: "e2"}}, Unless: 1500, Exp: 9000},
		"r:v1:seq:u/i": {Next: 2, Start: 1200, IDs: []string{"a", "b"}, Done: []seen{{TS: 800, ID: "z"}}, Exp: 90000},
		"r:v2:abs:u": {A: &waitA{ID: "a2", TS: 5000, Due: 65000, User: "u", Item: "i", Type: "cart_add",
			Attrs: map[string]any{"price": 12.5, "tags": []any{"x"}, "name": "n", "gift": true, "paid": false, "note": nil, "o": map[string]any{"a": 1.0}}, State: "c", Prev: []seen{{TS: 4000, ID: "a1"}}}, Exp: 70000},
		"r:v1:fan:d1": {Fan: &fanState{Trigger: event.Event{EventID: "d1", ItemID: "i", Type: "price_drop",
			TS: time.UnixMilli(1234567).UTC(), Attrs: map[string]any{"pct": 30.0}}, Snap: "p:{x}:snap", Total: 10000, Next: 300}, Exp: 1e12},
		"r:reentry:u":  {Match: "reach/r/u/k", Until: 99000, Exp: 99000},
		"r:v1:count:v": {Exp: -5}, // nothing but an expiry (negative: before 1970 in event time)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	want := sampleInstances()
	w := newRecord(nil)
	for k, in := range want {
		w.put(k, appendInstance(nil, in))
	}
	w.del("gone")
	m := newMachine(0)
	m.put("gone", &instance{Exp: 1})
	require.NoError(t, apply(m, w.b))
	require.Equal(t, want, m.instances())
	require.True(t, m.jobs["r:v1:fan:d1"])
	require.Len(t, m.timers, 0, "a cancelled absence arms no timer")

	// A record that is cut short or of another version is refused, never half applied silently.
	for _, bad := range [][]byte{w.b[:len(w.b)-3], append([]byte{9}, w.b[1:]...), {}} {
		require.ErrorIs(t, apply(newMachine(0), bad), errRecord)
	}
}

// A record compressed as it is written (a chunk at a time, the chunks' S2 blocks one block)
// reads back as written, whatever its size: small and left as is, one chunk, many chunks, an
// entry longer than a chunk.
func TestRecordCompressedAsWritten(t *testing.T) {
	samples := sampleInstances()
	big := &instance{Exp: 1}
	for i := range s2Chunk / 8 {
		big.Seen = append(big.Seen, seen{TS: int64(i), ID: fmt.Sprintf("e%07d", i)})
	}
	for _, n := range []int{1, 200, 2_000, 20_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			want := map[string]*instance{}
			plain, z := newRecord(nil), newRecord(nil)
			z.compressing(nil)
			for i := range n {
				k := fmt.Sprintf("r:v1:count:u%d", i)
				in := samples["r:v1:count:u"]
				if i == n/2 && n > 1 {
					in = big
				}
				want[k] = in
				plain.put(k, appendInstance(nil, in))
				z.put(k, appendInstance(nil, in))
			}
			rec, _ := z.compressed()
			if n == 1 {
				require.Equal(t, plain.b, rec, "a small record stays as written")
			} else {
				require.Equal(t, byte(recordS2), rec[0])
				require.Less(t, len(rec), len(plain.b)/2, "compressed")
			}
			m := newMachine(0)
			require.NoError(t, apply(m, rec))
			require.Equal(t, want, m.instances())
		})
	}
}

func FuzzRecord(f *testing.F) {
	w := newRecord(nil)
	for k, in := range sampleInstances() {
		w.put(k, appendInstance(nil, in))
	}
	f.Add(w.b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := newMachine(0)
		if apply(m, b) != nil {
			return
		}
		// What decodes encodes back to the same instances.
		w := newRecord(nil)
		m.inst.each(func(r ref) { b := m.a.blk(r); w.put(b.key(), b.raw()) })
		again := newMachine(0)
		require.NoError(t, apply(again, w.b))
		require.Equal(t, m.instances(), again.instances())
	})
}

// The log is compacted into a snapshot once it outgrows it; a restore reads both, and a zombie's
// snapshot never lands.
func TestChangelogSnapshots(t *testing.T) {
	onRedises(t, func(t *testing.T, rdb redis.UniversalClient) {
		t.Run("once", func(t *testing.T) { testChangelogSnapshots(t, rdb, false) })
		t.Run("every commit retried after a lost reply", func(t *testing.T) { testChangelogSnapshots(t, rdb, true) })
	})
}

func testChangelogSnapshots(t *testing.T, rdb redis.UniversalClient, twice bool) {
	ctx := context.Background()
	prefix := testenv.Unique("cl")
	setup := func(c *changelog) {
		c.snapMin, c.piece = 1000, 16
		if twice {
			c.exec = func(ctx context.Context, fn func(redis.Pipeliner) error) error {
				if err := c.pipelined(ctx, fn); err != nil {
					return err
				}
				return c.pipelined(ctx, fn) // the same commands again, as a retry after a lost reply sends them
			}
		}
	}
	c := newChangelog(rdb, prefix, "g", "t", 0)
	setup(c)
	swaps := 0
	dup := int64(1) // every record is in the log twice when every commit runs twice
	if twice {
		dup = 2
	}
	m, next, err := c.claim(ctx, 0)
	require.NoError(t, err)
	require.EqualValues(t, -1, next)
	want := map[string]*instance{}
	for i := range 200 {
		k := "r:v1:count:u" + string(rune('a'+i%26)) + time.Duration(i).String()
		in := &instance{Seen: []seen{{TS: int64(i), ID: "e"}}, Exp: int64(1000 + i)}
		m.put(k, in)
		want[k] = in
		if i%7 == 0 {
			m.drop(k)
			delete(want, k)
		}
		before := c.snapBytes
		require.NoError(t, c.commit(ctx, m, int64(i+1), time.Hour))
		if c.snapBytes != before {
			swaps++
		}
		if i%50 == 49 {
			again := newChangelog(rdb, prefix, "g", "t", 0)
			got, next, err := again.claim(ctx, 0)
			require.NoError(t, err)
			require.EqualValues(t, i+1, next)
			require.Equal(t, want, got.instances())
			require.Less(t, again.logRecords, 200*dup, "the log was compacted")
			c, m = again, got
			setup(c)
		}
	}
	require.Positive(t, swaps, "snapshots were taken")
	require.Positive(t, c.snapBytes)
	n, err := rdb.LLen(ctx, c.log).Result()
	require.NoError(t, err)
	require.Less(t, n, 200*dup, "the log was trimmed")

	// A zombie that snapshots is fenced and its snapshot does not replace the owner's.
	zombie := c
	owner := newChangelog(rdb, prefix, "g", "t", 0)
	_, _, err = owner.claim(ctx, 0)
	require.NoError(t, err)
	zombie.legacy = true // forces a snapshot
	zm := newMachine(0)
	zm.put("junk", &instance{Exp: 1})
	require.ErrorIs(t, zombie.commit(ctx, zm, 999, time.Hour), errFenced)
	got, next, err := newChangelog(rdb, prefix, "g", "t", 0).claim(ctx, 0)
	require.NoError(t, err)
	require.EqualValues(t, 200, next)
	require.Equal(t, len(want), got.inst.len())
	require.Zero(t, got.find("junk"))
}

// State written by the JSON format before this one is restored, and the first commit converts it.
func TestChangelogReadsLegacyState(t *testing.T) { onRedises(t, testChangelogReadsLegacyState) }

func testChangelogReadsLegacyState(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	prefix := testenv.Unique("cl")
	c := newChangelog(rdb, prefix, "g", "t", 0)
	want := sampleInstances()
	for k, in := range want {
		b, err := json.Marshal(in)
		require.NoError(t, err)
		require.NoError(t, rdb.HSet(ctx, c.hash, k, b).Err())
	}
	require.NoError(t, rdb.HSet(ctx, c.meta, "epoch", 3, "o", 42, "w", 777).Err())
	m, next, err := c.claim(ctx, 0)
	require.NoError(t, err)
	require.EqualValues(t, 42, next)
	require.EqualValues(t, 777, m.wm)
	require.Equal(t, want, m.instances())
	require.NoError(t, c.commit(ctx, m, 43, time.Hour))
	n, err := rdb.Exists(ctx, c.hash).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the legacy hash is gone once converted")
	got, next, err := newChangelog(rdb, prefix, "g", "t", 0).claim(ctx, 0)
	require.NoError(t, err)
	require.EqualValues(t, 43, next)
	require.Equal(t, want, got.instances())
}

// The sweep drops what the watermark passed, through the expiry index: an instance whose expiry
// moved on stays, whatever minute it was listed under first.
func TestSweepByExpiryIndex(t *testing.T) {
	m := newMachine(0)
	m.put("a", &instance{Exp: 10_000})
	m.put("b", &instance{Exp: 70_000})
	m.put("c", &instance{Exp: 130_000})
	m.put("moved", &instance{Exp: 5_000})
	m.put("moved", &instance{Exp: 200_000}) // listed under minute 0, then minute 3
	m.encodeDirty(newRecord(nil))           // committed
	m.clean()
	m.advance(125_000)
	m.sweep()
	require.ElementsMatch(t, []string{"c", "moved"}, m.keys())
	var dropped []string
	for _, r := range m.dirty {
		b := m.a.blk(r)
		require.True(t, b.gone(), "a dropped block is marked")
		require.Empty(t, b.raw(), "a dropped block keeps its key, not its instance")
		dropped = append(dropped, strings.Clone(b.key()))
	}
	require.ElementsMatch(t, []string{"a", "b"}, dropped, "the drops are written by the next commit")
	m.advance(170_000)
	m.sweep() // less than a minute of watermark since the last sweep: nothing yet
	require.Len(t, m.keys(), 2)
	m.advance(300_000)
	m.sweep()
	require.Empty(t, m.keys())
	require.Empty(t, m.expiry, "the index empties with the instances")
}

// A snapshot piece covers at least twice the instances its commit changed, so a snapshot being
// built always catches up with a partition that changes many instances per commit (the log would
// otherwise outgrow each new snapshot before it is in place).
func TestSnapshotPieceKeepsUp(t *testing.T) {
	m := newMachine(time.Hour)
	for i := range 1000 {
		m.put(fmt.Sprintf("k%d", i), &instance{Exp: int64(i + 1)})
	}
	c := newChangelog(nil, "t", "g", "topic", 0)
	c.piece, c.snapMin = 4, 0
	c.settle(c.prepare(m, -1), 1)  // the first commit: every instance in the log, none in a snapshot
	c.logBytes, c.snapBytes = 1, 0 // the log has outgrown the (empty) snapshot: the next commit starts one
	for i := range 300 {
		m.put(fmt.Sprintf("k%d", i), &instance{Exp: int64(i + 2)})
	}
	pl := c.prepare(m, -1)
	require.NotNil(t, c.building, "a snapshot began")
	require.Equal(t, 600, pl.done, "the piece covers twice the 300 instances the commit changed")
	require.Empty(t, m.dirty, "the plan holds the changes")
}
