package main

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	dto "github.com/prometheus/client_model/go"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/metrics"
)

type latencies struct {
	samples     []time.Duration
	rate, secs  int
	produced    int64
	producerLag time.Duration // the most the open-loop producer fell behind its schedule
	backlog     int64         // records produced but not yet made durable by the stage when the producer had flushed its last
	drained     bool          // the stage committed every produced record before the samples were read
	steps       []stepStat
	// CPU while the events were produced: the machine's busy share, this process's and Redis' cores.
	machineBusy, procCores, redisCores float64
	redisForks                         int64 // Redis forks (AOF rewrites) while the events were produced
	rewriteSecs                        int   // how long the last of them took (s, as Redis counts them)
	aofGrown                           int64 // bytes added to the AOF while the events were produced (none rewritten)
	rewriteAt                          time.Duration
}

func (l latencies) p(q float64) time.Duration {
	if len(l.samples) == 0 {
		return 0
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i].Round(100 * time.Microsecond)
}

// latencyRun drives a new stage (configured as `omega cep` runs it) open loop at rate events/s
// for secs seconds: every event is due at a fixed time whether or not the stage keeps up, and is
// stamped with that time, so queueing shows as latency. A sample is the time from an event's due
// time to the Start call of the match it completed.
// The run's topic is name.latency; its stage's keys and group name-lat (the caller deletes them).
// Redis' AOF is compacted first (quiesce), so none of its automatic rewrites falls inside the
// run (a run writes about 200 MB of AOF at 75,000 events/s; a rewrite starts past 512 MB and
// twice the last compaction): rewriteAt > 0 forces one that long after the clock starts, to show
// what it costs.
func latencyRun(brokers []string, rdb *redis.Client, rules []cep.Rule, log *slog.Logger, name string, rate, secs int, g *generator,
	rewriteAt time.Duration) latencies {
	quiesce(rdb, true)
	topic := name + ".latency"
	createTopic(brokers, topic)
	defer deleteTopic(brokers, topic)
	sr := startStage(brokers, rdb, rules, log, name+"-lat", name+"-lat", topic, []int32{0, 1, 2, 3}, true)
	defer sr.stop()
	// Produce only once every partition is claimed (its state restored): joining is not latency.
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if rdb.Exists(ctx, sr.metas...).Val() == int64(len(sr.metas)) {
			break
		}
	}
	return openLoop(brokers, rdb, topic, rate, secs, g, rewriteAt, sr.committed, func() []time.Duration {
		progress("  latency run: %d matches started (%d Start calls)", sr.starter.reaches(), sr.starter.n.Load())
		sr.starter.mu.Lock()
		defer sr.starter.mu.Unlock()
		for r, ss := range sr.starter.byRule {
			l := latencies{samples: ss}
			progress("    %s: %d samples, p50 %s, p99 %s", r, len(ss), l.p(0.5), l.p(0.99))
		}
		writeSamples(fmt.Sprintf("%d/s", rate), sr.starter.points)
		return slices.Clone(sr.starter.samples)
	})
}

// transportRun is latencyRun with the decode ceiling's consumer in the stage's place: a sample is
// an event's due time -> the consumer holding it decoded (one event in ten), so it measures what
// the producer, the broker and a Sarama consumer add before any stage sees an event.
func transportRun(brokers []string, rdb *redis.Client, name string, rate, secs int, g *generator) latencies {
	topic := name + ".latency"
	createTopic(brokers, topic)
	defer deleteTopic(brokers, topic)
	var mu sync.Mutex
	var samples []time.Duration
	var seen atomic.Int64
	h := &batchHandler{done: make(chan struct{}), want: math.MaxInt64, fn: func(msgs []*sarama.ConsumerMessage) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			e, err := event.Decode(m.Value)
			if err != nil {
				return err
			}
			if seen.Add(1)%10 == 0 {
				samples = append(samples, now.Sub(e.TS))
			}
		}
		return nil
	}}
	defer runGroup(brokers, name+"-lat", topic, h)()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !h.claimed.Load(); time.Sleep(50 * time.Millisecond) {
	}
	return openLoop(brokers, rdb, topic, rate, secs, g, 0, h.count.Load, func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(samples)
	})
}

