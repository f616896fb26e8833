// Command pipeline benchmarks the whole of Omega Reach on a running stack (make bench starts one,
// with Temporal on PostgreSQL): `omega cep` and `omega worker` as processes with the demo rules and
// journeys, an open-loop generator producing events at fixed rates, and a provider receiver in this
// process timing each message from its event's due time.
//
// The phases, in order:
//   - floor: Temporal's bare workflow (start, one no-op activity, complete) on the same server,
//     from this process, with Omega's worker settings, closed loop at the CEP stage's start
//     concurrencies: the closed workflows/s a reach has to beat; then the lean single-send reach in
//     the same harness (Omega's worker in this process), to compare the workflows alone;
//   - eager: Omega's worker in this process and a starter beside it, the same single-send reach
//     started with and without eager workflow start;
//   - omega: the rate stepped up by a factor (+25%) from -start-rate until a step saturates,
//     then bisected between the peak and that step, and a long step at half the peak (at least
//     -min-reaches reaches) for the latency goal. The stream is views, one cart_add in
//     -reach-every (a single-send reach, and the abandoned-cart absence armed as in the demo: most
//     carts are paid a little later, one in -unpaid-every is not and its timer starts the
//     retargeting journey in the run);
//   - temporal-only: one workflow per user, every event a signal-with-start;
//   - scale-out: two CEP replicas and two workers against one of each.
//
// Every step's CPU is read over its steady window (from -warm-seconds after its start to the end
// of its load), so CPU per reach leaves out the ramp-up and the drain. It writes a Markdown report
// and an SVG latency-versus-load plot.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// The rules whose reaches the benchmark times (the demo rules' IDs).
const (
	ruleCartAdd   = "cart-add"       // single send: cart-reminder
	ruleAbandoned = "cart-abandoned" // absence: cart-retarget (push, then a 24 h wait)
)

type config struct {
	timeline              io.Writer // -timeline (nil: none)
	rates, tonlyRates     []int
	startRate             int
	ramp                  float64
	maxSteps, bisect      int
	reachEvery, stepSecs  int
	minReaches, warmSecs  int
	unpaidEvery           int
	payAfter, abandonIn   time.Duration
	floorConc             []int
	floorSecs             int
	reachLoop             bool
	eagerSecs             int
	eagerRate             float64
	eagerCEP              bool
	tonlySecs             int
	flushRedis            bool
	drain                 time.Duration
	omega, out, svg, data string
	brokers               []string
	temporal, pg          string
	run                   string
	phases                []string
}

