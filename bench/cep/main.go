// Command cep benchmarks the CEP stage on a running stack (make bench starts one). It preloads a
// realistic event stream into a fresh topic, then consumes it, one consumer after another, on
// the same broker and Redis, each in its own consumer group and under its own key prefix:
//
//	(a) the ceiling: a Sarama group consumer that decodes and validates every event (event.Decode,
//	    then its type's contract: event.Catalog.Check)
//	    and does nothing else;
//	(b) the previous engine, kept in bench/cep/baseline: a dedupe EXISTS and SET per event and one
//	    Lua script per event and rule, pipelined per batch;
//	(c) the obvious design, bench/cep/obvious: go-redis plain commands pipelined per batch;
//	(d) Omega's CEP stage (cep.New, as `omega cep` builds it) with a counting starter.
//
// The passes repeat (-reps) and the medians are reported: events per wall second, per CPU-second
// of this process (its CPU during the pass; the passes never overlap), Redis' CPU, memory and keys.
// Then it drives the stage open loop at half its measured peak and reports produce-to-start
// latency, and runs the memory-flat test (flat.go). Results are printed as Markdown. With
// -latency-only -rate R it runs only the latency part at R events/s (a sweep: one run per rate).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"sigs.k8s.io/yaml"

	"github.com/omegareach/omega/bench/cep/baseline"
	"github.com/omegareach/omega/bench/cep/obvious"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
)

// The designs, in report order.
const (
	dCeiling  = "ceiling"
	dBaseline = "baseline"
	dObvious  = "obvious"
	dStage    = "stage"
)

var designs = []string{dCeiling, dBaseline, dObvious, dStage}

var names = map[string]string{
	dCeiling:  "(a) ceiling: Sarama group consumer, event.Decode and Catalog.Check only",
	dBaseline: "(b) previous engine (Lua per event and rule, pipelined; bench/cep/baseline)",
	dObvious:  "(c) obvious design (go-redis plain commands, pipelined; bench/cep/obvious)",
	dStage:    "(d) Omega CEP stage (partition-owned state, one changelog commit per batch)",
}

