// Command cep benchmarks the CEP stage on a running stack (make bench starts one): it preloads a
// realistic event stream into a fresh topic, then consumes it three ways on the same broker and
// Redis: a Sarama consumer group that does nothing (the ceiling), the obvious CEP (one Redis round
// trip per event per rule), and Omega's CEP stage (decode, dedupe, pattern state, commit). It then
// drives the stage open-loop at half its measured peak and reports produce-to-start latency, and
// reads Redis memory per pattern instance. Results are printed as Markdown.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"sigs.k8s.io/yaml"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

func main() {
	n := flag.Int("events", 500_000, "events in the preloaded stream")
	users := flag.Int("users", 1_000_000, "distinct users")
	items := flag.Int("items", 100_000, "distinct items")
	rulesPath := flag.String("rules", "bench/cep/rules.yaml", "rule set")
	latencySecs := flag.Int("latency-seconds", 10, "duration of the open-loop latency run")
	latencyRate := flag.Int("rate", 0, "events/s of the latency run (0: half the measured peak)")
	flag.Parse()
	brokers := strings.Split(env("OMEGA_KAFKA_BROKERS", "127.0.0.1:9092"), ",")
	rdb := redis.NewClient(&redis.Options{Addr: env("OMEGA_REDIS_ADDR", "127.0.0.1:6379"), PoolSize: 64})
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	b, err := os.ReadFile(*rulesPath)
	must(err)
	var rules []cep.Rule
	must(yaml.UnmarshalStrict(b, &rules))
	for i := range rules {
		rules[i].Version = 1
		must(cep.Validate(rules[i], cep.Catalog{}))
	}

	run := fmt.Sprintf("bench%d", time.Now().Unix())
	topic := run + ".events"
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	must(err)
	must(admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false))
	must(admin.CreateTopic(topic+".dlq", &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false))
	_ = admin.Close()

	// Event times end about now, so the absence timers (30 minutes) are not due during the run.
	gen := &generator{users: *users, items: *items, rng: rand.New(rand.NewPCG(1, 2)), start: time.Now().Add(-time.Duration(*n) * time.Millisecond)}
	progress("producing %d events to %s", *n, topic)
	produced := produce(brokers, topic, *n, gen)

	res := map[string]result{}
	progress("raw consumer")
	r0 := redisCPU(rdb)
	res["raw"] = withRedis(consume(brokers, topic, run+"-raw", *n, func(msgs []*sarama.ConsumerMessage) {}), rdb, r0)

	progress("obvious CEP: one Redis round trip per event per rule")
	naive := newNaive(rdb, run+"-naive", rules)
	r0 = redisCPU(rdb)
	res["naive"] = withRedis(consume(brokers, topic, run+"-naive", *n, naive.handle), rdb, r0)
	if r := res["naive"]; true {
		r.matches = naive.matches.Load()
		res["naive"] = r
	}

	progress("omega CEP stage")
	memBefore := usedMemory(ctx, rdb)
	keysBefore := rdb.DBSize(ctx).Val()
	starter := &countingStarter{}
	st, err := cep.New(cep.Config{
		Brokers: brokers, Sarama: saramaConfig(), Group: run + "-omega", Topic: topic, DLQTopic: topic + ".dlq",
		Redis: rdb, KeyPrefix: run, Rules: rules, Starter: starter, Log: log,
	})
	must(err)
	r0 = redisCPU(rdb)
	res["omega"] = withRedis(runStage(st, starter, *n, brokers, topic, run+"-omega"), rdb, r0)
	memAfter := usedMemory(ctx, rdb)
	keysAfter := rdb.DBSize(ctx).Val()
	dedupeKeys := int64(*n) // one dedupe mark per event
	stateKeys := keysAfter - keysBefore - dedupeKeys

	// Open loop at half the measured peak, new events stamped with their produce time.
	rate := int(res["omega"].eventsPerSec / 2)
	if *latencyRate > 0 {
		rate = *latencyRate
	}
	progress("latency: open loop at %d events/s for %ds", rate, *latencySecs)
	lat := latencyRun(brokers, rdb, rules, log, run, rate, *latencySecs, gen)

	fmt.Printf("# CEP benchmark\n\nCommand: `make bench` (`go run ./bench/cep %s` on a fresh stack)\n\n", strings.Join(os.Args[1:], " "))
	fmt.Printf("Machine: %d cores (%s/%s), Go %s; the broker (kfake), Redis and this process share it.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Printf("Stream: %d events (produced at %.0f/s), %d users, %d items, %d rules of every kind (bench/cep/rules.yaml).\n\n",
		*n, produced, *users, *items, len(rules))
	fmt.Println("| consumer | events/s | consumer CPU s | events per consumer CPU-second | Redis CPU s | matches |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, k := range []string{"raw", "naive", "omega"} {
		r := res[k]
		fmt.Printf("| %s | %.0f | %.1f | %.0f | %.1f | %d |\n", names[k], r.eventsPerSec, r.cpu.Seconds(),
			float64(*n)/r.cpu.Seconds(), r.redisCPU.Seconds(), r.matches)
	}
	fmt.Printf("\nRatios: omega / raw = %.2f; omega / obvious = %.1fx (events/s).\n\n",
		res["omega"].eventsPerSec/res["raw"].eventsPerSec, res["omega"].eventsPerSec/res["naive"].eventsPerSec)
	fmt.Printf("Latency, produce to workflow start (a counting starter, no Temporal), open loop at %d events/s for %ds: "+
		"p50 %s, p99 %s, max %s over %d matches.\n\n", rate, *latencySecs, lat.p(0.5), lat.p(0.99), lat.p(1), len(lat.samples))
	if stateKeys > 0 {
		fmt.Printf("Redis: %d pattern-state keys after the run; used memory grew %.1f MiB including %d dedupe marks: "+
			"about %d bytes per key.\n", stateKeys, float64(memAfter-memBefore)/(1<<20), dedupeKeys,
			(memAfter-memBefore)/(stateKeys+dedupeKeys))
	}
}