func main() {
	var c config
	rates := flag.String("rates", "", "offered events/s of the Omega steps, instead of the ramp (stops after the first saturated one)")
	flag.IntVar(&c.startRate, "start-rate", 1000, "events/s of the first Omega step (0: the floor's closed workflows/s times -reach-every)")
	flag.Float64Var(&c.ramp, "ramp", 1.25, "each Omega step offers this times the previous one's rate")
	flag.IntVar(&c.maxSteps, "max-steps", 8, "at most this many ramp steps")
	flag.IntVar(&c.bisect, "bisect", 1, "steps bisecting (geometrically) between the peak and the first saturated rate")
	tonly := flag.String("temporal-only-rates", "31,62,125,250,500", "offered events/s of the Temporal-only steps")
	flag.IntVar(&c.reachEvery, "reach-every", 100, "one event in this many is a cart_add of a new user (the CEP benchmark's stream matches 0.8% of its events)")
	flag.IntVar(&c.unpaidEvery, "unpaid-every", 4, "one cart in this many is not paid: its abandoned-cart timer fires and starts the retargeting journey (1: none paid)")
	flag.DurationVar(&c.payAfter, "pay-after", 2*time.Second, "a paid cart's order_paid follows its cart_add by this much")
	flag.DurationVar(&c.abandonIn, "abandon-within", 10*time.Second, "the window of the demo's cart-abandoned rule in this run (the demo's 30m would fire no timer in the run)")
	flag.IntVar(&c.stepSecs, "step-seconds", 30, "seconds of load per ramp step")
	flag.IntVar(&c.minReaches, "min-reaches", 1000, "the half-peak step lasts long enough to offer this many single-send reaches")
	flag.IntVar(&c.warmSecs, "warm-seconds", 5, "seconds at a step's start left out of its steady window (CPU, reaches/s); at least the absence window and its lateness when the step is long enough, so the window holds the retargeting reaches too")
	floor := flag.String("floor-concurrency", "32,128", "closed-loop starters of the bare-workflow floor (the CEP stage starts up to 32 per partition, 4 partitions); the floor is the best")
	flag.IntVar(&c.floorSecs, "floor-seconds", 35, "seconds per floor concurrency")
	flag.BoolVar(&c.reachLoop, "reach-loop", true, "after the floor, the lean single-send reach in the same closed-loop harness (its worker in this process)")
	flag.IntVar(&c.eagerSecs, "eager-seconds", 30, "seconds per eager-start variant")
	flag.BoolVar(&c.eagerCEP, "eager-cep", true, "run omega cep with OMEGA_CEP_EAGER_START as the deployment does (a reach worker inside, eager starts)")
	flag.Float64Var(&c.eagerRate, "eager-rate", 10, "reaches/s of the eager-start phase (0: half the Omega peak's, run after the ramp)")
	flag.IntVar(&c.tonlySecs, "temporal-only-seconds", 40, "seconds of load per Temporal-only step (its rates are low: more reaches to time)")
	flag.BoolVar(&c.flushRedis, "flush-redis", false, "empty Redis first (make bench: the CEP benchmark's state is left there)")
	flag.DurationVar(&c.drain, "drain", 15*time.Second, "how long after a step its messages may still arrive (plus the absence window and lateness)")
	flag.StringVar(&c.omega, "omega", "bin/omega", "the omega binary")
	phases := flag.String("phases", "floor,omega,eager,temporal-only,scale-out", "which parts to run (omega always runs)")
	flag.StringVar(&c.out, "out", "bench/results/pipeline.md", "report")
	flag.StringVar(&c.svg, "svg", "docs/img/pipeline-latency.svg", "latency-versus-load plot")
	timeline := flag.String("timeline", "", "write each delivered single-send reach of the Omega steps here: step, due (ms into the step), latency (ms), tab-separated (where in a step the slow ones fall)")
	flag.Parse()
	if *timeline != "" {
		f, err := os.Create(*timeline)
		must(err)
		defer f.Close()
		c.timeline = f
	}
	if *rates != "" {
		c.rates = ints(*rates)
	}
	c.tonlyRates, c.floorConc = ints(*tonly), ints(*floor)
	c.phases = strings.Split(*phases, ",")
	if c.unpaidEvery < 1 || c.reachEvery < 2 || c.ramp <= 1 {
		fail("-unpaid-every must be at least 1, -reach-every at least 2, -ramp above 1")
	}
	c.brokers = strings.Split(env("OMEGA_KAFKA_BROKERS", "127.0.0.1:9092"), ",")
	c.temporal, c.pg = env("OMEGA_TEMPORAL_ADDR", "127.0.0.1:7233"), env("OMEGA_PG_URL", "")
	c.data = env("OMEGA_DATA", "/var/lib/omega")
	c.run = fmt.Sprintf("pipe%d", time.Now().Unix())
	b := newBench(c)
	b.runAll()
}

// bench holds the run's shared parts.
type bench struct {
	c        config
	recv     *receiver
	tc       client.Client
	producer sarama.AsyncProducer
	pool     *pgxpool.Pool
	rdb      *redis.Client
	topic    string
	rules    string // the demo rules, the absence window shortened
	procs    []*proc
	report   bytes.Buffer
	// eagerStarts counts the starts whose response carried the first workflow task.
	eagerStarts atomic.Int64
}

func newBench(c config) *bench {
	b := &bench{c: c, recv: newReceiver(), topic: c.run + ".events"}
	ctx := context.Background()
	must(store.Migrate(c.pg))
	pool, err := pgxpool.New(ctx, c.pg)
	must(err)
	b.pool = pool
	b.rdb = redis.NewClient(&redis.Options{Addr: env("OMEGA_REDIS_ADDR", "127.0.0.1:6379")})
	if c.flushRedis {
		must(b.rdb.FlushAll(ctx).Err())
	}
	b.rules = writeRules(c)
	js, err := journey.Load("journey/demo")
	must(err)
	store := journey.NewStore(pool, worker.Catalog())
	for _, j := range js {
		_, err := store.Apply(ctx, j)
		must(err)
	}
	admin, err := sarama.NewClusterAdmin(c.brokers, kafkaConfig())
	must(err)
	for _, t := range []string{b.topic, b.topic + ".dlq"} {
		must(admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false))
	}
	must(admin.Close())
	b.producer, err = sarama.NewAsyncProducer(c.brokers, kafkaConfig())
	must(err)
	go func() {
		for err := range b.producer.Errors() {
			progress("produce: %v", err)
		}
	}()
	// Starts whose answer carries the first workflow task were eager: counted to show the eager
	// phase did what it says.
	countEager := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if r, ok := reply.(*workflowservice.StartWorkflowExecutionResponse); ok && err == nil && r.GetEagerWorkflowTask() != nil {
			b.eagerStarts.Add(1)
		}
		return err
	}
	b.tc, err = client.Dial(client.Options{HostPort: c.temporal, Logger: quietLogger{},
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(countEager)}}})
	must(err)
	return b
}