func main() {
	n := flag.Int("events", 300_000, "events in the preloaded stream")
	batchWait = flag.Duration("batch-wait", 0, "the stage's cep.Config.BatchWait (0: its default)")
	batchSize = flag.Int("batch-size", 0, "the stage's cep.Config.BatchSize (0: its default)")
	commitInterval = flag.Duration("commit-interval", 0, "the stage's cep.Config.CommitInterval (0: its default)")
	users := flag.Int("users", 1_000_000, "distinct users of the preloaded stream")
	items := flag.Int("items", 100_000, "distinct items")
	rulesPath := flag.String("rules", "bench/cep/rules.yaml", "rule set")
	reps := flag.Int("reps", 3, "passes of each consumer over the stream (medians are reported)")
	latencySecs := flag.Int("latency-seconds", 20, "duration of the open-loop latency run")
	latencyRate := flag.Int("rate", 0, "events/s of the latency run (0: half the stage's measured peak)")
	rampSecs := flag.Int("ramp-seconds", 20, "seconds per step of the live ramp, which finds the highest rate the stage keeps up with while the producer and broker share the machine, as long as a latency run lasts (a 10-second step kept up with rates a 20-second run at the same rate fell behind on, as the state grew); a latency run then offers half of it (0: no ramp)")
	flatUsers := flag.Int("flat-users", 10_000, "users of the memory-flat test's streams")
	flatEvents := flag.Int("flat-events", 400_000, "events of the memory-flat test's first stream (the second has twice as many)")
	flatSpan := flag.Duration("flat-span", 40*24*time.Hour, "event time spanned by the memory-flat test's first stream (past every key's life: the 30-day join links and their day of grace)")
	flatOnly := flag.Bool("flat-only", false, "only the memory-flat test (a development loop, not a report)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of this process during a measured pass of the stage (-profile-pass), and allocation profiles at its start and end (<path>.heap0, .heap1: pprof -sample_index=alloc_space -base) (with -latency-only: of the latency run)")
	samplesPath = flag.String("samples", "", "append every latency run's samples to this file: run, due time (Unix ms), latency (µs), rule, tab-separated")
	rewriteAt := flag.Duration("rewrite-at", 0, "with -latency-only: force a Redis AOF rewrite this long into the run (0: none)")
	tracePath := flag.String("trace", "", "with -latency-only: write a runtime trace of the latency run (go tool trace)")
	profilePass := flag.Int("profile-pass", 1, "with -cpuprofile: the measured stage pass to profile (1: the first)")
	transport := flag.Bool("transport", false, "with -latency-only: the decode ceiling's consumer in the stage's place (what the producer, broker and consumer add before any stage)")
	latencyOnly := flag.Bool("latency-only", false, "only the open-loop latency run, at -rate (a sweep of rates, one run each)")
	only := flag.String("designs", "", "comma-separated designs to pass (ceiling,baseline,obvious,stage); set, the run stops after the throughput table (a development loop, not a report)")
	flag.Parse()
	// The process runs its collector as omega cep does (cmd/omega: GOGC=400 unless GOGC is set), for
	// every design alike.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if *only != "" {
		designs = strings.Split(*only, ",")
	}
	if *latencyOnly && *latencyRate <= 0 {
		must(fmt.Errorf("-latency-only needs -rate"))
	}
	brokers := strings.Split(env("OMEGA_KAFKA_BROKERS", "127.0.0.1:9092"), ",")
	rdb := redis.NewClient(&redis.Options{Addr: env("OMEGA_REDIS_ADDR", "127.0.0.1:6379"), PoolSize: 64})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	began := time.Now()

	b, err := os.ReadFile(*rulesPath)
	must(err)
	var rules []cep.Rule
	must(yaml.UnmarshalStrict(b, &rules))
	for i := range rules {
		rules[i].Version = 1
		must(cep.Validate(rules[i], cep.Catalog{}))
	}

	run := fmt.Sprintf("bench%d", time.Now().Unix())
	if *latencyOnly {
		progress("latency: open loop at %d events/s for %ds", *latencyRate, *latencySecs)
		if *profile != "" {
			f, err := os.Create(*profile)
			must(err)
			must(pprof.StartCPUProfile(f))
			defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		}
		if *tracePath != "" {
			f, err := os.Create(*tracePath)
			must(err)
			must(trace.Start(f))
			defer func() { trace.Stop(); _ = f.Close() }()
		}
		var lat latencies
		if *transport {
			lat = transportRun(brokers, rdb, run, *latencyRate, *latencySecs, newGenerator(*users, *items, 1))
		} else {
			lat = latencyRun(brokers, rdb, rules, log, run, *latencyRate, *latencySecs, newGenerator(*users, *items, 1), *rewriteAt)
		}
		deleteKeys(rdb, run+"-lat")
		fmt.Printf("Command: `go run ./bench/cep %s`\n\n", strings.Join(os.Args[1:], " "))
		latencyReport(lat, "Latency", "at -rate")
		return
	}
	if *flatOnly {
		flatReport(flatRun(brokers, rdb, rules, log, run, *flatUsers, *items, *flatEvents, *flatSpan), *flatUsers)
		return
	}
	topic := run + ".events"
	createTopic(brokers, topic)
	// Event times 1 ms apart, ending about now: the absences (30 minutes) are not due during the run.
	gen := newGenerator(*users, *items, 1)
	from := time.Now().Add(-time.Duration(*n) * time.Millisecond)
	progress("producing %d events to %s", *n, topic)
	s := produce(brokers, topic, *n, gen, func(i int) time.Time { return from.Add(time.Duration(i) * time.Millisecond) })
	hw, total := highWater(brokers, topic)
	if total != int64(*n) {
		must(fmt.Errorf("topic holds %d records, want %d", total, *n))
	}

	// pass consumes the whole topic once with design d, in a new consumer group under its own
	// Redis key prefix, and deletes its keys after counting them.
	pass := func(d, prefix, profile string) result {
		runtime.GC()
		var r result
		switch d {
		case dCeiling:
			r = consume(brokers, rdb, topic, prefix, total, decodeOnly)
		case dBaseline:
			e, err := baseline.New(rdb, prefix, rules)
			must(err)
			r = consume(brokers, rdb, topic, prefix, total, e.Handle)
			r.matches, r.shadow = e.Matches(), e.Shadow()
			r.starts = r.matches
		case dObvious:
			o, err := obvious.New(rdb, prefix, rules)
			must(err)
			r = consume(brokers, rdb, topic, prefix, total, o.Handle)
			r.matches, r.shadow = o.Matches(), o.Shadow()
			r.starts = r.matches
		case dStage:
			r = runStage(brokers, rdb, rules, log, prefix, prefix, topic, hw, total, profile)
			st := stateStats(rdb, prefix)
			r.instances, r.stateEncoded, r.stateBytes = st.Instances, st.Encoded, st.Stored
		}
		r.keys = countKeys(rdb, prefix)
		deleteKeys(rdb, prefix)
		return r
	}
	// Every measured pass follows a warm-up pass of its design, unmeasured, right before it: a CEP
	// replica is a long-running process whose heap its state has already grown, and a pass that
	// started on the memory the runtime had returned to the system while the slow designs ran paid
	// a first touch for every page its heap grew by (11 µs a page on this host; the stage's state
	// grows by 600,000 instances in two seconds), where the ceiling, run right after the stage's
	// pass, found its pages mapped. Warm-ups are listed with the passes, not in the medians.
	res, warm := map[string][]result{}, map[string][]result{}
	for rep := 1; rep <= *reps; rep++ {
		for _, d := range designs {
			prefix := fmt.Sprintf("%s-%s%d", run, d, rep)
			progress("pass %d/%d: %s (warm-up)", rep, *reps, names[d])
			quiesce(rdb, true)
			w := pass(d, prefix+"w", "")
			progress("  %.0f events/s, %.0f per CPU-second (warm-up)", w.perSec(), w.perCPU())
			warm[d] = append(warm[d], w)
			progress("pass %d/%d: %s", rep, *reps, names[d])
			p := ""
			if d == dStage && rep == *profilePass {
				p = *profile
			}
			quiesce(rdb, false)
			r := pass(d, prefix, p)
			progress("  %.0f events/s, %.0f per CPU-second, Redis %.1f CPU s, %d matches (%d Start calls), %d page faults, %d Redis forks",
				r.perSec(), r.perCPU(), r.redis.cpu.Seconds(), r.matches, r.starts, r.faults, r.redis.forks)
			res[d] = append(res[d], r)
		}
	}
	med := map[string]result{}
	for _, d := range designs {
		med[d] = median(res[d])
	}
	if *only != "" {
		for _, d := range designs {
			m := med[d]
			fmt.Printf("%-9s %8.0f events/s  %7.0f per CEP CPU-s  Redis %5.1f µs/event  GC %2.0f%%  %d instances, %d bytes encoded, %d in Redis\n", d,
				m.perSec(), m.perCPU(), m.redisPerEv(), 100*m.gc.Seconds()/m.cpu.Seconds(), m.instances, m.stateEncoded, m.stateBytes)
		}
		return
	}

	rate := int(med[dStage].perSec() / 2)
	if *latencyRate > 0 {
		rate = *latencyRate
	}
	progress("latency: open loop at %d events/s for %ds", rate, *latencySecs)
	lat := latencyRun(brokers, rdb, rules, log, run, rate, *latencySecs, gen, 0)
	deleteKeys(rdb, run+"-lat")
	var live liveLatency
	if *rampSecs > 0 {
		// From an eighth of the preloaded peak: a few steps below the live peak, so the ramp shows
		// where the latency turns.
		live.peak, live.ramp = liveRamp(brokers, rdb, rules, log, run, max(1000, int(med[dStage].perSec()/8)/1000*1000), *rampSecs, gen)
		if live.peak > 0 {
			progress("latency: open loop at half the live peak, %d events/s for %ds", live.peak/2, *latencySecs)
			name := run + "-half"
			live.lat = latencyRun(brokers, rdb, rules, log, name, live.peak/2, *latencySecs, gen, 0)
			deleteKeys(rdb, name+"-lat")
			// The same run with an AOF rewrite forced halfway: what Redis' own maintenance costs on
			// these two shared cores (the runs above are kept clear of it).
			progress("latency: open loop at half the live peak, %d events/s for %ds, an AOF rewrite forced halfway", live.peak/2, *latencySecs)
			name = run + "-rewrite"
			live.rewrite = latencyRun(brokers, rdb, rules, log, name, live.peak/2, *latencySecs, gen, time.Duration(*latencySecs)*time.Second/2)
			deleteKeys(rdb, name+"-lat")
		}
	}

	flat := flatRun(brokers, rdb, rules, log, run, *flatUsers, *items, *flatEvents, *flatSpan)

	report(reportInput{args: os.Args[1:], began: began, took: time.Since(began), s: s, rules: rules, reps: *reps,
		res: res, warm: warm, med: med, lat: lat, live: live, flat: flat, redis: redisSetup(rdb), users: *users, items: *items, flatUsers: *flatUsers})
}

