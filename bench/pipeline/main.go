// Command pipeline benchmarks the whole of Omega Reach on a running stack (make bench starts one,
// with Temporal on PostgreSQL): `omega cep` and `omega worker` as processes with the demo rules and
// journeys, an open-loop generator producing events at fixed rates (views, and one cart_add in
// -reach-every that starts a reach), and a provider receiver in this process timing each message
// from its event's due time. It steps the rate up to saturation, measures the goals at half the
// peak, runs the Temporal-only design (one workflow per user, every event a signal-with-start) on
// the same stream, and two CEP replicas and two workers against one of each. It writes a Markdown
// report and an SVG latency-versus-load plot.
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
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

type config struct {
	rates, tonlyRates    []int
	reachEvery, stepSecs int
	tonlySecs            int
	flushRedis           bool
	drain                time.Duration
	omega, out, svg      string
	brokers              []string
	temporal, pg, data   string
	run                  string
	phases               []string
}

func main() {
	var c config
	rates := flag.String("rates", "1000,2000,4000,8000,16000", "offered events/s of the Omega steps (stops after the first saturated one)")
	tonly := flag.String("temporal-only-rates", "31,62,125,250,500", "offered events/s of the Temporal-only steps")
	flag.IntVar(&c.reachEvery, "reach-every", 100, "one event in this many is a cart_add that starts a reach (the CEP benchmark's stream matches 0.8% of its events)")
	flag.IntVar(&c.stepSecs, "step-seconds", 15, "seconds of load per step")
	flag.IntVar(&c.tonlySecs, "temporal-only-seconds", 40, "seconds of load per Temporal-only step (its rates are low: more reaches to time)")
	flag.BoolVar(&c.flushRedis, "flush-redis", false, "empty Redis first (make bench: the CEP benchmark's state is left there)")
	flag.DurationVar(&c.drain, "drain", 15*time.Second, "how long after a step its messages may still arrive")
	flag.StringVar(&c.omega, "omega", "bin/omega", "the omega binary")
	phases := flag.String("phases", "omega,temporal-only,scale-out", "which parts to run")
	flag.StringVar(&c.out, "out", "bench/results/pipeline.md", "report")
	flag.StringVar(&c.svg, "svg", "docs/img/pipeline-latency.svg", "latency-versus-load plot")
	flag.Parse()
	c.rates, c.tonlyRates = ints(*rates), ints(*tonly)
	c.phases = strings.Split(*phases, ",")
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
	topic    string
	procs    []*proc
	report   bytes.Buffer
}

func newBench(c config) *bench {
	b := &bench{c: c, recv: newReceiver(), topic: c.run + ".events"}
	ctx := context.Background()
	must(audit.Migrate(c.pg))
	pool, err := pgxpool.New(ctx, c.pg)
	must(err)
	b.pool = pool
	if c.flushRedis {
		rdb := redis.NewClient(&redis.Options{Addr: env("OMEGA_REDIS_ADDR", "127.0.0.1:6379")})
		must(rdb.FlushAll(ctx).Err())
		_ = rdb.Close()
	}
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
	b.tc, err = client.Dial(client.Options{HostPort: c.temporal, Logger: quietLogger{}})
	must(err)
	return b
}

func (b *bench) runAll() {
	defer b.stopProcs()
	c := b.c
	b.startOmega("1")
	b.warmUp()
	// Not reported: caches, connection pools and Temporal's shards warm up.
	b.omegaStep("warm-up", c.rates[0])

	// 1. Omega, stepping the rate up to saturation.
	var omega []step
	for _, rate := range c.rates {
		s := b.omegaStep(fmt.Sprintf("omega-%d", rate), rate)
		omega = append(omega, s)
		if s.saturated {
			break
		}
	}
	peak := peakOf(omega)
	progress("omega peak: %.0f events/s", peak)
	half := b.omegaStep("omega-half", int(peak/2))
	// Profiles in a step of their own (not reported), so profiling costs no measured step.
	profiles := b.profileStep(int(peak / 2))

	// 2. Scale-out: one CEP replica and one worker, then two of each, at twice the peak (more than
	// one pair keeps up with), so the sustained reaches/s measure what each setup can carry.
	scaleRate := int(peak * 2)
	var one, two step
	if slices.Contains(c.phases, "scale-out") {
		one = b.omegaStep("scale-1x1", scaleRate)
		b.startOmega("2")
		time.Sleep(8 * time.Second) // the group rebalances onto the second replica
		two = b.omegaStep("scale-2x2", scaleRate)
	}

	// 3. The Temporal-only design on the same stream shape.
	var tonly []step
	if slices.Contains(c.phases, "temporal-only") {
		stopT := startTemporalOnly(b.tc, c.run+"-tonly", b.recv.url)
		for _, rate := range c.tonlyRates {
			s := b.tonlyStep(fmt.Sprintf("tonly-%d", rate), rate)
			tonly = append(tonly, s)
			if s.saturated {
				break
			}
		}
		stopT()
	}

	b.write(omega, half, tonly, one, two, peak, profiles)
}

