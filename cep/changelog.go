package cep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The changelog makes a partition's machine durable in Redis, the state store of record; the
// machine in memory is a cache of it. It is a changelog with snapshots, as Kafka Streams and Flink
// keep keyed state, in keys under one hash tag (one Redis Cluster slot per partition, so
// partitions spread over the cluster):
//
//	<prefix>:{p:<group>/<topic>/<partition>}:meta  epoch, next offset, watermark
//	<prefix>:{p:<group>/<topic>/<partition>}:log   one record per commit: the instances it changed and ended
//	<prefix>:{p:<group>/<topic>/<partition>}:snap  every instance, as of the last snapshot
//
// A commit appends the batch's record (codec.go) with the next offset and the watermark, in one
// script that first checks the epoch: one round trip and one list push per batch, whatever the
// number of events, rules and instances. Records hold whole instances, so replaying them is
// idempotent and order is all that matters.
//
// When the log has outgrown the snapshot (and holds at least snapshotMin), a new snapshot is
// taken a piece at a time, the way ZooKeeper takes its fuzzy snapshots: the keys are listed at
// position S of the log, and each following commit appends the current instances of the next few
// thousand keys to the snapshot being built (in the same script as its record), so no batch waits
// for a whole partition to be encoded. When every key is written, the commit that writes the last
// piece puts the new snapshot in place and trims the log to the records from S on. Each key in the
// snapshot is as of some moment after S, and every change after S is in the remaining log, so the
// snapshot then the log restore the exact state. The store holds about twice the state at most;
// a restore reads the snapshot and the log since S.
//
// A replica that is assigned the partition bumps the epoch before it restores, so a replica that
// lost the partition (a zombie after a rebalance) can never write over the new owner's state: its
// next commit fails with errFenced and it leaves the partition.
//
// Before this format the state was a hash of JSON instances (<prefix>:{...}:state); a restore still
// reads one, and the first commit after it writes a snapshot and deletes the hash.

// errFenced says another replica owns the partition now (or Redis lost its state).
var errFenced = errors.New("partition state fenced: another replica owns it, or redis lost it")

// commitScript: KEYS meta, log, snap, the snapshot being built, the legacy state hash. ARGV:
// epoch, next offset ("" to keep), watermark, ttl_ms, the batch's record ("" for none), the token
// of a snapshot whose first piece this commit wrote ("" none), the token of a snapshot whose last
// piece it wrote ("" none), the log records it replaces, "l" to delete the legacy hash too.
// Returns the log's length.
//
// The pieces of a snapshot go to its list by plain RPUSH in the same round trip, before the
// script: they are the owner's own key (its epoch in the name), so they need no fence, and they do
// not pass through Lua. The swap happens only when the meta names the snapshot being built, so a
// retry after a lost reply (its piece pushed again onto a list already renamed) never puts a
// partial snapshot in place; any other repeat is harmless (a first piece starts the list again,
// a piece or a record repeats puts of the same values).
var commitScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'epoch')
if e ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(e)) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'b', ARGV[6]) end
if ARGV[7] ~= '' and redis.call('HGET', KEYS[1], 'b') == ARGV[7] then
  redis.call('RENAME', KEYS[4], KEYS[3])
  redis.call('HDEL', KEYS[1], 'b')
  local n = tonumber(ARGV[8])
  if n > 0 then redis.call('LTRIM', KEYS[2], n, -1) end
  if ARGV[9] == 'l' then redis.call('DEL', KEYS[5]) end