var names = map[string]string{"raw": "Sarama consumer doing nothing", "naive": "obvious CEP (round trip per event per rule)", "omega": "Omega CEP stage"}

type result struct {
	eventsPerSec float64
	cpu          time.Duration
	redisCPU     time.Duration
	matches      int64
}

// redisCPU is the Redis server's user and system CPU so far.
func redisCPU(rdb *redis.Client) time.Duration {
	var total float64
	for _, line := range strings.Split(rdb.Info(context.Background(), "cpu").Val(), "\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

func withRedis(r result, rdb *redis.Client, before time.Duration) result {
	r.redisCPU = redisCPU(rdb) - before
	return r
}

func env(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

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
	sc.Consumer.Fetch.Default = 4 << 20
	sc.ChannelBufferSize = 4096
	sc.Producer.Flush.Messages = 1000
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	return sc
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// generator makes a realistic mix: mostly views, some favourites, carts, chats and orders, and rare
// price drops; users and items drawn at random.
type generator struct {
	users, items int
	rng          *rand.Rand
	start        time.Time
	seq          int
}

func (g *generator) next(ts time.Time) event.Event {
	g.seq++
	u := "u" + strconv.Itoa(g.rng.IntN(g.users))
	it := "i" + strconv.Itoa(g.rng.IntN(g.items))
	e := event.Event{EventID: "e" + strconv.Itoa(g.seq) + "-" + strconv.Itoa(g.rng.IntN(1<<30)), UserID: u, ItemID: it, TS: ts}
	switch x := g.rng.IntN(100); {
	case x < 60:
		e.Type = "view"
	case x < 70:
		e.Type = "favorite"
	case x < 80:
		e.Type = "cart_add"
		e.Attrs = map[string]any{"price": float64(g.rng.IntN(1000))}
	case x < 85:
		e.Type = "chat_started"
	case x < 90:
		e.Type = "order_paid"
		e.Attrs = map[string]any{"price": float64(g.rng.IntN(1000))}
	case x < 91:
		e.Type, e.UserID = "price_drop", ""
	default:
		e.Type = "push_open"
	}
	return e
}

func produce(brokers []string, topic string, n int, g *generator) float64 {
	sc := saramaConfig()
	sc.Producer.Return.Successes = true
	p, err := sarama.NewAsyncProducer(brokers, sc)
	must(err)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range p.Successes() {
		}
	}()
	go func() {
		defer wg.Done()
		for err := range p.Errors() {
			must(err)
		}
	}()
	start := time.Now()
	for i := range n {
		e := g.next(g.start.Add(time.Duration(i) * time.Millisecond))
		v, _ := e.Encode()
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.Key()), Value: sarama.ByteEncoder(v)}
		if i > 0 && i%100_000 == 0 {
			progress("  produced %d", i)
		}
	}
	p.AsyncClose()
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// batchHandler consumes a claim in batches and calls fn per batch, then marks.
type batchHandler struct {
	fn    func([]*sarama.ConsumerMessage)
	count atomic.Int64
	done  chan struct{}
	want  int64
	once  sync.Once
}

func (h *batchHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *batchHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *batchHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	batch := make([]*sarama.ConsumerMessage, 0, 500)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		h.fn(batch)
		sess.MarkMessage(batch[len(batch)-1], "")
		if h.count.Add(int64(len(batch))) >= h.want {
			h.once.Do(func() { close(h.done) })
		}
		batch = batch[:0]
	}
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				flush()
				return nil
			}
			batch = append(batch, m)
			if len(batch) == cap(batch) || len(claim.Messages()) == 0 {
				flush()
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

func consume(brokers []string, topic, group string, n int, fn func([]*sarama.ConsumerMessage)) result {
	g, err := sarama.NewConsumerGroup(brokers, group, saramaConfig())
	must(err)
	h := &batchHandler{fn: fn, done: make(chan struct{}), want: int64(n)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			_ = g.Consume(ctx, []string{topic}, h)
		}
	}()
	// Time from the first record: joining the group is not consumption.
	for h.count.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start, cpu0 := time.Now(), cpuTime()
	<-h.done
	el, cpu := time.Since(start), cpuTime()-cpu0
	cancel()
	_ = g.Close()
	return result{eventsPerSec: float64(n) / el.Seconds(), cpu: cpu}
}