// writeRules copies the demo rules into the run's directory with the cart-abandoned window set to
// -abandon-within, so its timers fire while the benchmark runs.
func writeRules(c config) string {
	dir := filepath.Join(c.data, c.run+"-rules")
	must(os.MkdirAll(dir, 0o755))
	files, err := filepath.Glob("cep/demo/*.yaml")
	must(err)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		must(err)
		if filepath.Base(f) == ruleAbandoned+".yaml" && c.abandonIn > 0 {
			s := string(raw)
			if !strings.Contains(s, "\nwithin: 30m\n") {
				fail("%s: no 'within: 30m' line to shorten", f)
			}
			raw = []byte(strings.Replace(s, "\nwithin: 30m\n", "\nwithin: "+c.abandonIn.String()+"\n", 1))
		}
		must(os.WriteFile(filepath.Join(dir, filepath.Base(f)), raw, 0o644))
	}
	return dir
}

func (b *bench) runAll() {
	defer b.stopProcs()
	c := b.c
	var r results

	// 0. The floor: Temporal's bare workflow on the same server, before anything else loads it.
	if slices.Contains(c.phases, "floor") {
		r.floor = b.floorPhase()
	}

	// 1. Eager workflow start: a worker in the starter's process, with and without.
	if slices.Contains(c.phases, "eager") && c.eagerRate > 0 {
		r.eager = b.eagerPhase(c.eagerRate)
	}

	b.startOmega("1")
	b.warmUp()
	// Not reported: caches, connection pools and Temporal's shards warm up.
	b.omegaStep("warm-up", 500, 10)

	// The idle baseline: what every process uses with nothing to do (Temporal's timers and queue
	// scans, the pollers, the CEP's idle partitions), so CPU per reach can be read net of it.
	r.idle = b.idleBaseline(10)

	// 2. Omega, stepping the rate up to saturation, then bisecting the knee.
	r.omega = b.ramp(r.floor)
	r.peak = peakOf(r.omega)
	progress("omega peak: %.0f events/s", r.peak)
	halfRate := int(r.peak / 2)
	r.half = b.omegaStep("omega-half", halfRate, max(c.stepSecs, ceilDiv(c.minReaches*c.reachEvery, max(halfRate, 1))))
	// Profiles in a step of their own (not reported), so profiling costs no measured step.
	r.profiles = b.profileStep(halfRate)

	if slices.Contains(c.phases, "eager") && c.eagerRate == 0 {
		r.eager = b.eagerPhase(r.peak / 2 / float64(c.reachEvery))
	}

	// 3. Scale-out: one CEP replica and one worker, then two of each, at twice the peak (more than
	// one pair keeps up with), so the sustained reaches/s measure what each setup can carry.
	if slices.Contains(c.phases, "scale-out") {
		scaleRate := int(r.peak * 2)
		r.one = b.omegaStep("scale-1x1", scaleRate, c.stepSecs)
		b.startOmega("2")
		time.Sleep(8 * time.Second) // the group rebalances onto the second replica
		r.two = b.omegaStep("scale-2x2", scaleRate, c.stepSecs)
	}

	// 4. The Temporal-only design on the same stream shape.
	if slices.Contains(c.phases, "temporal-only") {
		stopT := startTemporalOnly(b.tc, c.run+"-tonly", b.recv.url)
		for _, rate := range c.tonlyRates {
			s := b.tonlyStep(fmt.Sprintf("tonly-%d", rate), rate)
			r.tonly = append(r.tonly, s)
			if s.saturated {
				break
			}
		}
		stopT()
	}

	b.write(r)
}

// idleBaseline is each process's CPU (cores) over secs seconds with no load.
func (b *bench) idleBaseline(secs int) map[string]float64 {
	b.waitIdle()
	progress("idle baseline: %ds", secs)
	w := <-b.windowAfter(0, secs)
	out := map[string]float64{}
	d := w.to.Sub(w.from).Seconds()
	for k, v := range w.cpu1 {
		if v0, ok := w.cpu0[k]; ok {
			out[k] = (v.cpu - v0.cpu).Seconds() / d
		}
	}
	addOthers(out)
	progress("idle: temporal %.2f postgresql %.2f cep %.2f worker %.2f kafka %.2f redis %.2f, machine %.2f cores",
		out["temporal"], out["postgresql"], out["omega cep1"], out["omega worker1"], out["kafka"], out["redis"], out[machineProc])
	return out
}

// results is what the phases measured.
type results struct {
	idle     map[string]float64 // cores with no load
	floor    []floorRun
	omega    []step // the ramp, in the order run
	half     step
	peak     float64 // events/s
	eager    []eagerRun
	one, two step
	tonly    []step
	profiles map[string]string
}