// step is one rate's measurements.
type step struct {
	name              string
	offered           int     // events/s
	reaches           int     // reaches offered
	delivered, inTime int     // messages of this step's reaches: after the drain, and before the step ended
	eventsPerSec      float64 // consumed while loaded
	reachesPerSec     float64 // messages delivered while loaded
	lat               latencies
	startLat          latencies // produce to workflow start (sampled)
	lag               float64   // consumer lag (or queued signals) when the load stopped
	cpu               map[string]float64
	rss               map[string]float64
	saturated         bool
	completed         int // reaches the audit trail shows completed after the drain (-1: unknown)
}

func (s step) missing() int { return s.reaches - s.delivered }

// omegaStep drives Omega at rate events/s for the step's seconds.
func (b *bench) omegaStep(name string, rate int) step {
	b.waitIdle()
	progress("%s: %d events/s for %ds", name, rate, b.c.stepSecs)
	g := newGenerator(b.c.run+"-"+name, b.c.reachEvery)
	before := b.scrape("omega_cep_events_total{outcome=\"processed\"}")
	cpu0 := b.sampleProcs()
	start := time.Now()
	due := drive(rate, b.c.stepSecs, g, b.produce)
	end := time.Now()
	after := b.scrape("omega_cep_events_total{outcome=\"processed\"}")
	lag := b.scrape("omega_cep_consumer_lag")
	s := b.collect(name, rate, due, start, end, cpu0)
	s.eventsPerSec = (after - before) / end.Sub(start).Seconds()
	s.lag = lag
	s.startLat = b.startLatencies(due)
	s.completed = b.completed(b.c.run + "-" + name + "-c")
	return s
}

func (b *bench) produce(ev event.Event, at time.Time) {
	v, err := ev.Encode()
	must(err)
	b.producer.Input() <- &sarama.ProducerMessage{Topic: b.topic, Key: sarama.StringEncoder(ev.Key()), Value: sarama.ByteEncoder(v), Timestamp: at}
}

// profileStep loads Omega at rate while taking 10 s CPU profiles of cep1, worker1 and Temporal,
// and summarises them after the load.
func (b *bench) profileStep(rate int) map[string]string {
	b.waitIdle()
	progress("profiles: %d events/s for %ds", rate, b.c.stepSecs)
	secs := min(10, b.c.stepSecs-2)
	files := make(chan map[string]string, 1)
	go func() {
		time.Sleep(time.Second)
		files <- b.takeProfiles("profile", secs)
	}()
	drive(rate, b.c.stepSecs, newGenerator(b.c.run+"-profile", b.c.reachEvery), b.produce)
	return summarise(<-files, b.c.omega)
}