type countingStarter struct {
	n       atomic.Int64
	mu      sync.Mutex
	samples []time.Duration
	record  bool
}

func (c *countingStarter) Start(_ context.Context, m workflows.Match) error {
	c.n.Add(1)
	if c.record {
		c.mu.Lock()
		c.samples = append(c.samples, time.Since(m.EventTime))
		c.mu.Unlock()
	}
	return nil
}

// runStage runs the stage until its group committed every offset of the topic.
func runStage(st *cep.Stage, starter *countingStarter, n int, brokers []string, topic, group string) result {
	client, err := sarama.NewClient(brokers, saramaConfig())
	must(err)
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	must(err)
	parts, err := client.Partitions(topic)
	must(err)
	hw := map[int32]int64{}
	for _, p := range parts {
		hw[p], err = client.GetOffset(topic, p, sarama.OffsetNewest)
		must(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = st.Run(ctx) }()
	committed := func() int64 {
		offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
		if err != nil {
			return 0
		}
		var sum int64
		for _, p := range parts {
			if b := offs.GetBlock(topic, p); b != nil && b.Offset > 0 {
				sum += b.Offset
			}
		}
		return sum
	}
	for committed() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	start, cpu0 := time.Now(), cpuTime()
	first := committed()
	for committed() < int64(n) {
		time.Sleep(20 * time.Millisecond)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	rest := float64(int64(n)-first) / float64(n)
	return result{eventsPerSec: float64(int64(n)-first) / el.Seconds(), cpu: time.Duration(float64(cpu) / rest), matches: starter.n.Load()}
}

type latencies struct{ samples []time.Duration }

func (l latencies) p(q float64) time.Duration {
	if len(l.samples) == 0 {
		return 0
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i].Round(100 * time.Microsecond)
}

func latencyRun(brokers []string, rdb *redis.Client, rules []cep.Rule, log *slog.Logger, run string, rate, secs int, g *generator) latencies {
	topic := run + ".latency"
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	must(err)
	must(admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false))
	_ = admin.Close()
	starter := &countingStarter{record: true}
	st, err := cep.New(cep.Config{Brokers: brokers, Sarama: saramaConfig(), Group: run + "-lat", Topic: topic,
		DLQTopic: run + ".events.dlq", Redis: rdb, KeyPrefix: run + "-lat", Rules: rules, Starter: starter, Log: log,
		BatchWait: 5 * time.Millisecond})
	must(err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = st.Run(ctx) }()
	sc := saramaConfig()
	sc.Producer.Flush.Frequency = time.Millisecond
	sc.Producer.Flush.Messages = 0
	p, err := sarama.NewAsyncProducer(brokers, sc)
	must(err)
	go func() {
		for err := range p.Errors() {
			must(err)
		}
	}()
	go func() {
		for range p.Successes() {
		}
	}()
	time.Sleep(3 * time.Second) // let the group settle
	interval := time.Second / time.Duration(max(rate, 1))
	next := time.Now()
	end := next.Add(time.Duration(secs) * time.Second)
	for next.Before(end) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		// Open loop: events are due at fixed times whether or not the consumer keeps up; each is
		// stamped with its due time so queueing shows as latency.
		for time.Now().After(next) && next.Before(end) {
			e := g.next(next)
			v, _ := e.Encode()
			p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.Key()), Value: sarama.ByteEncoder(v)}
			next = next.Add(interval)
		}
	}
	time.Sleep(2 * time.Second)
	p.AsyncClose()
	progress("  latency run: %d events due, %d matches started", int(time.Duration(secs)*time.Second/interval), starter.n.Load())
	starter.mu.Lock()
	defer starter.mu.Unlock()
	return latencies{samples: starter.samples}
}

func usedMemory(ctx context.Context, rdb *redis.Client) int64 {
	info := rdb.Info(ctx, "memory").Val()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
