package main

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omegareach/omega/cep"
)

type reportInput struct {
	args      []string
	began     time.Time
	took      time.Duration
	s         stream
	rules     []cep.Rule
	reps      int
	res       map[string][]result
	warm      map[string][]result // the warm-up passes, each before the measured pass of its index
	med       map[string]result
	lat       latencies
	live      liveLatency
	flat      [2]flatPass
	redis     string
	users     int
	items     int
	flatUsers int
}

// medOf is the median of f over the passes.
func medOf(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func yes(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func report(in reportInput) {
	p := func(format string, args ...any) { fmt.Printf(format, args...) }
	p("# CEP benchmark\n\n")
	p("Command: `go run ./bench/cep %s` (the first half of `make bench`, on a fresh stack from `deploy/local/test.sh`); "+
		"started %s UTC, took %s.\n\n", strings.Join(in.args, " "), in.began.UTC().Format("2006-01-02 15:04"), in.took.Round(time.Second))
	p("Machine: %d cores (%s, %s/%s), Go %s. The broker (`omega-dev kafka`, franz-go kfake), %s and this process "+
		"share it.\n\n", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), in.redis)

	s := in.s
	p("## Workload\n\n")
	p("%d events preloaded into one 4-partition topic (%.1f MB of JSON, produced at %.0f/s), keyed by user (items for "+
		"item-scoped events) as the wire contract says; event times 1 ms apart (%s of event time, ending about now). "+
		"Users and items are drawn uniformly: %d users (%d of them active in the stream), %d items.\n\n",
		s.n, float64(s.bytes)/1e6, s.rate, s.lastTS.Sub(s.firstTS).Round(time.Second), in.users, s.users, in.items)
	p("| event type | events | share |\n|---|---:|---:|\n")
	types := make([]string, 0, len(s.byType))
	for t := range s.byType {
		types = append(types, t)
	}
	slices.SortFunc(types, func(a, b string) int { return s.byType[b] - s.byType[a] })
	for _, t := range types {
		p("| %s | %d | %.1f%% |\n", t, s.byType[t], 100*float64(s.byType[t])/float64(s.n))
	}
	p("\n%d rules (`bench/cep/rules.yaml`), every kind:\n\n| rule | kind | key | steps | window |\n|---|---|---|---|---|\n", len(in.rules))
	for _, r := range in.rules {
		kind, key := r.Kind, r.Key
		if kind == "" {
			kind = cep.KindSingle
		}
		if key == "" {
			key = "user"
		}
		var steps []string
		for _, st := range r.Steps {
			steps = append(steps, st.Type)
		}
		step := strings.Join(steps, " -> ")
		switch {
		case r.Absent != nil:
			step += ", no " + r.Absent.Type
		case r.Unless != nil:
			step += ", unless " + r.Unless.Type
		}
		if r.Count > 0 {
			step = fmt.Sprintf("%d x %s", r.Count, step)
		}
		win := r.Within.D().String()
		if r.Within == 0 {
			win = "-"
		}
		if r.Shadow {
			kind += " (shadow)"
		}
		p("| %s | %s | %s | %s | %s |\n", r.ID, kind, key, step, win)
	}

	p("\n## Throughput (median of %d passes each, interleaved, each after a warm-up pass)\n\n", in.reps)
	p("Each pass consumes the whole topic in a new consumer group under its own Redis key prefix; its keys are " +
		"counted, then deleted before the next pass. Each measured pass follows an unmeasured warm-up pass of its " +
		"design over the same topic, so every design is measured in a process whose heap that design has grown, as " +
		"a long-running consumer's is: a first touch of a page of memory costs about 11 µs on this host, and without " +
		"it the stage (whose state grows by the instances below in a couple of seconds) ran on memory the runtime had " +
		"returned to the system during the slow designs' passes, the ceiling (run right after the stage) on mapped " +
		"pages. Each pass starts with Redis running no AOF rewrite, and each warm-up pass with the AOF compacted if " +
		"the passes before grew it (the previous engine writes about 200 MB of it a pass): Redis' own rewrite, a fork " +
		"whose child takes one of the two cores for seconds and after which Redis' every written page faults once, " +
		"then never starts inside a measured pass (Redis forks during each are in the list of passes below). The clock, this process's CPU and Redis' counters run from the " +
		"first batch handled (the stage: its first durable commit) to the last event handled (the stage: committed).\n\n")
	p("| design | events/s (wall) | events per CEP CPU-second | Redis CPU µs per event | events per CPU-second of CEP + Redis | Redis commands per event (inside scripts too) | GC share of CEP CPU | Redis memory grown | Redis keys | live matches (distinct reaches) | shadow matches |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, d := range designs {
		rs := in.res[d]
		m := in.med[d]
		p("| %s | %.0f | %.0f | %.1f | %.0f | %.2f | %.0f%% | %s | %d | %d | %d |\n", names[d],
			medOf(rs, result.perSec), medOf(rs, result.perCPU), medOf(rs, result.redisPerEv), medOf(rs, result.perAllCPU),
			medOf(rs, func(r result) float64 { return float64(r.redis.commands) / float64(r.events) }),
			medOf(rs, func(r result) float64 { return 100 * r.gc.Seconds() / r.cpu.Seconds() }),
			mib(int64(medOf(rs, func(r result) float64 { return float64(r.redis.memory) }))), m.keys, m.matches, m.shadow)
	}
	p("\nEvery pass, in order (events/s wall; events per CEP CPU-second; the rest of the machine's CPU in cores: the " +
		"broker, the idle stack, anything else; Redis forks during the pass; live matches (distinct reaches) / Start calls for them, " +
		"more when a join's link and trigger racing on two partitions each found the other, one workflow ID; the warm-up pass before it in brackets, events/s wall and per CEP CPU-second):\n\n")
	for _, d := range designs {
		var parts []string
		for i, r := range in.res[d] {
			w := ""
			if i < len(in.warm[d]) {
				w = fmt.Sprintf(" [%.0f; %.0f]", in.warm[d][i].perSec(), in.warm[d][i].perCPU())
			}
			parts = append(parts, fmt.Sprintf("%.0f; %.0f; %.2f; %d; %d/%d%s", r.perSec(), r.perCPU(), r.other, r.redis.forks, r.matches, r.starts, w))
		}
		p("- %s: %s\n", d, strings.Join(parts, " | "))
	}
	wall := func(d string) float64 { return medOf(in.res[d], result.perSec) }
	cpu := func(d string) float64 { return medOf(in.res[d], result.perCPU) }
	all := func(d string) float64 { return medOf(in.res[d], result.perAllCPU) }
	p("\nRatios of the medians, the stage (d) against:\n\n| against | wall events/s | per CEP CPU-second | per CPU-second of CEP + Redis |\n|---|---:|---:|---:|\n")
	for _, d := range []string{dCeiling, dBaseline, dObvious} {
		p("| %s | %.2fx | %.2fx | %.2fx |\n", d, wall(dStage)/wall(d), cpu(dStage)/cpu(d), all(dStage)/all(d))
	}

	st := in.med[dStage]
	p("\n## Redis footprint of the stage\n\n")
	if st.instances > 0 {
		p("After a pass over the %d events: %d pattern instances in the 4 partitions' state, %s encoded (keys and "+
			"values, %.0f bytes per instance) and %s in Redis by `MEMORY USAGE` of the snapshot, log and meta keys "+
			"(**%.0f bytes per instance**; the log is between none and about the snapshot's size, by where it is in "+
			"its cycle); used memory grew %s for %d active users (**%.0f bytes per active user**, "+
			"state, join links and triggers together). The previous engine's pass grew used memory %s (%d keys: "+
			"a dedupe mark per event and a key per pattern instance), %.0f bytes per event.\n\n",
			s.n, st.instances, mib(st.stateEncoded), float64(st.stateEncoded)/float64(st.instances), mib(st.stateBytes),
			float64(st.stateBytes)/float64(st.instances), mib(st.redis.memory), s.users,
			float64(st.redis.memory)/float64(s.users), mib(in.med[dBaseline].redis.memory), in.med[dBaseline].keys,
			float64(in.med[dBaseline].redis.memory)/float64(s.n))
	}
	stateRatio, memRatio := flatReport(in.flat, in.flatUsers)

	l := in.lat
	latencyReport(l, "Latency at half the preloaded peak", "half the stage's median peak over the preloaded topic, the producer idle")
	lv := in.live
	if len(lv.ramp) > 0 {
		p("## The live peak\n\nThe preloaded peak is the stage's alone: its producer ran before the clock started. Live, the " +
			"producer, the broker and the stage share the machine's cores, so the stage keeps up with less. The live ramp " +
			"offers rates open loop (a new stage and topic per step, each step as the latency run below); a step is kept up " +
			"with when, as the producer had flushed its last record, the stage had made durable all but at most half a second " +
			"of them, and the producer kept its schedule to 250 ms. Rates go up by 1.25x until a step is not kept up with, " +
			"then once halfway back.\n\n")
		p("| offered events/s | seconds | machine busy | this process (producer and stage) cores | backlog at the producer's end | producer behind | p50 | p99 | p99 of the second half | kept up |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, s := range lv.ramp {
			q := s.lat
			half := len(q.samples) / 2
			p("| %d | %d | %.0f%% | %.2f | %d | %s | %s | %s | %s | %v |\n", q.rate, q.secs, 100*q.machineBusy, q.procCores, q.backlog,
				q.producerLag.Round(time.Millisecond), q.p(0.5), q.p(0.99), latencies{samples: q.samples[half:]}.p(0.99), s.kept)
		}
		p("\nLive peak: **%d events/s** (%.2fx the preloaded peak).\n\n", lv.peak, float64(lv.peak)/wall(dStage))
		if lv.peak > 0 {
			latencyReport(lv.lat, "Latency at half the live peak", "half the live peak")
		}
		if len(lv.rewrite.samples) > 0 {
			p("The runs above start with Redis' AOF compacted, so none of its automatic rewrites (past 512 MB of AOF and " +
				"twice its last compaction; the AOF each run wrote is above) falls inside them. A " +
				"rewrite forks Redis, and the child takes one of the machine's two cores while it writes the data set out; " +
				"the run below is the one above again, with a rewrite forced halfway.\n\n")
			latencyReport(lv.rewrite, "Latency at half the live peak, an AOF rewrite forced halfway", "half the live peak")
		}
	}

	p("## Against the goals (issue 15)\n\n| goal | measured | met |\n|---|---|---|\n")
	rc, rcc := wall(dStage)/wall(dCeiling), cpu(dStage)/cpu(dCeiling)
	p("| at least 0.3x the decode ceiling | %.2fx per wall second, %.2fx per CEP CPU-second | %s |\n", rc, rcc, yes(rc >= 0.3 && rcc >= 0.3))
	rb, rbc, rba := wall(dStage)/wall(dBaseline), cpu(dStage)/cpu(dBaseline), all(dStage)/all(dBaseline)
	p("| at least 5x today's engine | %.1fx per wall second, %.1fx per CPU-second of CEP + Redis (%.1fx per CEP CPU-second alone) | %s |\n",
		rb, rba, rbc, yes(rb >= 5 && rba >= 5))
	latOK := func(l latencies) bool {
		return l.p(0.99) <= 100*time.Millisecond && l.drained && len(l.samples) >= 1000
	}
	if lv.peak > 0 {
		p("| produce -> workflow start p99 <= 100 ms at half of the peak | half the live peak (%d events/s): p99 %s over %d samples; half the preloaded peak (%d events/s): p99 %s over %d samples | at half the live peak %s; at half the preloaded peak %s |\n",
			lv.lat.rate, lv.lat.p(0.99), len(lv.lat.samples), l.rate, l.p(0.99), len(l.samples), yes(latOK(lv.lat)), yes(latOK(l)))
	} else {
		p("| produce -> workflow start p99 <= 100 ms at half of the peak | p99 %s over %d samples at %d events/s | %s |\n",
			l.p(0.99), len(l.samples), l.rate, yes(latOK(l)))
	}
	p("| Redis memory flat in events for a fixed set of users | twice the events: pattern state x%.2f (encoded); all of Redis x%.2f without the changelog's log (bounded per partition; x%.2f with it) | pattern state %s; all of Redis %s |\n",
		stateRatio, memRatio, flatRatio(in.flat[0].memory, in.flat[1].memory), yes(stateRatio <= 1.2), yes(memRatio <= 1.2))
	p("\n\"Flat\" is read as: twice the events grow memory by at most 20%%. A p99 counts only over at least 1,000 " +
		"samples with every produced record drained. Today's engine runs its patterns in Redis (a Lua script per event " +
		"and rule), so its CEP process alone understates its cost: the CPU ratio that decides is CEP + Redis.\n")
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func latencyReport(l latencies, title, what string) {
	p := func(format string, args ...any) { fmt.Printf(format, args...) }
	p("## %s\n\n", title)
	p("Open loop at %d events/s (%s) for %d s: %d events, each stamped with its due time; a sample is due time -> the "+
		"`Start` call of the match it completed (a counting starter, no Temporal; Temporal is the pipeline benchmark's). "+
		"The stage runs with batches of "+strconv.Itoa(cmp.Or(*batchSize, 500))+" or "+orDefault(*batchWait, cep.DefaultBatchWait).String()+", made durable together every "+
		orDefault(*commitInterval, cep.DefaultCommitInterval).String()+" (`omega cep`'s defaults: 500, "+cep.DefaultBatchWait.String()+", "+cep.DefaultCommitInterval.String()+"); the producer runs in this process, its events generated and encoded before the clock starts (it only hands records to its producer, franz-go's, lingering 1 ms, on time). The producer "+
		"fell at most %s behind its schedule; the stage drained every produced record before the samples were read: %v.\n\n",
		l.rate, what, l.secs, l.produced, l.producerLag.Round(time.Millisecond), l.drained)
	p("| samples | p50 | p90 | p99 | max | p99 of the first half | p99 of the second half |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	half := len(l.samples) / 2
	p("| %d | %s | %s | %s | %s | %s | %s |\n\n", len(l.samples), l.p(0.5), l.p(0.9), l.p(0.99), l.p(1),
		latencies{samples: l.samples[:half]}.p(0.99), latencies{samples: l.samples[half:]}.p(0.99))
	p("While it ran, the machine's %d cores were %.0f%% busy: this process (producer and stage) %.2f cores, Redis %.2f "+
		"cores, everything else (the broker, the idle Temporal and PostgreSQL of the stack) %.2f cores. Redis' AOF was "+
		"compacted before the run; ",
		runtime.NumCPU(), 100*l.machineBusy, l.procCores, l.redisCores, l.machineBusy*float64(runtime.NumCPU())-l.procCores-l.redisCores)
	switch {
	case l.redisForks == 0:
		p("during it Redis wrote %.0f MB of AOF and did not rewrite it.\n\n", float64(l.aofGrown)/1e6)
	case l.rewriteAt > 0:
		p("during it Redis rewrote it %d time(s), a fork each, forced %s into the run; the last took %d s by Redis' count.\n\n",
			l.redisForks, l.rewriteAt, l.rewriteSecs)
	default:
		p("during it Redis rewrote it %d time(s), a fork each; the last took %d s by Redis' count.\n\n", l.redisForks, l.rewriteSecs)
	}
	if len(l.steps) > 0 {
		p("Where the batches spent their time (`omega_cep_batch_seconds`; wait is from a batch's first record to its processing; shared is one pipeline of a partition's shared parts (joins; the batches that queued meanwhile share one), sent beside the partition, until its matches are admitted (a batch's start includes waiting for it); p99 is the upper bound of its histogram bucket):\n\n")
		p("| step | batches | mean | p99 <= |\n|---|---:|---:|---:|\n")
		for _, s := range l.steps {
			p("| %s | %d | %s | %s |\n", s.step, s.batches, s.mean.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond))
		}
		p("\n")
	}
}

func flatRatio(a, b int64) float64 { return float64(b) / float64(max(a, 1)) }

// flatReport prints the memory-flat test's section and returns its ratios: the partition state
// (encoded) and all of Redis (used memory grown), the second stream against the first.
func flatReport(f [2]flatPass, users int) (stateRatio, memRatio float64) {
	p := func(format string, args ...any) { fmt.Printf(format, args...) }
	p("Memory flat in events, for a fixed set of users: the stage, from empty state, over a stream of %d events of "+
		"%d users spanning %s of event time, then over one twice as long (%d events over %s: the same users and event "+
		"rate). Both spans exceed the life of every key the stage keeps: pattern instances (the 24 h sequence window "+
		"and the hour of lateness), join links (link_ttl, 30 days, and a day's grace past the newest link of an item) "+
		"and join triggers (the hour of lateness and the day's grace), all in event time; so both passes end in steady "+
		"state.\n\n", f[0].s.n, users, f[0].span.Round(time.Minute), f[1].s.n, f[1].span.Round(time.Minute))
	p("| stream | events | active users | pattern instances | partition state encoded | in Redis (with the log) | of which the log | bytes per instance (in Redis) | state bytes per active user (in Redis) | join link keys | link bytes | join trigger keys | trigger bytes | used memory grown | the same without the log | live matches |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, fp := range f {
		p("| %dx | %d | %d | %d | %s | %s | %s | %.0f | %.0f | %d | %s | %d | %s | %s | %s | %d |\n", i+1, fp.s.n, fp.s.users, fp.instances,
			mib(fp.stateEncoded), mib(fp.stateBytes), mib(fp.logBytes), float64(fp.stateBytes)/float64(max(fp.instances, 1)),
			float64(fp.stateBytes)/float64(fp.s.users), fp.shared.links, mib(fp.shared.linkBytes), fp.shared.triggers,
			mib(fp.shared.triggerBytes), mib(fp.memory), mib(fp.memory-fp.logBytes), fp.matches)
	}
	stateRatio, memRatio = flatRatio(f[0].stateEncoded, f[1].stateEncoded), flatRatio(f[0].memory-f[0].logBytes, f[1].memory-f[1].logBytes)
	p("\nTwice the events: partition state x%.2f encoded (instances x%.2f; x%.2f in Redis with the log), join links x%.2f "+
		"(their bytes x%.2f), join triggers x%.2f, used memory x%.2f, and **x%.2f without the log**. The log is the "+
		"partition's changelog since its last snapshot: it is compacted into a new snapshot once it outgrows both the "+
		"last snapshot and a megabyte, or reaches 10,000 records, so it is bounded per partition whatever the events "+
		"(here, with little state, by the megabyte), and its size at the end of a pass is where that pass stopped in "+
		"its cycle.\n\n",
		stateRatio, flatRatio(f[0].instances, f[1].instances), flatRatio(f[0].stateBytes, f[1].stateBytes),
		flatRatio(f[0].shared.links, f[1].shared.links), flatRatio(f[0].shared.linkBytes, f[1].shared.linkBytes),
		flatRatio(f[0].shared.triggers, f[1].shared.triggers), flatRatio(f[0].memory, f[1].memory), memRatio)
	return stateRatio, memRatio
}