// ramp steps Omega's rate up by c.ramp from the start rate until a step saturates (down first when
// the first one does), then bisects between the peak and the lowest saturated rate.
func (b *bench) ramp(floor []floorRun) []step {
	c := b.c
	var steps []step
	run := func(rate int) step {
		s := b.omegaStep(fmt.Sprintf("omega-%d", rate), rate, c.stepSecs)
		steps = append(steps, s)
		return s
	}
	if len(c.rates) > 0 {
		for _, rate := range c.rates {
			if run(rate).saturated {
				break
			}
		}
		return steps
	}
	rate := c.startRate
	if rate == 0 {
		rate = 2000
		if f := bestFloor(floor); f.closedPerSec > 0 {
			rate = int(math.Round(f.closedPerSec*float64(c.reachEvery)/100)) * 100
		}
	}
	rate = max(rate, 100)
	if run(rate).saturated {
		for range 3 { // down until one keeps up
			rate = int(float64(rate) / c.ramp / c.ramp)
			if !run(rate).saturated {
				break
			}
		}
	} else {
		for range c.maxSteps - 1 {
			rate = max(rate+100, int(math.Round(float64(rate)*c.ramp/100))*100)
			if run(rate).saturated {
				break
			}
		}
	}
	for range c.bisect {
		lo, hi := peakOf(steps), math.Inf(1)
		for _, s := range steps {
			if s.saturated && float64(s.offered) > lo {
				hi = math.Min(hi, float64(s.offered))
			}
		}
		if !slices.ContainsFunc(steps, func(s step) bool { return !s.saturated }) || math.IsInf(hi, 1) || hi/lo < 1.08 {
			break
		}
		run(int(math.Round(math.Sqrt(lo*hi)/50)) * 50)
	}
	return steps
}

// step is one rate's measurements.
type step struct {
	name              string
	offered, secs     int     // events/s, seconds of load
	reaches           int     // single-send reaches offered
	abandons          int     // carts left unpaid: retargeting reaches expected
	delivered, inTime int     // single-send messages: after the drain, and before the step ended
	absDelivered      int     // retargeting pushes delivered
	eventsPerSec      float64 // consumed while loaded
	reachesPerSec     float64 // single-send messages delivered, from the step's start to the last one
	window            time.Duration
	winReaches        int // single-send messages delivered inside the steady window
	winAll            int // every reach's message delivered inside the steady window
	lat               latencies
	absLat            latencies // absence deadline (cart_add + window) to the retargeting push
	startLat          latencies // produce to workflow start (sampled)
	lag               float64   // consumer lag (or queued signals) when the load stopped
	cpu               map[string]float64
	rss               map[string]float64
	saturated         bool
	completed         int // single-send reaches the audit trail shows completed after the drain (-1: unknown)
}

func (s step) missing() int { return s.reaches - s.delivered }

// winRate is the single-send reaches/s delivered in the steady window; winAllRate every reach's.
func (s step) winRate() float64    { return float64(s.winReaches) / math.Max(s.window.Seconds(), 1e-9) }
func (s step) winAllRate() float64 { return float64(s.winAll) / math.Max(s.window.Seconds(), 1e-9) }

// perReach is a process's CPU (ms) per reach delivered (any kind) in the steady window.
func (s step) perReach(k string) float64 {
	if s.winAll == 0 {
		return 0
	}
	return s.cpu[k] * s.window.Seconds() / float64(s.winAll) * 1000
}

// netPerReach is perReach less the process's idle CPU.
func (s step) netPerReach(k string, idle map[string]float64) float64 {
	if s.winAll == 0 {
		return 0
	}
	return (s.cpu[k] - idle[k]) * s.window.Seconds() / float64(s.winAll) * 1000
}

// omegaStep drives Omega at rate events/s for secs seconds.
func (b *bench) omegaStep(name string, rate, secs int) step {
	b.waitIdle()
	progress("%s: %d events/s for %ds", name, rate, secs)
	g := b.newGenerator(b.c.run + "-" + name)
	before := b.scrape("omega_cep_events_total{outcome=\"processed\"}")
	win := b.steadyWindow(secs)
	start := time.Now()
	due := drive(rate, secs, g, b.produce)
	end := time.Now()
	after := b.scrape("omega_cep_events_total{outcome=\"processed\"}")
	lag := b.scrape("omega_cep_consumer_lag")
	s := b.collect(name, rate, secs, due, start, end, <-win)
	s.eventsPerSec = (after - before) / end.Sub(start).Seconds()
	s.lag = lag
	s.startLat = b.startLatencies(due)
	s.completed = b.completed(b.c.run + "-" + name + "-c")
	return s
}

// window is a steady window's bounds and the processes' CPU at both.
type window struct {
	from, to   time.Time
	cpu0, cpu1 map[string]procSample
}