// completed counts the reaches whose users start with prefix that the audit trail shows completed.
func (b *bench) completed(prefix string) int {
	if b.pool == nil {
		return -1
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_records WHERE kind = 'completed' AND starts_with(user_id, $1)`, prefix).Scan(&n); err != nil {
		return -1
	}
	return n
}

// tonlyStep drives the Temporal-only design at rate events/s.
func (b *bench) tonlyStep(name string, rate int) step {
	b.waitIdle()
	progress("%s: %d events/s for %ds", name, rate, b.c.tonlySecs)
	g := newGenerator(b.c.run+"-"+name, b.c.reachEvery)
	cpu0 := b.sampleProcs()
	q := newSignaler(b.tc, b.c.run+"-tonly", 64)
	start := time.Now()
	due := drive(rate, b.c.tonlySecs, g, func(ev event.Event, _ time.Time) { q.in <- ev })
	end := time.Now()
	done := q.done.Load()
	s := b.collect(name, rate, due, start, end, cpu0)
	s.eventsPerSec = float64(done) / end.Sub(start).Seconds()
	s.lag = float64(len(q.in))
	q.close()
	return s
}

// collect waits for the drain and measures a step: latency over every reach (one never delivered
// counts as the drain's end), throughput sustained from the step's start to its last delivery.
func (b *bench) collect(name string, rate int, due map[string]time.Time, start, end time.Time, cpu0 map[string]procSample) step {
	cpu1 := b.sampleProcs()
	s := step{name: name, offered: rate, reaches: len(due), cpu: map[string]float64{}, rss: map[string]float64{}}
	wall := end.Sub(start)
	for k, v := range cpu1 {
		if v0, ok := cpu0[k]; ok {
			s.cpu[k] = (v.cpu - v0.cpu).Seconds() / wall.Seconds()
		}
		s.rss[k] = v.rss
	}
	deadline := end.Add(b.c.drain)
	for time.Now().Before(deadline) && b.recv.count(due) < len(due) {
		time.Sleep(100 * time.Millisecond)
	}
	var last time.Time
	for user, at := range due {
		got, ok := b.recv.arrival(user)
		if !ok {
			s.lat = append(s.lat, deadline.Sub(at))
			continue
		}
		s.delivered++
		if !got.After(end) {
			s.inTime++
		}
		if got.After(last) {
			last = got
		}
		s.lat = append(s.lat, got.Sub(at))
	}
	if s.delivered > 0 {
		s.reachesPerSec = float64(s.delivered) / last.Sub(start).Seconds()
	}
	slices.Sort(s.lat)
	s.saturated = float64(s.inTime) < 0.9*float64(s.reaches) || s.missing() > s.reaches/100 || s.lat.p(0.99) > 5*time.Second
	progress("%s: %d/%d reaches delivered (%d while loaded), %.1f reaches/s sustained, p50 %s p99 %s, saturated %v",
		name, s.delivered, s.reaches, s.inTime, s.reachesPerSec, s.lat.p(0.5), s.lat.p(0.99), s.saturated)
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

// startLatencies reads, for a sample of the step's reaches, when Temporal started the workflow.
func (b *bench) startLatencies(due map[string]time.Time) latencies {
	var out latencies
	n := 0
	for user, at := range due {
		if n++; n > 40 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d, err := b.tc.DescribeWorkflowExecution(ctx, workflows.ReachID("cart-add", user, user+"-add"), "")
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
	g := newGenerator(b.c.run+"-warm", 1)
	due := drive(20, 2, g, b.produce)
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
	prefix     string
	reachEvery int
	n          int
	rng        *rand.Rand
}

// newGenerator makes the same stream shape for every phase (same seed), its users prefixed so
// phases do not see each other's state.
func newGenerator(prefix string, reachEvery int) *generator {
	return &generator{prefix: prefix, reachEvery: reachEvery, rng: rand.New(rand.NewPCG(7, 11))}
}

// next returns an event: a cart_add of a new user (a reach) every reachEvery events, else a view
// of one of 1M users on one of 100k items (a count rule's input that rarely completes).
func (g *generator) next(at time.Time) (event.Event, bool) {
	g.n++
	if g.n%g.reachEvery == 0 {
		u := fmt.Sprintf("%s-c%d", g.prefix, g.n)
		return event.Event{EventID: u + "-add", UserID: u, Type: "cart_add", ItemID: "sku-1", TS: at}, true
	}
	return event.Event{EventID: fmt.Sprintf("%s-v%d", g.prefix, g.n), UserID: fmt.Sprintf("%s-u%d", g.prefix, g.rng.IntN(1_000_000)),
		Type: "view", ItemID: fmt.Sprintf("i%d", g.rng.IntN(100_000)), TS: at}, false
}

// drive emits rate events/s for secs seconds at their due times (open loop: a slow consumer does
// not slow the arrivals; queueing shows as latency). It returns the due time of each reach's user.
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
			ev, reach := g.next(at)
			if reach {
				due[ev.UserID] = at
			}
			send(ev, at)
		}
		time.Sleep(time.Millisecond)
	}
	return due
}

// --- the provider receiver ---

type receiver struct {
	url   string
	mu    sync.Mutex
	first map[string]time.Time
	posts atomic.Int64
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
				UserID string `json:"user_id"`
			}
			_ = json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&m)
			r.posts.Add(1)
			r.mu.Lock()
			if _, ok := r.first[m.UserID]; !ok {
				r.first[m.UserID] = now
			}
			r.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"bench"}`)
		}))
	}()
	return r
}

func (r *receiver) arrival(user string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.first[user]
	return t, ok
}

func (r *receiver) count(due map[string]time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for u := range due {
		if _, ok := r.first[u]; ok {
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
			"OMEGA_TASK_QUEUE="+b.c.run, "OMEGA_KEY_PREFIX="+b.c.run, "OMEGA_RULES=cep/demo",
			"OMEGA_WEBHOOK_URL="+b.recv.url, "OMEGA_WEBHOOK_ALLOW=127.0.0.0/8", "OMEGA_DAILY_CAP=100",
			"OMEGA_METRICS_ADDR=127.0.0.1:"+strconv.Itoa(port), "OMEGA_PPROF=1")
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
