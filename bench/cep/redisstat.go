package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/cep"
)

// redisSnap is what Redis says of itself at one moment.
type redisSnap struct {
	cpu      time.Duration // used_cpu_user + used_cpu_sys (the server process)
	memory   int64         // used_memory
	commands int64         // total_commands_processed
	forks    int64         // total_forks (AOF rewrites)
}

type redisDelta struct {
	cpu      time.Duration
	memory   int64
	commands int64
	forks    int64
}

func (s redisSnap) since(b redisSnap) redisDelta {
	return redisDelta{cpu: s.cpu - b.cpu, memory: s.memory - b.memory, commands: s.commands - b.commands, forks: s.forks - b.forks}
}

// quiesce returns once Redis runs no AOF rewrite and, with compact, compacts an AOF grown since
// its last rewrite first. A rewrite is a fork: while its child runs it takes one of the machine's
// two cores for seconds, and after it every page Redis writes faults once (copy on write), which
// cost the stage's pass after a rewrite about half as much Redis CPU again (0.5 CPU-seconds
// against 0.3). So the benchmark compacts before the warm-up passes, which take those faults, and
// only waits before the measured ones: no rewrite starts inside a measured pass (the previous
// engine writes about 200 MB of AOF a pass, its warm-up as much; Redis rewrites on its own past
// 512 MB and twice the size of its last rewrite). Without this, rewrites set off by the previous
// engine's passes ran in whichever pass came next (seven in one run of the benchmark).
func quiesce(rdb *redis.Client, compact bool) {
	idle := func() {
		for {
			f := infoFields(rdb, "persistence")
			if f["aof_rewrite_in_progress"] != "1" && f["aof_rewrite_scheduled"] != "1" {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	idle()
	f := infoFields(rdb, "persistence")
	cur, _ := strconv.ParseInt(f["aof_current_size"], 10, 64)
	base, _ := strconv.ParseInt(f["aof_base_size"], 10, 64)
	if compact && f["aof_enabled"] == "1" && cur-base > 16<<20 {
		must(rdb.BgRewriteAOF(context.Background()).Err())
		time.Sleep(50 * time.Millisecond)
		idle()
	}
}

func infoFields(rdb *redis.Client, sections ...string) map[string]string {
	out := map[string]string{}
	info, err := rdb.Info(context.Background(), sections...).Result()
	must(err)
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

func snapRedis(rdb *redis.Client) redisSnap {
	f := infoFields(rdb, "cpu", "memory", "stats")
	forks, _ := strconv.ParseInt(f["total_forks"], 10, 64)
	user, _ := strconv.ParseFloat(f["used_cpu_user"], 64)
	sys, _ := strconv.ParseFloat(f["used_cpu_sys"], 64)
	mem, _ := strconv.ParseInt(f["used_memory"], 10, 64)
	cmds, _ := strconv.ParseInt(f["total_commands_processed"], 10, 64)
	return redisSnap{cpu: time.Duration((user + sys) * float64(time.Second)), memory: mem, commands: cmds, forks: forks}
}

// scanKeys calls fn with every key matching pattern, a page at a time.
func scanKeys(rdb *redis.Client, pattern string, fn func([]string)) {
	ctx := context.Background()
	var cursor uint64
	for {
		keys, cur, err := rdb.Scan(ctx, cursor, pattern, 10000).Result()
		must(err)
		if len(keys) > 0 {
			fn(keys)
		}
		if cursor = cur; cursor == 0 {
			return
		}
	}
}

// countKeys is how many keys lie under prefix.
func countKeys(rdb *redis.Client, prefix string) int64 {
	var n int64
	scanKeys(rdb, prefix+":*", func(ks []string) { n += int64(len(ks)) })
	return n
}

// deleteKeys removes every key under prefix (between phases, outside their measurement).
func deleteKeys(rdb *redis.Client, prefix string) {
	ctx := context.Background()
	scanKeys(rdb, prefix+":*", func(ks []string) {
		for len(ks) > 0 {
			n := min(len(ks), 1000)
			must(rdb.Del(ctx, ks[:n]...).Err())
			ks = ks[n:]
		}
	})
}

// stateStats reads the new stage's partition state under prefix (meta, log and snapshot keys): the
// pattern instances it restores to, their encoded bytes, the store's bytes (MEMORY USAGE) and the log's.
func stateStats(rdb *redis.Client, prefix string) cep.StateSizes {
	s, err := cep.StateSize(context.Background(), rdb, prefix)
	must(err)
	return s
}

// shared is what the stage keeps in Redis outside the partition state, by kind of key.
type shared struct {
	links, linkBytes       int64 // join links (per item, kept link_ttl and a day, in event time)
	triggers, triggerBytes int64 // join triggers (per item, kept the hour of lateness and a day, in event time)
	other, otherBytes      int64 // the liveness marker, anything else
}

// sharedStats reads the keys under prefix outside the partition state: how many, and their bytes
// (MEMORY USAGE).
func sharedStats(rdb *redis.Client, prefix string) (out shared) {
	ctx := context.Background()
	scanKeys(rdb, prefix+":*", func(ks []string) {
		pipe := rdb.Pipeline()
		var cmds []*redis.IntCmd
		var names []string
		for _, k := range ks {
			if strings.HasPrefix(k, prefix+":{p:") {
				continue
			}
			cmds = append(cmds, pipe.MemoryUsage(ctx, k, 0))
			names = append(names, k)
		}
		if len(cmds) == 0 {
			return
		}
		_, err := pipe.Exec(ctx)
		if err != nil && err != redis.Nil {
			must(err)
		}
		for i, c := range cmds {
			switch {
			case strings.HasSuffix(names[i], ":links"):
				out.links++
				out.linkBytes += c.Val()
			case strings.HasSuffix(names[i], ":triggers"):
				out.triggers++
				out.triggerBytes += c.Val()
			default:
				out.other++
				out.otherBytes += c.Val()
			}
		}
	})
	return out
}

// redisSetup describes the server: version and persistence.
func redisSetup(rdb *redis.Client) string {
	f := infoFields(rdb, "server", "persistence")
	ctx := context.Background()
	cfg := rdb.ConfigGet(ctx, "*").Val()
	return "Redis " + f["redis_version"] + " (appendonly " + cfg["appendonly"] + ", appendfsync " + cfg["appendfsync"] +
		", save \"" + cfg["save"] + "\", auto-aof-rewrite-min-size " +
		cfg["auto-aof-rewrite-min-size"] + ", maxmemory " + cfg["maxmemory"] + ")"
}

// aofSize is the size of Redis' AOF (bytes; 0 without one).
func aofSize(rdb *redis.Client) int64 {
	n, _ := strconv.ParseInt(infoFields(rdb, "persistence")["aof_current_size"], 10, 64)
	return n
}