// openLoop produces rate events/s for secs seconds to topic (every partition's consumer started)
// and returns the latencies: consumed is how many records the consumer has taken for good,
// samples what it measured.
func openLoop(brokers []string, rdb *redis.Client, topic string, rate, secs int, g *generator, rewriteAt time.Duration,
	consumed func() int64, samples func() []time.Duration) latencies {
	ctx := context.Background()
	time.Sleep(500 * time.Millisecond)
	// The load generator is franz-go's producer (lingering 1 ms): Sarama's async producer took
	// about 0.5 of this machine's 2 cores at 50,000 records/s, which the stage under test would
	// otherwise lose; in production the producers run elsewhere. Keys are hashed as the wire
	// contract says (FNV-1a, as Sarama's partitioner, which the preload uses): with franz-go's
	// default (murmur2, Java's) three records in four came to a partition their key does not hash
	// to, and the stage forwarded each to its key's partition (cep/forward.go), a produce round trip
	// per batch that the latency runs measured from 2026-12-02 on (p50 29 ms at 20,000 events/s,
	// against 9 ms).
	forwarded0 := forwardedCount()
	p, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(fnv1a))),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(1<<20))
	must(err)
	produced := func(_ *kgo.Record, err error) { must(err) }
	l := latencies{rate: rate, secs: secs, rewriteAt: rewriteAt}
	// The events are generated and encoded before the clock starts, each stamped with the time it
	// is due: the open loop then only hands records to the producer, so the harness takes as little
	// of the machine's CPU from the stage as it can.
	interval := time.Second / time.Duration(max(rate, 1))
	n := rate * secs
	base := time.Now().Add(time.Second + time.Duration(n)*5*time.Microsecond)
	type record struct {
		key string
		val []byte
	}
	recs := make([]record, n)
	for i := range recs {
		e := g.next(base.Add(time.Duration(i) * interval))
		v, _ := e.Encode()
		recs[i] = record{e.Key(), v}
	}
	if rewriteAt > 0 {
		t := time.AfterFunc(time.Until(base.Add(rewriteAt)), func() { must(rdb.BgRewriteAOF(ctx).Err()) })
		defer t.Stop()
	}
	time.Sleep(time.Until(base))
	aof0 := aofSize(rdb)
	m0, cpu0, r0, t0, h0 := machineCPU(), cpuTime(), snapRedis(rdb), time.Now(), batchSteps()
	for i := 0; i < n; {
		due := base.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if lag := time.Since(due); lag > l.producerLag {
			l.producerLag = lag
		}
		for ; i < n && !time.Now().Before(base.Add(time.Duration(i)*interval)); i++ {
			p.Produce(ctx, &kgo.Record{Key: []byte(recs[i].key), Value: recs[i].val}, produced)
			l.produced++
		}
	}
	el := time.Since(t0).Seconds()
	m1 := machineCPU()
	l.machineBusy = float64(m1.busy-m0.busy) / float64(m1.total-m0.total)
	l.procCores = (cpuTime() - cpu0).Seconds() / el
	rd := snapRedis(rdb).since(r0)
	l.redisCores, l.redisForks = rd.cpu.Seconds()/el, rd.forks
	if rd.forks == 0 {
		l.aofGrown = aofSize(rdb) - aof0
	} else {
		quiesce(rdb, false)
		l.rewriteSecs, _ = strconv.Atoi(infoFields(rdb, "persistence")["aof_last_rewrite_time_sec"])
	}
	must(p.Flush(ctx))
	p.Close()
	l.backlog = l.produced - consumed()
	// Every produced record's matches are in the samples once the stage committed it.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if consumed() >= l.produced {
			l.drained = true
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	l.steps = stepsSince(h0, batchSteps())
	if n := forwardedCount() - forwarded0; n > 0 {
		must(fmt.Errorf("the stage forwarded %.0f records to their key's partition: the load generator's partitioner is not the wire contract's", n))
	}
	progress("  latency run: %d events produced, drained %v", l.produced, l.drained)
	l.samples = samples()
	return l
}

// kept reports whether the stage kept up with the run's offered rate: when the producer had
// flushed its last record, the stage had made durable all but at most half a second of them
// (a stage falling behind holds a backlog that grows with the run), and the producer itself kept
// its schedule (a producer that cannot offer the rate measures nothing).
func (l latencies) kept() bool {
	return l.drained && l.backlog <= int64(l.rate/2) && l.producerLag <= 250*time.Millisecond
}

// liveLatency is the live ramp and the latency run at half its peak.
type liveLatency struct {
	peak    int
	ramp    []rampStep
	lat     latencies
	rewrite latencies // lat's rate, an AOF rewrite forced halfway
}

// rampStep is one step of the live ramp.
type rampStep struct {
	lat  latencies
	kept bool
}