// steadyWindow samples the processes a warm-up into a load of secs seconds starting now, and again
// at its end. The warm-up is warmSecs, or the absence window and its lateness when longer (the
// first timers fire then: the mix is steady from there), and at most half the load.
func (b *bench) steadyWindow(secs int) <-chan window {
	warm := time.Duration(b.c.warmSecs) * time.Second
	if b.c.unpaidEvery > 0 && b.c.abandonIn > 0 {
		warm = max(warm, b.c.abandonIn+5*time.Second) // the CEP's allowed lateness
	}
	return b.windowAfter(min(warm, time.Duration(secs)*time.Second/2), secs)
}

// windowAfter samples the processes warm into a load of secs seconds starting now, and at its end.
func (b *bench) windowAfter(warm time.Duration, secs int) <-chan window {
	out := make(chan window, 1)
	go func() {
		t0 := time.Now()
		time.Sleep(warm)
		w := window{from: time.Now(), cpu0: b.sampleProcs()}
		time.Sleep(time.Until(t0.Add(time.Duration(secs) * time.Second)))
		w.to, w.cpu1 = time.Now(), b.sampleProcs()
		out <- w
	}()
	return out
}

func (b *bench) produce(ev event.Event, at time.Time) {
	v, err := ev.Encode()
	must(err)
	b.producer.Input() <- &sarama.ProducerMessage{Topic: b.topic, Key: sarama.StringEncoder(ev.Key()), Value: sarama.ByteEncoder(v), Timestamp: at}
}

// profileStep loads Omega at rate for 15 s while taking 10 s CPU profiles of cep1, worker1 and
// Temporal, and summarises them after the load.
func (b *bench) profileStep(rate int) map[string]string {
	const secs = 15
	b.waitIdle()
	progress("profiles: %d events/s for %ds", rate, secs)
	files := make(chan map[string]string, 1)
	go func() {
		time.Sleep(time.Second)
		files <- b.takeProfiles("profile", 10)
	}()
	due := drive(rate, secs, b.newGenerator(b.c.run+"-profile"), b.produce)
	// The retargeting reaches too, so none lands in the next phase.
	deadline := time.Now().Add(b.c.drain + b.c.abandonIn + 5*time.Second)
	for time.Now().Before(deadline) && b.recv.count(due) < len(due) {
		time.Sleep(100 * time.Millisecond)
	}
	return summarise(<-files, b.c.omega)
}

