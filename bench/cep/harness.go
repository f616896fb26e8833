package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/workflows"
)

// result is one consumer's pass over the preloaded topic. The clock, the process CPU and Redis'
// counters run from the end of the first batch (or the stage's first commit) to the last event:
// joining the group and claiming partitions is not consumption.
type result struct {
	events  int64 // events inside the measured window
	elapsed time.Duration
	cpu     time.Duration // this process's CPU in the window (the phases run one after another)
	gc      time.Duration // the Go runtime's estimate of its garbage collector's share of it
	// other is the rest of the machine's CPU in the window, in cores: the broker, the idle stack,
	// and anything else running (a disturbed pass shows here).
	other   float64
	redis   redisDelta
	faults  int64 // minor page faults of this process in the window (first touches of memory)
	matches int64 // live matches (distinct reaches that would start)
	starts  int64 // Start calls for them (the stage's: a reach found twice is started twice, one workflow)
	shadow  int64 // matches of shadow rules (recorded, not started)
	keys    int64 // Redis keys under the phase's prefix afterwards
	// The new stage only: its partition state hashes afterwards.
	instances, stateEncoded, stateBytes int64
}

func (r result) perSec() float64     { return float64(r.events) / r.elapsed.Seconds() }
func (r result) perCPU() float64     { return float64(r.events) / r.cpu.Seconds() }
func (r result) redisPerEv() float64 { return r.redis.cpu.Seconds() * 1e6 / float64(r.events) }
func (r result) perAllCPU() float64  { return float64(r.events) / (r.cpu + r.redis.cpu).Seconds() }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// minorFaults counts this process's minor page faults so far: on these hosts a first touch of a
// page costs microseconds, so a pass that grows its memory pays for it in CPU.
func minorFaults() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// window measures a phase between begin and end.
type window struct {
	rdb   *redis.Client
	start time.Time
	cpu0  time.Duration
	gc0   time.Duration
	m0    cpuStat
	r0    redisSnap
	first int64
	flt0  int64
}

func begin(rdb *redis.Client, first int64) window {
	return window{rdb: rdb, start: time.Now(), cpu0: cpuTime(), gc0: gcCPU(), m0: machineCPU(), r0: snapRedis(rdb), first: first, flt0: minorFaults()}
}

func (w window) end(total int64) result {
	el, cpu := time.Since(w.start), cpuTime()-w.cpu0
	m := machineCPU()
	r := result{events: total - w.first, elapsed: el, cpu: cpu, gc: gcCPU() - w.gc0, redis: snapRedis(w.rdb).since(w.r0), faults: minorFaults() - w.flt0}
	busy := float64(m.busy-w.m0.busy) / float64(m.total-w.m0.total) * float64(runtime.NumCPU())
	r.other = busy - (r.cpu+r.redis.cpu).Seconds()/el.Seconds()
	return r
}

// gcCPU is the CPU the Go runtime estimates its garbage collector has used so far.
func gcCPU() time.Duration {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return time.Duration(s[0].Value.Float64() * float64(time.Second))
}

// batchHandler consumes a claim in batches (up to 500 records, or what has arrived) and calls fn
// per batch, then marks.
type batchHandler struct {
	fn    func([]*sarama.ConsumerMessage) error
	count atomic.Int64
	done  chan struct{}
	want  int64
	once  sync.Once
	// claimed is set once the handler's session has its claims.
	claimed atomic.Bool
}

func (h *batchHandler) Setup(sarama.ConsumerGroupSession) error {
	h.claimed.Store(true)
	return nil
}
func (h *batchHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *batchHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	batch := make([]*sarama.ConsumerMessage, 0, 500)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		must(h.fn(batch)) // a benchmark that loses a batch measures nothing
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

// consume runs fn over the whole topic in a new consumer group.
func consume(brokers []string, rdb *redis.Client, topic, group string, n int64, fn func([]*sarama.ConsumerMessage) error) result {
	h := &batchHandler{fn: fn, done: make(chan struct{}), want: n}
	stop := runGroup(brokers, group, topic, h)
	for h.count.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	w := begin(rdb, h.count.Load())
	<-h.done
	r := w.end(h.count.Load())
	stop()
	return r
}

// runGroup consumes topic with h in a new consumer group until stop is called.
func runGroup(brokers []string, group, topic string, h sarama.ConsumerGroupHandler) (stop func()) {
	g, err := sarama.NewConsumerGroup(brokers, group, saramaConfig())
	must(err)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for ctx.Err() == nil {
			_ = g.Consume(ctx, []string{topic}, h)
		}
	}()
	return func() {
		cancel()
		<-stopped
		_ = g.Close()
	}
}

type countingStarter struct {
	n   atomic.Int64 // Start calls
	mu  sync.Mutex
	ids map[string]struct{} // the reach IDs started: a match found twice (a join's link and trigger
	// racing on two partitions each find the other) is one reach, as Temporal's workflow ID makes it
	samples []time.Duration
	byRule  map[string][]time.Duration
	points  []point // with -samples: every sample with its due time and rule
	record  bool
}