// liveRamp finds the live peak: the highest offered rate the stage keeps up with (latencies.kept)
// while the producer and the broker run on the same machine, as they do in the latency runs. It
// offers rates from `from` up by 1.25x, secs seconds each (a new stage and topic per step), until
// a step is not kept up with, then once halfway between the last kept rate and it.
func liveRamp(brokers []string, rdb *redis.Client, rules []cep.Rule, log *slog.Logger, run string, from, secs int, g *generator) (peak int, steps []rampStep) {
	step := func(rate int) bool {
		name := fmt.Sprintf("%s-r%d", run, rate)
		progress("live ramp: open loop at %d events/s for %ds", rate, secs)
		l := latencyRun(brokers, rdb, rules, log, name, rate, secs, g, 0)
		deleteKeys(rdb, name+"-lat")
		s := rampStep{lat: l, kept: l.kept()}
		steps = append(steps, s)
		progress("  p99 %s, backlog %d records at the producer's end, producer %s behind, kept up: %v, Redis forks %d", l.p(0.99), l.backlog, l.producerLag.Round(time.Millisecond), s.kept, l.redisForks)
		if s.kept {
			peak = max(peak, rate)
		}
		return s.kept
	}
	rate := from
	for step(rate) {
		rate = max(rate+1000, rate*5/4/1000*1000) // up, also from rates too low for 1.25x to reach the next thousand
	}
	if peak > 0 {
		step((peak + rate) / 2 / 1000 * 1000)
	}
	return peak, steps
}

// stepStat is where the stage's batches spent their time during a run (omega_cep_batch_seconds).
type stepStat struct {
	step      string
	batches   uint64
	mean, p99 time.Duration // p99: the upper bound of the bucket holding it
}

var stepOrder = []string{"wait", "decode", "compute", "shared", "fanout", "start", "respond", "track", "commit"}

// batchSteps reads the stage's batch step histograms: per step, the cumulative bucket counts
// (upper bounds in bounds), the count and the sum.
// fnv1a is the wire contract's key hash (cep.keyPartition, Sarama's default partitioner).
func fnv1a(b []byte) uint32 {
	h := fnv.New32a()
	_, _ = h.Write(b)
	return h.Sum32()
}

// forwardedCount is how many records the stages of this process forwarded to their key's partition.
func forwardedCount() float64 {
	mfs, err := metrics.Registry.Gather()
	must(err)
	for _, mf := range mfs {
		if mf.GetName() != "omega_cep_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "forwarded" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func batchSteps() map[string]*dto.Histogram {
	mfs, err := metrics.Registry.Gather()
	must(err)
	out := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		if mf.GetName() != "omega_cep_batch_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "step" {
					out[l.GetValue()] = m.GetHistogram()
				}
			}
		}
	}
	return out
}

func stepsSince(before, after map[string]*dto.Histogram) []stepStat {
	var out []stepStat
	for _, name := range stepOrder {
		a := after[name]
		if a == nil {
			continue
		}
		b := before[name]
		n := a.GetSampleCount()
		sum := a.GetSampleSum()
		if b != nil {
			n -= b.GetSampleCount()
			sum -= b.GetSampleSum()
		}
		if n == 0 {
			continue
		}
		st := stepStat{step: name, batches: n, mean: time.Duration(sum / float64(n) * 1e9)}
		for i, bk := range a.GetBucket() {
			c := bk.GetCumulativeCount()
			if b != nil {
				c -= b.GetBucket()[i].GetCumulativeCount()
			}
			if float64(c) >= 0.99*float64(n) {
				st.p99 = time.Duration(bk.GetUpperBound() * 1e9)
				break
			}
		}
		out = append(out, st)
	}
	return out
}

type cpuStat struct{ busy, total int64 }

// machineCPU reads the machine's CPU time from /proc/stat (all cores, in clock ticks).
func machineCPU() cpuStat {
	b, err := os.ReadFile("/proc/stat")
	must(err)
	line, _, _ := strings.Cut(string(b), "\n")
	var s cpuStat
	for i, f := range strings.Fields(line)[1:] {
		if i >= 8 { // guest time is counted in user time already
			break
		}
		v, _ := strconv.ParseInt(f, 10, 64)
		s.total += v
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v
		}
	}
	return s
}

// writeSamples appends a latency run's samples to the -samples file, one per line: the run (its
// rate), the sample's due time (Unix ms), its latency (µs) and its rule, tab-separated. Where a
// run's tail comes from shows in when its slow samples were due (a collection, a Redis rewrite).
func writeSamples(run string, ps []point) {
	if *samplesPath == "" {
		return
	}
	f, err := os.OpenFile(*samplesPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	must(err)
	w := bufio.NewWriter(f)
	for _, p := range ps {
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", run, p.due.UnixMilli(), p.d.Microseconds(), p.rule)
	}
	must(w.Flush())
	must(f.Close())
}
