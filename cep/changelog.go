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
// machine in memory is a cache of it. Each partition has two keys under one hash tag (one Redis
// Cluster slot per partition, so partitions spread over the cluster):
//
//	<prefix>:{p:<group>/<topic>/<partition>}:meta   epoch, next offset, watermark
//	<prefix>:{p:<group>/<topic>/<partition>}:state  instance key -> instance (JSON)
//
// The state hash is a compacted changelog: a batch writes the instances it changed and deletes
// the ones it ended, with the next offset and the watermark, in one script that first checks the
// epoch. A replica that is assigned the partition bumps the epoch before it restores, so a
// replica that lost the partition (a zombie after a rebalance) can never write over the new
// owner's state: its next commit fails with errFenced and it leaves the partition.
//
// Restoring reads the hash with HSCAN; the commit is one round trip per batch, whatever the
// number of events and rules.

// errFenced says another replica owns the partition now (or Redis lost its state).
var errFenced = errors.New("partition state fenced: another replica owns it, or redis lost it")

// commitScript: KEYS[1] meta, KEYS[2] state. ARGV: epoch, next offset ("" to keep), watermark,
// ttl_ms, n (instances to write), then n key/value pairs, then the keys to delete.
var commitScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'epoch')
if e ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(e)) end
local n = tonumber(ARGV[5])
local i = 6
while n > 0 do
  local c = math.min(n, 200)
  redis.call('HSET', KEYS[2], unpack(ARGV, i, i + 2 * c - 1))
  i = i + 2 * c
  n = n - c
end
while i <= #ARGV do
  local j = math.min(#ARGV, i + 199)
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'o', ARGV[2]) end
redis.call('HSET', KEYS[1], 'w', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1`)

// changelog is one partition's durable state.
type changelog struct {
	rdb   redis.UniversalClient
	meta  string
	state string
	epoch int64
}

func newChangelog(rdb redis.UniversalClient, prefix, group, topic string, partition int32) *changelog {
	t := prefix + ":" + tag("p:"+group+"/"+topic+"/"+strconv.Itoa(int(partition)))
	return &changelog{rdb: rdb, meta: t + ":meta", state: t + ":state"}
}

// claim fences every earlier owner and restores the partition's machine. next is the first
// offset the restored state has not seen (-1 when there is no state: a new partition, or a Redis
// that lost it).
func (c *changelog) claim(ctx context.Context, allowedLateness time.Duration) (m *machine, next int64, err error) {
	epoch, err := c.rdb.HIncrBy(ctx, c.meta, "epoch", 1).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("fence partition state: %w", err)
	}
	c.epoch = epoch
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
	var cursor uint64
	for {
		kvs, cur, err := c.rdb.HScan(ctx, c.state, cursor, "*", 2000).Result()
		if err != nil {
			return nil, 0, fmt.Errorf("restore partition state: %w", err)
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			var in instance
			if err := json.Unmarshal([]byte(kvs[i+1]), &in); err != nil {
				return nil, 0, fmt.Errorf("restore instance %s: %w", kvs[i], err)
			}
			m.restore(kvs[i], &in)
		}
		if cursor = cur; cursor == 0 {
			break
		}
	}
	return m, next, nil
}

// commit writes what changed since the last commit, the next offset (-1: unchanged) and the
// watermark, if this replica still owns the partition (errFenced otherwise). The dirty set is
// cleared only on success, so a failed commit is retried whole.
func (c *changelog) commit(ctx context.Context, m *machine, next int64, ttl time.Duration) error {
	args := make([]any, 5, 5+2*len(m.dirty))
	off := ""
	if next >= 0 {
		off = strconv.FormatInt(next, 10)
	}
	args[0], args[1], args[2], args[3] = strconv.FormatInt(c.epoch, 10), off, strconv.FormatInt(m.wm, 10), msd(ttl)
	var dels []any
	n := 0
	for k := range m.dirty {
		in, ok := m.inst[k]
		if !ok {
			dels = append(dels, k)
			continue
		}
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode instance %s: %w", k, err)
		}
		args = append(args, k, b)
		n++
	}
	args[4] = n
	args = append(args, dels...)
	err := commitScript.Run(ctx, c.rdb, []string{c.meta, c.state}, args...).Err()
	if err != nil && strings.HasPrefix(err.Error(), "FENCED") {
		return fmt.Errorf("%w (%v)", errFenced, err)
	}
	if err != nil {
		return fmt.Errorf("commit partition state: %w", err)
	}
	clear(m.dirty)
	return nil
}