// point is one latency sample as -samples writes it.
type point struct {
	due  time.Time
	d    time.Duration
	rule string
}

func (c *countingStarter) Start(_ context.Context, m workflows.Match) error {
	c.n.Add(1)
	c.mu.Lock()
	if c.ids == nil {
		c.ids = map[string]struct{}{}
	}
	c.ids[workflows.ReachID(m.RuleID, m.UserID, m.MatchKey)] = struct{}{}
	c.mu.Unlock()
	if c.record {
		d := time.Since(m.EventTime)
		c.mu.Lock()
		c.samples = append(c.samples, d)
		if c.byRule == nil {
			c.byRule = map[string][]time.Duration{}
		}
		c.byRule[m.RuleID] = append(c.byRule[m.RuleID], d)
		if *samplesPath != "" {
			c.points = append(c.points, point{due: m.EventTime, d: d, rule: m.RuleID})
		}
		c.mu.Unlock()
	}
	return nil
}

// reaches is how many distinct reaches were started.
func (c *countingStarter) reaches() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(len(c.ids))
}

type countingShadow struct{ n atomic.Int64 }

// RecordUnstarted counts the shadow matches (the benchmark's rules suppress none).
func (c *countingShadow) RecordUnstarted(_ context.Context, ms []workflows.Match) error {
	for _, m := range ms {
		if m.Shadow {
			c.n.Add(1)
		}
	}
	return nil
}

// stageRun is a running CEP stage: cep.New as `omega cep` builds it (default batching, lateness
// and concurrency), with a counting starter and shadow recorder.
type stageRun struct {
	st      *cep.Stage
	starter *countingStarter
	shadow  *countingShadow
	cancel  context.CancelFunc
	done    chan struct{}
	metas   []string
	rdb     *redis.Client
}

func startStage(brokers []string, rdb *redis.Client, rules []cep.Rule, log *slog.Logger, prefix, group, topic string,
	parts []int32, record bool) *stageRun {
	s := &stageRun{starter: &countingStarter{record: record}, shadow: &countingShadow{}, done: make(chan struct{}), rdb: rdb}
	var err error
	s.st, err = cep.New(cep.Config{
		Brokers: brokers, Sarama: saramaConfig(), Group: group, Topic: topic, DLQTopic: topic + ".dlq",
		Redis: rdb, KeyPrefix: prefix, Rules: rules, Starter: s.starter, Unstarted: s.shadow, Log: log,
		BatchWait: *batchWait, BatchSize: *batchSize, CommitInterval: *commitInterval,
	})
	must(err)
	for _, p := range parts {
		// The changelog's meta key (docs/cep-state.md): its "o" is the next offset the durable
		// state has not seen, written by the batch's commit.
		s.metas = append(s.metas, prefix+":{p:"+group+"/"+topic+"/"+strconv.Itoa(int(p))+"}:meta")
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(s.done)
		_ = s.st.Run(ctx)
	}()
	return s
}

// committed is how many records the stage's durable state covers (the sum of the partitions'
// next offsets).
func (s *stageRun) committed() int64 {
	ctx := context.Background()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(s.metas))
	for i, k := range s.metas {
		cmds[i] = pipe.HGet(ctx, k, "o")
	}
	_, _ = pipe.Exec(ctx)
	var sum int64
	for _, c := range cmds {
		n, _ := strconv.ParseInt(c.Val(), 10, 64)
		sum += n
	}
	return sum
}

func (s *stageRun) stop() {
	s.cancel()
	<-s.done
}

// runStage runs the stage over the whole topic: measured from its first durable batch to the
// commit of the last record. profile, when set, receives a CPU profile of that window.
func runStage(brokers []string, rdb *redis.Client, rules []cep.Rule, log *slog.Logger, prefix, group, topic string,
	hw map[int32]int64, total int64, profile string) result {
	parts := make([]int32, 0, len(hw))
	for p := range hw {
		parts = append(parts, p)
	}
	s := startStage(brokers, rdb, rules, log, prefix, group, topic, parts, false)
	first := s.committed()
	for ; first == 0; first = s.committed() {
		time.Sleep(time.Millisecond)
	}
	if profile != "" {
		f, err := os.Create(profile)
		must(err)
		defer f.Close()
		must(pprof.StartCPUProfile(f))
		writeHeap(profile + ".heap0")
	}
	w := begin(rdb, first)
	for s.committed() < total {
		time.Sleep(5 * time.Millisecond)
	}
	r := w.end(total)
	if profile != "" {
		pprof.StopCPUProfile()
		writeHeap(profile + ".heap1")
	}
	s.stop()
	r.matches, r.starts, r.shadow = s.starter.reaches(), s.starter.n.Load(), s.shadow.n.Load()
	return r
}

// writeHeap writes a heap profile (with every allocation since the start: compare two with
// pprof -base for what a window allocated).
func writeHeap(path string) {
	f, err := os.Create(path)
	must(err)
	defer f.Close()
	must(pprof.Lookup("allocs").WriteTo(f, 0))
}