// completed counts the single-send reaches of users starting with prefix that the audit trail
// shows completed.
func (b *bench) completed(prefix string) int {
	if b.pool == nil {
		return -1
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_records WHERE kind = 'completed' AND rule_id = $2 AND starts_with(user_id, $1)`, prefix, ruleCartAdd).Scan(&n); err != nil {
		return -1
	}
	return n
}

// tonlyStep drives the Temporal-only design at rate events/s (views and cart_adds only: the
// design has no absence).
func (b *bench) tonlyStep(name string, rate int) step {
	b.waitIdle()
	secs := b.c.tonlySecs
	progress("%s: %d events/s for %ds", name, rate, secs)
	g := b.newGenerator(b.c.run + "-" + name)
	g.unpaidEvery = 0
	q := newSignaler(b.tc, b.c.run+"-tonly", 64)
	win := b.steadyWindow(secs)
	start := time.Now()
	due := drive(rate, secs, g, func(ev event.Event, _ time.Time) { q.in <- ev })
	end := time.Now()
	done := q.done.Load()
	s := b.collect(name, rate, secs, due, start, end, <-win)
	s.eventsPerSec = float64(done) / end.Sub(start).Seconds()
	s.lag = float64(len(q.in))
	q.close()
	return s
}

// collect waits for the drain and measures a step: latency over every reach (one never delivered
// counts as the drain's end), throughput sustained from the step's start to its last delivery and
// inside the steady window, CPU over the steady window.
func (b *bench) collect(name string, rate, secs int, due map[string]time.Time, start, end time.Time, w window) step {
	s := step{name: name, offered: rate, secs: secs, cpu: map[string]float64{}, rss: map[string]float64{}, window: w.to.Sub(w.from)}
	for k, v := range w.cpu1 {
		if v0, ok := w.cpu0[k]; ok {
			s.cpu[k] = (v.cpu - v0.cpu).Seconds() / s.window.Seconds()
		}
		s.rss[k] = v.rss
	}
	addOthers(s.cpu)
	deadline := end.Add(b.c.drain)
	for k := range due {
		if strings.HasPrefix(k, ruleAbandoned+"/") {
			deadline = end.Add(b.c.drain + b.c.abandonIn + 5*time.Second) // the watermark's lateness
			break
		}
	}
	for time.Now().Before(deadline) && b.recv.count(due) < len(due) {
		time.Sleep(100 * time.Millisecond)
	}
	var last time.Time
	for key, at := range due {
		got, ok := b.recv.arrival(key)
		inWin := ok && !got.Before(w.from) && !got.After(w.to)
		if inWin {
			s.winAll++
		}
		if strings.HasPrefix(key, ruleAbandoned+"/") {
			s.abandons++
			if ok {
				s.absDelivered++
				s.absLat = append(s.absLat, got.Sub(at))
			} else {
				s.absLat = append(s.absLat, deadline.Sub(at))
			}
			continue
		}
		s.reaches++
		if !ok {
			s.lat = append(s.lat, deadline.Sub(at))
			continue
		}
		s.delivered++
		if inWin {
			s.winReaches++
		}
		if !got.After(end) {
			s.inTime++
		}
		if got.After(last) {
			last = got
		}
		s.lat = append(s.lat, got.Sub(at))
		if b.c.timeline != nil {
			fmt.Fprintf(b.c.timeline, "%s\t%d\t%.1f\n", name, at.Sub(start).Milliseconds(), float64(got.Sub(at).Microseconds())/1000)
		}
	}
	if s.delivered > 0 {
		s.reachesPerSec = float64(s.delivered) / last.Sub(start).Seconds()
	}
	slices.Sort(s.lat)
	slices.Sort(s.absLat)
	s.saturated = float64(s.inTime) < 0.9*float64(s.reaches) || s.missing() > s.reaches/100 || s.lat.p(0.99) > 5*time.Second
	progress("%s: %d/%d reaches delivered (%d while loaded), %.1f reaches/s sustained, %.1f in the steady window (all kinds %.1f), p50 %s p99 %s; retargeting %d/%d; saturated %v; cores: temporal %.2f postgresql %.2f, others %.2f",
		name, s.delivered, s.reaches, s.inTime, s.reachesPerSec, s.winRate(), s.winAllRate(), s.lat.p(0.5), s.lat.p(0.99), s.absDelivered, s.abandons, s.saturated,
		s.cpu["temporal"], s.cpu["postgresql"], s.cpu[otherProc])
	return s
}

// waitIdle waits (up to 3 minutes) until the previous step's backlog is gone: no consumer lag, no
// message reaching the receiver and the Temporal server nearly idle for 2 s, so a step never pays
// for the one before.
func (b *bench) waitIdle() {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		posts := b.recv.posts.Load()
		t0, _ := b.temporalCPU()
		time.Sleep(2 * time.Second)
		t1, ok := b.temporalCPU()
		idle := !ok || (t1-t0).Seconds()/2 < 0.25
		if b.scrape("omega_cep_consumer_lag") == 0 && b.recv.posts.Load() == posts && idle {
			return
		}
	}
	progress("the backlog did not drain in 3 minutes; going on")
}

// startLatencies reads, for a sample of the step's single-send reaches, when Temporal started the
// workflow.
func (b *bench) startLatencies(due map[string]time.Time) latencies {
	var out latencies
	n := 0
	for key, at := range due {
		user, ok := strings.CutPrefix(key, ruleCartAdd+"/")
		if !ok {
			continue
		}
		if n++; n > 40 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d, err := b.tc.DescribeWorkflowExecution(ctx, workflows.ReachID(ruleCartAdd, user, user+"-add"), "")
		cancel()
		if err != nil {
			continue
		}
		out = append(out, d.GetWorkflowExecutionInfo().GetStartTime().AsTime().Sub(at))
	}
	slices.Sort(out)
	return out
}

// peakOf is the highest rate a design kept up with: the highest unsaturated step's offered rate
// (half the lowest rate when even that one saturated).
func peakOf(steps []step) float64 {
	peak := 0.0
	for _, s := range steps {
		if !s.saturated {
			peak = max(peak, float64(s.offered))
		}
	}
	if peak == 0 && len(steps) > 0 {
		peak = float64(steps[0].offered) / 2
	}
	return peak
}

// warmUp waits until the group owns the topic and the worker answers: a few reaches end to end.
func (b *bench) warmUp() {
	progress("warming up")
	g := b.newGenerator(b.c.run + "-warm")
	g.reachEvery = 2
	due := map[string]time.Time{}
	for k, at := range drive(20, 2, g, b.produce) {
		if strings.HasPrefix(k, ruleCartAdd+"/") { // the unpaid carts' timers fire in the next step
			due[k] = at
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for b.recv.count(due) < len(due) {
		if time.Now().After(deadline) {
			fail("warm-up: %d of %d reaches delivered in 90s; see the omega logs in %s", b.recv.count(due), len(due), b.logDir())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// --- the generator and the open-loop driver ---

type generator struct {
	prefix      string
	reachEvery  int
	unpaidEvery int           // one cart in this many is not paid (0: no order_paid, no expected absence)
	payAfter    time.Duration // a paid cart's order_paid follows it by this much
	abandonIn   time.Duration // the absence window: when an unpaid cart's timer is due
	n, carts    int
	rng         *rand.Rand
	paying      []payment // FIFO: every payment is due payAfter after its cart
}

type payment struct {
	user string
	due  time.Time
}

// newGenerator makes the same stream shape for every phase (same seed), its users prefixed so
// phases do not see each other's state.
func (b *bench) newGenerator(prefix string) *generator {
	return &generator{prefix: prefix, reachEvery: b.c.reachEvery, unpaidEvery: b.c.unpaidEvery, payAfter: b.c.payAfter,
		abandonIn: b.c.abandonIn, rng: rand.New(rand.NewPCG(7, 11))}
}

// next returns the event due at at and the reaches it should cause (keyed rule/user, with the time
// each is due from): a cart_add of a new user every reachEvery events (a single-send reach, and the
// abandoned-cart absence armed; its payment follows payAfter later, except for one cart in
// unpaidEvery whose timer then starts the retargeting journey); an order_paid taking a view's slot
// when one is due; else a view of one of 1M users on one of 100k items (a count rule's input that
// rarely completes).
func (g *generator) next(at time.Time) (event.Event, map[string]time.Time) {
	g.n++
	if g.n%g.reachEvery == 0 {
		u := fmt.Sprintf("%s-c%d", g.prefix, g.n)
		want := map[string]time.Time{ruleCartAdd + "/" + u: at}
		if g.unpaidEvery > 0 {
			g.carts++
			if g.carts%g.unpaidEvery == 0 {
				if g.abandonIn > 0 {
					want[ruleAbandoned+"/"+u] = at.Add(g.abandonIn)
				}
			} else {
				g.paying = append(g.paying, payment{user: u, due: at.Add(g.payAfter)})
			}
		}
		return event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: "sku-1", TS: at}, want
	}
	if len(g.paying) > 0 && !g.paying[0].due.After(at) {
		return g.pay(at), nil
	}
	return event.Event{EventID: fmt.Sprintf("%s-v%d", g.prefix, g.n), UserID: fmt.Sprintf("%s-u%d", g.prefix, g.rng.IntN(1_000_000)),
		Type: "view", ItemID: fmt.Sprintf("i%d", g.rng.IntN(100_000)), TS: at}, nil
}

// pay returns the first due payment's order_paid, stamped at.
func (g *generator) pay(at time.Time) event.Event {
	p := g.paying[0]
	g.paying = g.paying[1:]
	return event.Event{EventID: p.user + "-paid", UserID: p.user, Type: "order_paid", ItemID: "sku-1", TS: at}
}

// drive emits rate events/s for secs seconds at their due times (open loop: a slow consumer does
// not slow the arrivals; queueing shows as latency), then the payments still owed at their due
// times. It returns the time each expected reach is due from.
func drive(rate, secs int, g *generator, send func(event.Event, time.Time)) map[string]time.Time {
	due := map[string]time.Time{}
	total := rate * secs
	start := time.Now().Add(20 * time.Millisecond)
	interval := time.Second / time.Duration(max(rate, 1))
	for i := 0; i < total; {
		now := time.Now()
		for ; i < total; i++ {
			at := start.Add(time.Duration(i) * interval)
			if at.After(now) {
				break
			}
			ev, want := g.next(at)
			for k, t := range want {
				due[k] = t
			}
			send(ev, at)
		}
		time.Sleep(time.Millisecond)
	}
	for len(g.paying) > 0 {
		time.Sleep(time.Until(g.paying[0].due))
		at := g.paying[0].due
		send(g.pay(at), at)
	}
	return due
}

// --- the provider receiver ---

type receiver struct {
	url   string
	mu    sync.Mutex
	first map[string]time.Time // rule/user: the first message of that user's reach of that rule
	posts atomic.Int64
	// waiting: rule/user -> a channel closed when that reach's first message arrives.
	waiting sync.Map
}

// notify returns a channel closed when the first message of key (rule/user) arrives.
func (r *receiver) notify(key string) <-chan struct{} {
	ch := make(chan struct{})
	r.waiting.Store(key, ch)
	return ch
}

func newReceiver() *receiver {
	r := &receiver{first: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	r.url = "http://" + ln.Addr().String() + "/deliveries"
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			now := time.Now()
			var m struct {
				UserID  string `json:"user_id"`
				ReachID string `json:"reach_id"`
			}
			_ = json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&m)
			r.posts.Add(1)
			key := m.UserID // the Temporal-only design's messages name no reach: a cart_add's
			if f := strings.Split(m.ReachID, "/"); len(f) >= 3 && f[0] == "reach" {
				key = f[1] + "/" + m.UserID
			} else {
				key = ruleCartAdd + "/" + key
			}
			r.mu.Lock()
			if _, ok := r.first[key]; !ok {
				r.first[key] = now
			}
			r.mu.Unlock()
			if ch, ok := r.waiting.LoadAndDelete(key); ok {
				close(ch.(chan struct{}))
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"bench"}`)
		}))
	}()
	return r
}