// decodeOnly is the ceiling's handler: decode and validate every record (the wire contract, then
// its type's in the catalogue, as the stage does), nothing else.
func decodeOnly(msgs []*sarama.ConsumerMessage) error {
	cat := event.Default()
	for _, m := range msgs {
		e, err := event.Decode(m.Value)
		if err == nil {
			err = cat.Check(&e)
		}
		if err != nil {
			return fmt.Errorf("offset %d: %w", m.Offset, err)
		}
	}
	return nil
}

// median is the pass with the median events per wall second.
func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.perSec() < b.perSec():
			return -1
		case a.perSec() > b.perSec():
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

func createTopic(brokers []string, topic string) {
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	must(err)
	defer admin.Close()
	must(admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false))
	must(admin.CreateTopic(topic+".dlq", &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false))
}

// deleteTopic deletes a run's topic and its dead-letter topic: the development broker keeps every
// record in memory, and the latency runs produce millions that the pipeline benchmark after them
// should not share the broker with.
func deleteTopic(brokers []string, topic string) {
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	must(err)
	defer admin.Close()
	must(admin.DeleteTopic(topic))
	must(admin.DeleteTopic(topic + ".dlq"))
}

func env(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// The stage's batching, as flags set it (zero: cep.Config's defaults).
var (
	batchWait, commitInterval *time.Duration
	batchSize                 *int
	samplesPath               *string
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func saramaConfig() *sarama.Config {
	sc := cep.DefaultSaramaConfig()
	sc.Consumer.Group.Session.Timeout = 2 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
	sc.Consumer.Group.Rebalance.Timeout = 2 * time.Second
	sc.Producer.Flush.Messages = 1000
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	return sc
}