end
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[5]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'o', ARGV[2]) end
redis.call('HSET', KEYS[1], 'w', ARGV[3])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return redis.call('LLEN', KEYS[2])`)

// snapshotMin is the least log worth compacting into a snapshot; snapshotPiece the fewest keys a
// commit adds to a snapshot being built (and at least twice the instances it changed, so a
// snapshot always catches up); logPage how many records (log or snapshot pieces) a restore reads
// at a time.
const (
	snapshotMin   = 1 << 20
	snapshotPiece = 4096
	logPage       = 256
)

// changelog is one partition's durable state.
type changelog struct {
	rdb                   redis.UniversalClient
	meta, log, snap, hash string
	epoch                 int64
	// The store's size as this replica knows it: the snapshot's bytes, and the log's since.
	snapBytes, logBytes int64
	logRecords          int64
	legacy              bool  // the restored state came from the legacy hash
	snapMin             int64 // snapshotMin (tests compact sooner)
	piece               int   // snapshotPiece (tests build snapshots in more pieces)
	building            *snapshotRun
	// exec sends a commit's commands in one round trip (a test sends them twice: a retry after a
	// lost reply).
	exec          func(ctx context.Context, fn func(redis.Pipeliner) error) error
	snapshots     int // snapshots begun by this owner: their tokens
	buf, pieceBuf []byte
	zbuf, pieceZ  []byte      // compressed records and pieces
	unsent        *commitPlan // a commit that failed, sent first by the next
}

// snapshotRun is a snapshot being built: the blocks listed when it began, how many are written,
// and how many log records preceded it (dropped when it is in place).
type snapshotRun struct {
	blocks   []ref
	done     int
	from     int64 // log records before it began
	logBytes int64 // their bytes
	bytes    int64 // written so far
	seq      int   // its number among this owner's snapshots (with the epoch, its token)
}

func newChangelog(rdb redis.UniversalClient, prefix, group, topic string, partition int32) *changelog {
	t := prefix + ":" + tag("p:"+group+"/"+topic+"/"+strconv.Itoa(int(partition)))
	c := &changelog{rdb: rdb, meta: t + ":meta", log: t + ":log", snap: t + ":snap", hash: t + ":state", snapMin: snapshotMin,
		piece: snapshotPiece}
	c.exec = c.pipelined
	return c
}

func (c *changelog) pipelined(ctx context.Context, fn func(redis.Pipeliner) error) error {
	_, err := c.rdb.Pipelined(ctx, fn)
	return err
}

// claim fences every earlier owner and restores the partition's machine. next is the first
// offset the restored state has not seen (-1 when there is no state: a new partition, or a Redis
// that lost it).
func (c *changelog) claim(ctx context.Context, allowedLateness time.Duration) (m *machine, next int64, err error) {
	epoch, err := c.rdb.HIncrBy(ctx, c.meta, "epoch", 1).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("fence partition state: %w", err)
	}
	c.epoch, c.building, c.unsent = epoch, nil, nil
	meta, err := c.rdb.HGetAll(ctx, c.meta).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("read partition state: %w", err)
	}
	m = newMachine(allowedLateness)
	next = -1
	if v, ok := meta["o"]; ok {
		if next, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("partition state offset %q: %w", v, err)
		}
	}
	if v, ok := meta["w"]; ok {
		if m.wm, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("partition state watermark %q: %w", v, err)
		}
		m.lastSweep = m.wm
	}
	if c.legacy, err = c.restoreLegacy(ctx, m); err != nil {
		return nil, 0, err
	}
	if err := c.restoreSnapshot(ctx, m); err != nil {
		return nil, 0, err
	}
	if err := c.restoreLog(ctx, m); err != nil {
		return nil, 0, err
	}
	return m, next, nil
}

func (c *changelog) restoreSnapshot(ctx context.Context, m *machine) error {
	c.snapBytes = 0
	return c.readList(ctx, c.snap, m, func(n int) { c.snapBytes += int64(n) })
}

// readList applies the records of a list (the log, or a snapshot's pieces) in order.
func (c *changelog) readList(ctx context.Context, key string, m *machine, read func(bytes int)) error {
	for i := int64(0); ; i += logPage {
		recs, err := c.rdb.LRange(ctx, key, i, i+logPage-1).Result()
		if err != nil && strings.Contains(err.Error(), "WRONGTYPE") {
			// A snapshot of the first days of this format: one string.
			var s string
			if s, err = c.rdb.Get(ctx, key).Result(); err == nil {
				recs = []string{s}
			}
		}
		if err != nil {
			return fmt.Errorf("restore partition state from %s: %w", key, err)
		}
		for _, r := range recs {
			if err := apply(m, []byte(r)); err != nil {
				return err
			}
			read(len(r))
		}
		if len(recs) < logPage {
			return nil
		}
	}
}

func (c *changelog) restoreLog(ctx context.Context, m *machine) error {
	c.logBytes, c.logRecords = 0, 0
	return c.readList(ctx, c.log, m, func(n int) { c.logBytes += int64(n); c.logRecords++ })
}

// apply replays one record (a snapshot or a commit's) into m.
func apply(m *machine, rec []byte) error {
	r, err := readRecord(rec)
	if err != nil {
		return fmt.Errorf("restore partition state: %w", err)
	}
	for {
		k, raw, ok := r.next()
		if !ok {
			break
		}
		if raw == nil {
			m.forget(k)
		} else if err := m.restoreRaw(k, raw); err != nil {
			return fmt.Errorf("restore partition state: instance %s: %w", k, err)
		}
	}
	if r.err != nil {
		return fmt.Errorf("restore partition state: %w", r.err)
	}
	return nil
}

// restoreLegacy reads the JSON state hash of the format before this one, if there is one.
func (c *changelog) restoreLegacy(ctx context.Context, m *machine) (bool, error) {
	var cursor uint64
	found := false
	for {
		kvs, cur, err := c.rdb.HScan(ctx, c.hash, cursor, "*", 2000).Result()
		if err != nil {
			return false, fmt.Errorf("restore partition state: %w", err)
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			var in instance
			if err := json.Unmarshal([]byte(kvs[i+1]), &in); err != nil {
				return false, fmt.Errorf("restore instance %s: %w", kvs[i], err)
			}
			if err := m.restore(kvs[i], &in); err != nil {
				return false, fmt.Errorf("restore instance %s: %w", kvs[i], err)
			}
			found = true
		}
		if cursor = cur; cursor == 0 {
			return found, nil
		}
	}
}

// commit makes durable what changed since the last commit, with the next offset (-1: unchanged)
// and the watermark, if this replica still owns the partition (errFenced otherwise), and moves a
// snapshot on by one piece. A commit that fails is kept whole and sent again first by the next
// (its changes are no longer the machine's to write: later ones are, after it).
func (c *changelog) commit(ctx context.Context, m *machine, next int64, ttl time.Duration) error {
	if c.unsent != nil {
		n, err := c.send(ctx, *c.unsent, ttl)
		if err != nil {
			return err
		}
		c.settle(*c.unsent, n)
		c.unsent = nil
	}
	pl := c.prepare(m, next)
	n, err := c.send(ctx, pl, ttl)
	if err != nil {
		c.unsent = &pl
		return err
	}
	c.settle(pl, n)
	return nil
}

// commitPlan is what one commit writes: the batch's record, a snapshot's next piece, and where
// that piece leaves the snapshot; the next offset (-1: unchanged) and the watermark as of its
// preparation.
type commitPlan struct {
	rec, piece                []byte
	first, last, from, legacy string // commitScript's snapshot arguments
	done                      int    // the snapshot's blocks written once this piece is
	next, wm                  int64
}

// prepare encodes a commit: the changes since the last one, and (starting a snapshot when the
// log has outgrown the last) the snapshot's next piece. Nothing is sent.
//
// The plan owns the changes from here on (the machine lists the next ones), and its bytes are
// the changelog's buffers: until it is settled, or sent again after a failure, no other commit
// is prepared, and sending it reads nothing of the machine (a commit in flight while the
// partition goes on: Stage.startCommit).
func (c *changelog) prepare(m *machine, next int64) commitPlan {
	if c.building == nil && (c.legacy || (c.logBytes > c.snapBytes && c.logBytes >= c.snapMin) || c.logRecords >= 10_000) {
		c.snapshots++
		c.building = &snapshotRun{blocks: m.blocks(), from: c.logRecords, logBytes: c.logBytes, seq: c.snapshots}
	}
	pl := commitPlan{from: "0", next: next, wm: m.wm}
	w := newRecord(c.buf)
	w.compressing(c.zbuf)
	changed := len(m.dirty)
	m.encodeDirty(w)
	m.clean()
	if !w.empty() {
		pl.rec, c.zbuf = w.compressed()
	}
	c.buf = w.b
	b := c.building
	if b == nil {
		return pl
	}
	token := strconv.FormatInt(c.epoch, 10) + "." + strconv.Itoa(b.seq)
	if b.done == 0 {
		pl.first = token
	}
	done := b.done
	pw := newRecord(c.pieceBuf)
	pw.compressing(c.pieceZ)
	end := min(len(b.blocks), done+max(c.piece, 2*changed))
	// Sized in a pass of its own, which also reads each block's header: the blocks, untouched for
	// a while, come into the cache together (their reads do not wait on each other) rather than
	// one at a time as they are copied. A block released since the run began (its instance moved
	// or its drop committed: either is in the log after the run's start) is skipped.
	size := 0
	for _, r := range b.blocks[done:end] {
		if bl, ok := m.a.current(r); ok && !bl.gone() {
			size += putSize(bl.key(), bl.raw())
		}
	}
	pw.grow(size)
	for ; done < end; done++ {
		if bl, ok := m.a.current(b.blocks[done]); ok && !bl.gone() {
			pw.put(bl.key(), bl.raw())
		}
	}
	pl.piece, c.pieceZ = pw.compressed()
	c.pieceBuf = pw.b
	pl.done = done
	if done == len(b.blocks) {
		pl.last, pl.from = token, strconv.FormatInt(b.from, 10)
		if c.legacy {
			pl.legacy = "l"
		}
	}
	return pl
}

// send writes a prepared commit in one round trip and returns the log's length; errFenced when
// another replica owns the partition. Sending a plan again is harmless (commitScript).
func (c *changelog) send(ctx context.Context, pl commitPlan, ttl time.Duration) (int64, error) {
	n, err := c.sendOnce(ctx, pl, ttl)
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		// Redis lost its scripts (a restart, a failover), or never had this one: load it, send
		// again (every command of a commit may be sent twice).
		if err = commitScript.Load(ctx, c.rdb).Err(); err == nil {
			n, err = c.sendOnce(ctx, pl, ttl)
		}
	}
	if err != nil && strings.HasPrefix(err.Error(), "FENCED") {
		return 0, fmt.Errorf("%w (%v)", errFenced, err)
	}
	if err != nil {
		return 0, fmt.Errorf("commit partition state: %w", err)
	}
	return n, nil
}

func (c *changelog) sendOnce(ctx context.Context, pl commitPlan, ttl time.Duration) (int64, error) {
	off := ""
	if pl.next >= 0 {
		off = strconv.FormatInt(pl.next, 10)
	}
	building := c.snap + "." + strconv.FormatInt(c.epoch, 10)
	var cmd *redis.Cmd
	err := c.exec(ctx, func(p redis.Pipeliner) error {
		if pl.piece != nil {
			if pl.first != "" {
				p.Del(ctx, building)
			}
			p.RPush(ctx, building, pl.piece)
			p.PExpire(ctx, building, ttl)
		}
		cmd = commitScript.EvalSha(ctx, p, []string{c.meta, c.log, c.snap, building, c.hash},
			strconv.FormatInt(c.epoch, 10), off, strconv.FormatInt(pl.wm, 10), msd(ttl), pl.rec, pl.first, pl.last, pl.from, pl.legacy)
		return nil
	})
	n, cerr := cmd.Int64()
	if err == nil {
		err = cerr
	}
	return n, err
}

// settle takes a commit as durable (n: the log's length after it): the snapshot moves on.
func (c *changelog) settle(pl commitPlan, n int64) {
	c.logBytes += int64(len(pl.rec))
	if b := c.building; b != nil {
		b.done, b.bytes = pl.done, b.bytes+int64(len(pl.piece))
		if pl.last != "" {
			// The log now starts at the snapshot's beginning; what it holds since counts toward the next.
			c.snapBytes, c.logBytes, c.legacy, c.building = b.bytes, c.logBytes-b.logBytes, false, nil
		}
	}
	c.logRecords = n
}

// StateSizes is what StateSize reads.
type StateSizes struct {
	Instances int64 // pattern instances
	Encoded   int64 // their encoded bytes (keys and values: the state compacted)
	Stored    int64 // MEMORY USAGE of the meta, log and snapshot keys
	Log       int64 // of which the log's: at most about the larger of the snapshot and snapshotMin, or 10,000 records, per partition
}

// StateSize reads, without claiming anything, the partition state under a key prefix (every
// group, topic and partition): its pattern instances, their encoded bytes and what the store
// takes in Redis (between about one and two times the encoded bytes, by where the log is in its
// cycle, for a state larger than a megabyte per partition). For benchmarks and capacity planning.
func StateSize(ctx context.Context, rdb *redis.Client, prefix string) (StateSizes, error) {
	var out StateSizes
	var cursor uint64
	for {
		keys, cur, err := rdb.Scan(ctx, cursor, prefix+":{p:*}:meta", 1000).Result()
		if err != nil {
			return out, err
		}
		for _, k := range keys {
			base := strings.TrimSuffix(k, ":meta")
			c := &changelog{rdb: rdb, meta: k, log: base + ":log", snap: base + ":snap", hash: base + ":state"}
			m := newMachine(0)
			if _, err := c.restoreLegacy(ctx, m); err != nil {
				return out, err
			}
			if err := c.restoreSnapshot(ctx, m); err != nil {
				return out, err
			}
			if err := c.restoreLog(ctx, m); err != nil {
				return out, err
			}
			out.Instances += int64(m.inst.len())
			m.inst.each(func(r ref) { out.Encoded += int64(m.a.blk(r).used()) })
			for _, key := range []string{c.meta, c.log, c.snap, c.hash} {
				n, err := rdb.MemoryUsage(ctx, key, 0).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return out, err
				}
				out.Stored += n
				if key == c.log {
					out.Log += n
				}
			}
		}
		if cursor = cur; cursor == 0 {
			return out, nil
		}
	}
}