func (r *receiver) arrival(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.first[key]
	return t, ok
}

func (r *receiver) count(due map[string]time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k := range due {
		if _, ok := r.first[k]; ok {
			n++
		}
	}
	return n
}

// --- processes ---

type proc struct {
	name    string
	cmd     *exec.Cmd
	metrics string
}

func (b *bench) logDir() string { return filepath.Join(b.c.data, "log") }

// startOmega starts one `omega cep` and one `omega worker` (replica id).
func (b *bench) startOmega(id string) {
	for _, name := range []string{"worker", "cep"} {
		port := freePort()
		cmd := exec.Command(b.c.omega, name)
		cmd.Env = append(os.Environ(), "OMEGA_EVENTS_TOPIC="+b.topic, "OMEGA_CEP_GROUP="+b.c.run+"-cep",
			"OMEGA_TASK_QUEUE="+b.c.run, "OMEGA_KEY_PREFIX="+b.c.run, "OMEGA_RULES="+b.rules,
			"OMEGA_WEBHOOK_URL="+b.recv.url, "OMEGA_WEBHOOK_ALLOW=127.0.0.0/8", "OMEGA_DAILY_CAP=100",
			"OMEGA_METRICS_ADDR=127.0.0.1:"+strconv.Itoa(port), "OMEGA_PPROF=1")
		if name == "cep" {
			// As make run and deploy/ run it: a reach worker inside, eager starts.
			cmd.Env = append(cmd.Env, "OMEGA_CEP_EAGER_START="+strconv.FormatBool(b.c.eagerCEP))
		}
		f, err := os.Create(filepath.Join(b.logDir(), "bench-"+name+id+".log"))
		must(err)
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // gone with the benchmark, however it ends
		must(cmd.Start())
		b.procs = append(b.procs, &proc{name: name + id, cmd: cmd, metrics: "http://127.0.0.1:" + strconv.Itoa(port)})
	}
}

