package cep

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/omegareach/omega/event"
)

// BenchmarkCompute is the partition's own work per event, without Kafka or Redis: the machine
// advancing the CEP benchmark's ten rules (bench/cep/rules.yaml) over its event mix, in batches of
// 500, and a commit every ten batches encoded as the stage's would be, snapshots included (the
// shared join state, in Redis, is left out). The state grows as in the benchmark (users drawn from a million); a new
// machine starts every 200,000 events. A development loop for the machine's CPU: stable where a
// pass of bench/cep over the broker is not (go test -run '^$' -bench Compute ./cep/).
func BenchmarkCompute(b *testing.B) {
	raw, err := os.ReadFile("../bench/cep/rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var rs []Rule
	if err := yaml.UnmarshalStrict(raw, &rs); err != nil {
		b.Fatal(err)
	}
	var rules []compiledRule
	for _, r := range rs {
		c, err := compile(r)
		if err != nil {
			b.Fatal(err)
		}
		rules = append(rules, c)
	}
	const n, batch, perCommit = 200_000, 500, 10
	evs := benchEvents(n)
	now := time.Now().UTC()
	var p *partition
	var c *changelog
	fresh := func() {
		p = &partition{m: newMachine(time.Hour)}
		c = newChangelog(nil, "bench", "g", "t", 0)
	}
	fresh()
	i := 0
	b.ResetTimer()
	for b.Loop() {
		if i+batch > n {
			b.StopTimer()
			fresh()
			i = 0
			b.StartTimer()
		}
		p.compute(rules, evs[i:i+batch], nil, nil, now, fireSlice)
		i += batch
		if i%(batch*perCommit) == 0 {
			// A commit as the stage makes it, nothing sent: its record and snapshot piece encoded,
			// then taken as durable (the log one record longer, or trimmed by a finished snapshot).
			records := c.logRecords + 1
			if bl := c.building; bl != nil {
				records -= bl.from
			}
			pl := c.prepare(p.m, -1)
			if pl.last == "" {
				records = c.logRecords + 1
			}
			c.settle(pl, records)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/event")
	b.ReportMetric(float64(c.snapshots), "snapshots")
}

// benchEvents draws the CEP benchmark's event mix (bench/cep/gen.go), its users and items uniform,
// event times 1 ms apart.
func benchEvents(n int) []event.Event {
	rng := rand.New(rand.NewPCG(1, 2))
	mix := []struct {
		typ   string
		share int
	}{{"view", 60}, {"cart_add", 10}, {"favorite", 10}, {"push_open", 9}, {"order_paid", 5}, {"chat_started", 5}, {"price_drop", 1}}
	t0 := time.Now().Add(-time.Duration(n) * time.Millisecond).UTC()
	out := make([]event.Event, n)
	for i := range out {
		x, typ := rng.IntN(100), ""
		for _, m := range mix {
			if x < m.share {
				typ = m.typ
				break
			}
			x -= m.share
		}
		e := event.Event{EventID: "e" + strconv.Itoa(i), Type: typ, TS: t0.Add(time.Duration(i) * time.Millisecond),
			ItemID: "i" + strconv.Itoa(rng.IntN(100_000))}
		if typ != "price_drop" {
			e.UserID = "u" + strconv.Itoa(rng.IntN(1_000_000))
		}
		if typ == "cart_add" || typ == "order_paid" {
			e.Attrs = map[string]any{"price": float64(rng.IntN(1000))}
		}
		out[i] = e
	}
	return out
}

// BenchmarkSnapshotPiece is a snapshot of a million instances written as one piece, its blocks
// listed as a snapshot lists them (memory order, arena.inUse) and in the index's order (the order
// before): the reads of cold blocks are the difference (go test -run '^$' -bench SnapshotPiece
// ./cep/).
func BenchmarkSnapshotPiece(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := newMachine(time.Hour)
	for i := range 1_000_000 {
		in := &instance{Exp: 60_000}
		for j := range rng.IntN(3) {
			in.Seen = append(in.Seen, seen{TS: int64(j), ID: "e" + strconv.Itoa(i)})
		}
		m.put("r:v1:count:u"+strconv.Itoa(rng.IntN(1<<30)), in)
	}
	c := newChangelog(nil, "bench", "g", "t", 0)
	c.settle(c.prepare(m, -1), 1) // the instances in the log: none dirty
	var indexOrder []ref
	m.inst.each(func(r ref) { indexOrder = append(indexOrder, r) })
	for _, o := range []struct {
		name   string
		blocks []ref
	}{{"memory-order", m.blocks()}, {"index-order", indexOrder}} {
		b.Run(o.name, func(b *testing.B) {
			c.piece = len(o.blocks)
			for b.Loop() {
				c.building = &snapshotRun{blocks: o.blocks}
				if pl := c.prepare(m, -1); pl.done != len(o.blocks) {
					b.Fatalf("a piece of %d blocks of %d", pl.done, len(o.blocks))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(o.blocks)), "ns/instance")
		})
	}
}