func (b *bench) stopProcs() {
	for _, p := range b.procs {
		_ = p.cmd.Process.Signal(os.Interrupt)
	}
	for _, p := range b.procs {
		_ = p.cmd.Wait()
	}
}

// scrape sums a metric (all label sets matching the prefix) across the CEP replicas.
func (b *bench) scrape(series string) float64 {
	total := 0.0
	for _, p := range b.procs {
		if !strings.HasPrefix(p.name, "cep") {
			continue
		}
		resp, err := http.Get(p.metrics + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, series) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				total += v
			}
		}
	}
	return total
}

// takeProfiles takes a CPU profile of cep1, worker1 and the Temporal server for secs seconds and
// returns the files.
func (b *bench) takeProfiles(name string, secs int) map[string]string {
	out := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	procs := b.procs
	if port := os.Getenv("OMEGA_TEMPORAL_PPROF_PORT"); port != "" {
		procs = append(slices.Clone(procs), &proc{name: "temporal", metrics: "http://127.0.0.1:" + port})
	}
	for _, p := range procs {
		if p.name != "cep1" && p.name != "worker1" && p.name != "temporal" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.metrics, secs))
			if err != nil {
				return
			}
			defer resp.Body.Close()
			file := filepath.Join(b.logDir(), name+"-"+p.name+".pprof")
			f, err := os.Create(file)
			must(err)
			_, _ = io.Copy(f, resp.Body)
			f.Close()
			mu.Lock()
			out[p.name] = file
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// summarise runs `go tool pprof -top` on each profile (after the load: it costs CPU).
func summarise(files map[string]string, omegaBin string) map[string]string {
	out := map[string]string{}
	for name, file := range files {
		args := []string{"tool", "pprof", "-top", "-nodecount=12"}
		if name != "temporal" {
			args = append(args, omegaBin)
		}
		top, err := exec.Command("go", append(args, file)...).Output()
		if err != nil {
			continue
		}
		lines := strings.Split(string(top), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "Showing nodes") || strings.Contains(l, "flat%") {
				lines = lines[i:]
				break
			}
		}
		out[name] = strings.Join(lines, "\n")
	}
	return out
}

// --- helpers ---

type latencies []time.Duration

func (l latencies) p(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(l)))) - 1 // nearest rank
	return l[max(0, min(i, len(l)-1))]
}

func kafkaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.ClientID = "omega-bench"
	sc.Producer.RequiredAcks = sarama.WaitForLocal
	sc.Producer.Return.Errors = true
	sc.Producer.Flush.Frequency = 2 * time.Millisecond
	sc.Producer.Flush.Messages = 500
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	return sc
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		must(err)
		out = append(out, n)
	}
	return out
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func env(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
