package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// saturation is the ramp step whose steady window delivered the most single-send reaches/s.
func saturation(omega []step) step {
	var best step
	for _, s := range omega {
		if s.winRate() > best.winRate() {
			best = s
		}
	}
	return best
}

// write prints the report to b.c.out and the plot to b.c.svg.
func (b *bench) write(r results) {
	w := &b.report
	c := b.c
	fmt.Fprintf(w, "# Whole-pipeline benchmark\n\n")
	fmt.Fprintf(w, "Command: `make bench` (a fresh stack on test ports with Temporal on PostgreSQL, then `go run ./bench/pipeline %s`); run %s, %s.\n\n",
		strings.Join(os.Args[1:], " "), c.run, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "Machine: %s; %d cores, %s RAM; Go %s; %s; %s; %s. Every server, both omega processes and the load generator share the machine.\n\n",
		cpuModel(), runtime.NumCPU(), memTotal(), runtime.Version(), modVersion("go.temporal.io/server"), cmdFirstLine("redis-server", "--version"), cmdFirstLine("psql", "--version"))
	abandon := "the demo's 30m (no timer fires in the run)"
	if c.abandonIn > 0 {
		abandon = c.abandonIn.String() + " instead of the demo's 30m, so timers fire in the run"
	}
	fmt.Fprintf(w, "Stream: open loop at fixed rates, all demo rules loaded. One event in %d is a `cart_add` of a new user: the rule `cart-add` starts a **single-send reach** (route, filter chain, one webhook send, audit) and the rule `cart-abandoned` arms its absence (window %s). %d carts in %d are paid %s later (an `order_paid` in a view's slot: the absence is cancelled), one in %d is not: its timer fires on the partition's watermark (event time less 5 s of allowed lateness) and starts the retargeting journey (a push, then a 24-hour wait for `push_open`: the run stays open). The other events are views of 1M users on 100k items (input of the demo count rule). ",
		c.reachEvery, abandon, c.unpaidEvery-1, c.unpaidEvery, c.payAfter, c.unpaidEvery)
	fmt.Fprintf(w, "Latency is from the event's due time to the message reaching the provider receiver in the benchmark process (a retargeting push: from the absence's deadline, cart_add + window), over every reach of the step (one never delivered counts as the end of the drain), percentiles by nearest rank. A step is saturated when fewer than 90%% of its single-send reaches were delivered while it ran, more than 1%% were never delivered, or p99 passed 5 s; the peak is the highest rate not saturated. Rates step up by %.2fx from the first step's until one saturates, then %d step(s) bisect between the peak and it. **Steady window**: a step's CPU and its steady reaches/s are read from %s after its start (the ramp-up, and the absence window plus lateness so retargeting reaches are in the mix) to the end of its load (no drain). Each ramp step runs %ds, the half-peak step long enough for %d single-send reaches; then up to %s (plus the absence window) for stragglers; before each step the previous one's backlog drains (no consumer lag, no deliveries, Temporal nearly idle).\n\n",
		c.ramp, c.bisect, fmt.Sprintf("%ds (at least the absence window + 5 s, at most half the step)", c.warmSecs), c.stepSecs, c.minReaches, c.drain)

	sat := saturation(r.omega)
	floor := bestFloor(r.floor)
	half := r.half
	fmt.Fprintf(w, "## Issue 17's goals\n\n| goal | measured | met |\n|---|---|---|\n")
	if floor.closedPerSec > 0 {
		ratio := sat.winRate() / floor.closedPerSec
		fmt.Fprintf(w, "| single-send reaches/s at saturation >= 1.5x the bare-workflow floor | %.1f single-send reaches/s (%s, steady window; %.1f/s counting the retargeting reaches) vs %.1f bare workflows closed/s (%d starters): **%.2fx** | %s |\n",
			sat.winRate(), sat.name, sat.winAllRate(), floor.closedPerSec, floor.concurrency, ratio, yesNo(ratio >= 1.5))
	}
	fmt.Fprintf(w, "| event -> provider p99 <= 250 ms at half of the peak | p99 %s ms, p50 %s ms (n=%d, %d events/s) | %s |\n",
		ms(half.lat.p(0.99)), ms(half.lat.p(0.5)), len(half.lat), half.offered, yesNo(half.lat.p(0.99) <= 250*time.Millisecond && len(half.lat) > 0))
	fmt.Fprintf(w, "| Temporal and PostgreSQL CPU per reach | net of the idle baseline (steady window, every reach delivered in it), at half the peak: Temporal %.1f ms, PostgreSQL %.1f ms; at saturation (%s): %.1f and %.1f ms",
		half.netPerReach("temporal", r.idle), half.netPerReach("postgresql", r.idle), sat.name, sat.netPerReach("temporal", r.idle), sat.netPerReach("postgresql", r.idle))
	if floor.closes > 0 {
		fmt.Fprintf(w, "; a bare workflow at the floor: %.1f and %.1f ms", floor.netPerWorkflow("temporal", r.idle), floor.netPerWorkflow("postgresql", r.idle))
	}
	if lr := reachLoop(r.floor); lr.closes > 0 {
		fmt.Fprintf(w, "; the lean reach in the floor's harness: %.1f and %.1f ms", lr.netPerWorkflow("temporal", r.idle), lr.netPerWorkflow("postgresql", r.idle))
	}
	fmt.Fprintf(w, " | (reported) |\n")
	if lr := reachLoop(r.floor); lr.closes > 0 && floor.closes > 0 {
		fmt.Fprintf(w, "| (not a goal: the workflows alone) the lean reach in the floor's harness (its worker in the benchmark process, no CEP stage or Kafka) | %.1f reaches/s vs %.1f bare workflows/s at %d starters: %.2fx | |\n",
			lr.closedPerSec, floor.closedPerSec, lr.concurrency, lr.closedPerSec/floor.closedPerSec)
	}
	fmt.Fprintln(w)
	if len(r.idle) > 0 {
		fmt.Fprintf(w, "Idle baseline (cores over 10 s with no load, the omega processes up; CPU per reach above is net of it):")
		for _, k := range procNames([]step{{cpu: r.idle}}) {
			if ours(k) {
				fmt.Fprintf(w, " %s %.2f;", k, r.idle[k])
			}
		}
		fmt.Fprintf(w, " machine %.2f.\n\n", r.idle[machineProc])
	}

	if len(r.floor) > 0 {
		fmt.Fprintf(w, "## The floor: Temporal's bare workflow\n\n")
		fmt.Fprintf(w, "Start, one no-op activity, complete; the worker in the benchmark process with Omega's worker settings (8 pollers per task kind, 200 concurrent workflow tasks, activities and local activities), closed loop: each starter starts a workflow and the next one when it is done (learnt in-process, so no result polling loads the server: the bare workflow when its function returns, the reach when its message reaches the provider, in its only workflow task). %d seconds per run; the CEP stage starts up to 32 reaches at once per partition, 4 partitions. The floor is the best bare run; the lean reach then runs in the same harness at that concurrency (Omega's worker in the benchmark process, started as the CEP stage starts it), to compare the workflows alone. The idle baseline (below) was measured later, with the omega processes up.\n\n", c.floorSecs)
		fmt.Fprintf(w, "| workflow | starters | closed/s (steady window) | started | completed (Temporal's count) | start to done p50 ms | p99 ms | Temporal cores | PostgreSQL cores | bench (worker) cores | others cores | Temporal ms per workflow (net of idle) | PostgreSQL ms per workflow (net of idle) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, f := range r.floor {
			kind := "bare (start, no-op activity, complete)"
			if f.kind == "reach" {
				kind = "lean single-send reach (cart-reminder)"
			}
			fmt.Fprintf(w, "| %s | %d | %.1f | %d | %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.1f (%.1f) | %.1f (%.1f) |\n", kind, f.concurrency, f.closedPerSec, f.started, f.completed,
				ms(f.lat.p(0.5)), ms(f.lat.p(0.99)), f.cpu["temporal"], f.cpu["postgresql"], f.cpu[benchProc], f.cpu[otherProc],
				f.perWorkflow("temporal"), f.netPerWorkflow("temporal", r.idle), f.perWorkflow("postgresql"), f.netPerWorkflow("postgresql", r.idle))
		}
		fmt.Fprintf(w, "\nFloor: **%.1f closed workflows/s** (%d starters).\n\n", floor.closedPerSec, floor.concurrency)
	}

	fmt.Fprintf(w, "## Omega Reach (1 CEP replica, 1 worker)\n\n")
	if c.eagerCEP {
		fmt.Fprintf(w, "`omega cep` runs as `make run` and deploy/ run it: with `OMEGA_CEP_EAGER_START=true` (a reach worker inside it, eager starts).\n\n")
	} else {
		fmt.Fprintf(w, "`omega cep` runs without eager start (`-eager-cep=false`): every reach's first workflow task goes through Temporal's matching service to `omega worker`.\n\n")
	}
	ramp := slices.Clone(r.omega)
	slices.SortStableFunc(ramp, func(a, b step) int { return a.offered - b.offered })
	all := append(slices.Clone(ramp), half)
	stepTable(w, all, true)
	fmt.Fprintf(w, "\nPeak: **%.0f events/s** (%.0f single-send reaches/s offered). Saturation: **%.1f single-send reaches/s** in the steady window of %s (%.1f counting the retargeting reaches). At half the peak (%d events/s): event to dispatch p50 **%s ms**, p99 **%s ms** (n=%d); produce to workflow start p50 %s ms, p99 %s ms (n=%d).\n\n",
		r.peak, r.peak/float64(c.reachEvery), sat.winRate(), sat.name, sat.winAllRate(), half.offered, ms(half.lat.p(0.5)), ms(half.lat.p(0.99)), len(half.lat), ms(half.startLat.p(0.5)), ms(half.startLat.p(0.99)), len(half.startLat))
	if c.unpaidEvery > 0 && c.abandonIn > 0 {
		fmt.Fprintf(w, "Abandoned carts (retargeting push; latency from the absence's deadline, so at least the 5 s of allowed lateness):\n\n| step | expected | delivered | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n")
		for _, s := range all {
			fmt.Fprintf(w, "| %s | %d | %d | %s | %s |\n", s.name, s.abandons, s.absDelivered, ms(s.absLat.p(0.5)), ms(s.absLat.p(0.99)))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "CPU (cores used over the steady window) and memory (PSS MiB at its end) per process, per step:\n\n")
	procTable(w, all...)
	fmt.Fprintf(w, "\nCPU per reach, steady-window ratio (ms of CPU per reach delivered in the window, single-send and retargeting alike):\n\n")
	perReachTable(w, all, r.idle)
	marginal(w, ramp)

	if len(r.eager) > 0 {
		writeEager(w, r.eager, r.idle)
	}
	if r.one.name != "" {
		fmt.Fprintf(w, "\n## Scale-out: two CEP replicas and two workers against one of each\n\n")
		fmt.Fprintf(w, "Same offered rate (%d events/s, twice the peak), same topic (4 partitions) and task queue: the second pair joins the consumer group and polls the task queue, no coordination of our own.\n\n", r.one.offered)
		stepTable(w, []step{r.one, r.two}, true)
		fmt.Fprintf(w, "\nThroughput ratio (single-send reaches/s, steady window), 2+2 / 1+1: **%.2f**; CEP events/s ratio %.2f.\n\n",
			r.two.winRate()/max(r.one.winRate(), 0.001), r.two.eventsPerSec/max(r.one.eventsPerSec, 0.001))
		procTable(w, r.one, r.two)
	}
	if len(r.tonly) > 0 {
		writeTemporalOnly(w, ramp, r.tonly, r.peak)
	}
	names := make([]string, 0, len(r.profiles))
	for k := range r.profiles {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) > 0 {
		fmt.Fprintf(w, "\n## CPU profiles (10 s during an unreported step at half the peak, `go tool pprof -top`)\n\n")
		for _, k := range names {
			fmt.Fprintf(w, "`%s`:\n\n```\n%s```\n\n", k, r.profiles[k])
		}
	}
	fmt.Fprintf(w, "\nPlot: [latency versus load](../../%s).\n", c.svg)

	must(os.MkdirAll("bench/results", 0o755))
	must(os.WriteFile(c.out, w.Bytes(), 0o644))
	must(os.WriteFile(c.svg, plot(all, r.tonly), 0o644))
	progress("wrote %s and %s", c.out, c.svg)
	os.Stdout.Write(w.Bytes())
}

const benchProc = "bench (load, receiver, in-process workers)"

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// perReachTable prints each process's CPU per reach delivered in each step's steady window.
func perReachTable(w *bytes.Buffer, steps []step, idle map[string]float64) {
	keys := procNames(steps)
	fmt.Fprintf(w, "| process |")
	for _, s := range steps {
		fmt.Fprintf(w, " %s |", s.name)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(steps)))
	fmt.Fprintf(w, "| reaches delivered in the window (single-send + retargeting) |")
	for _, s := range steps {
		fmt.Fprintf(w, " %d + %d |", s.winReaches, s.winAll-s.winReaches)
	}
	fmt.Fprintln(w)
	for _, k := range keys {
		if !ours(k) {
			continue
		}
		fmt.Fprintf(w, "| %s |", k)
		for _, s := range steps {
			fmt.Fprintf(w, " %.1f |", s.perReach(k))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "| **total** |")
	for _, s := range steps {
		t := 0.0
		for _, k := range keys {
			if ours(k) {
				t += s.perReach(k)
			}
		}
		fmt.Fprintf(w, " %.1f |", t)
	}
	fmt.Fprintln(w)
	if len(idle) == 0 {
		return
	}
	for _, k := range keys {
		if !ours(k) {
			continue
		}
		fmt.Fprintf(w, "| %s, net of idle |", k)
		for _, s := range steps {
			fmt.Fprintf(w, " %.1f |", s.netPerReach(k, idle))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "| **total, net of idle** |")
	for _, s := range steps {
		t := 0.0
		for _, k := range keys {
			if ours(k) {
				t += s.netPerReach(k, idle)
			}
		}
		fmt.Fprintf(w, " %.1f |", t)
	}
	fmt.Fprintln(w)
}

// reachLoop is the lean reach's closed-loop run, if there was one.
func reachLoop(fs []floorRun) floorRun {
	for _, f := range fs {
		if f.kind == "reach" {
			return f
		}
	}
	return floorRun{}
}

func procNames(steps []step) []string {
	names := map[string]bool{}
	for _, s := range steps {
		for k := range s.cpu {
			names[k] = true
		}
	}
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func writeEager(w *bytes.Buffer, runs []eagerRun, idle map[string]float64) {
	fmt.Fprintf(w, "\n## Eager workflow start\n\n")
	fmt.Fprintf(w, "Omega's worker (worker.New, the real activities) in the benchmark process and a starter beside it on the same client, starting the cart-add single-send reach as the CEP stage does (same options and input, 32 concurrent starts) at a fixed rate, with and without `EnableEagerStart`. Latency from the start call; close is Temporal's close time; CPU over the steady window, per reach delivered in it.\n\n")
	fmt.Fprintf(w, "| variant | reaches/s offered | started | eager (first task in the start's answer) | start to provider p50 ms | p99 ms | start to close p50 ms | p99 ms | n | Temporal cores | others cores | Temporal ms per reach (net of idle) | PostgreSQL ms per reach (net of idle) | bench (worker) ms per reach |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, e := range runs {
		name := "without"
		if e.eager {
			name = "with eager start"
		}
		fmt.Fprintf(w, "| %s | %.1f | %d | %d | %s | %s | %s | %s | %d | %.2f | %.2f | %.1f (%.1f) | %.1f (%.1f) | %.1f |\n", name, e.rate, e.started, e.accepted,
			ms(e.sendLat.p(0.5)), ms(e.sendLat.p(0.99)), ms(e.closeLat.p(0.5)), ms(e.closeLat.p(0.99)), len(e.closeLat),
			e.cpu["temporal"], e.cpu[otherProc], e.perReach("temporal"), e.perReach("temporal", idle), e.perReach("postgresql"), e.perReach("postgresql", idle), e.perReach(benchProc))
	}
}

// marginal prints the CPU each process adds per reach/s between the lowest and the highest
// unsaturated steps (the slope; what a process costs at zero load drops out), over their steady
// windows and counting every reach delivered in them.
func marginal(w *bytes.Buffer, omega []step) {
	var ok []step
	for _, s := range omega {
		if !s.saturated {
			ok = append(ok, s)
		}
	}
	if len(ok) < 2 {
		return
	}
	lo, hi := ok[0], ok[len(ok)-1]
	d := hi.winAllRate() - lo.winAllRate()
	if d <= 0 {
		return
	}
	fmt.Fprintf(w, "\nMarginal CPU per reach (the slope: ms of CPU per reach, steady windows of %s and %s, every reach delivered in them):", lo.name, hi.name)
	keys := make([]string, 0, len(hi.cpu))
	for k := range hi.cpu {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if ours(k) {
			fmt.Fprintf(w, " %s %.1f;", k, (hi.cpu[k]-lo.cpu[k])/d*1000)
		}
	}
	fmt.Fprintf(w, " total %.1f.\n", (sum(hi.cpu)-sum(lo.cpu))/d*1000)
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for k, v := range m {
		if !ours(k) {
			continue
		}
		t += v
	}
	return t
}

func writeTemporalOnly(w *bytes.Buffer, omega, tonly []step, peak float64) {
	fmt.Fprintf(w, "\n## The Temporal-only design (one workflow per user, every event a signal-with-start)\n\n")
	stepTable(w, tonly, false)
	tpeak := peakOf(tonly)
	fmt.Fprintf(w, "\nTemporal-only peak: **%.0f events/s**. Omega / Temporal-only: **%.1fx** the events/s (peak against peak).", tpeak, peak/max(tpeak, 1))
	// Latency at 20x: Omega at the lowest step offering at least 20x the Temporal-only peak,
	// against the Temporal-only design at its peak.
	var t *step
	for i := range tonly {
		if float64(tonly[i].offered) == tpeak {
			t = &tonly[i]
		}
	}
	for _, o := range omega {
		if t != nil && !o.saturated && float64(o.offered) >= 20*tpeak {
			fmt.Fprintf(w, " At %d events/s (%.0fx the Temporal-only peak) Omega's event to dispatch was p50 %s ms, p99 %s ms (n=%d); the Temporal-only design at its peak (%d events/s): p50 %s ms, p99 %s ms (n=%d).",
				o.offered, float64(o.offered)/tpeak, ms(o.lat.p(0.5)), ms(o.lat.p(0.99)), len(o.lat), t.offered, ms(t.lat.p(0.5)), ms(t.lat.p(0.99)), len(t.lat))
			break
		}
	}
	fmt.Fprintf(w, "\n\nCPU and memory per process, per step of the Temporal-only design:\n\n")
	procTable(w, tonly...)
}

func stepTable(w *bytes.Buffer, steps []step, cep bool) {
	consumed := "Temporal-only signals/s"
	if cep {
		consumed = "CEP events/s"
	}
	fmt.Fprintf(w, "| step | offered events/s | seconds | reaches | %s | reaches/s sustained | reaches/s steady window | completed (audit) | p50 ms | p95 ms | p99 ms | max ms | start p50 ms | start p99 ms | lag at end | never delivered | saturated |\n", consumed)
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range steps {
		start50, start99 := "-", "-"
		if len(s.startLat) > 0 {
			start50, start99 = ms(s.startLat.p(0.5)), ms(s.startLat.p(0.99))
		}
		done := "-"
		if s.completed >= 0 && cep {
			done = fmt.Sprint(s.completed)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.0f | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %s | %.0f | %d | %v |\n", s.name, s.offered, s.secs, s.reaches,
			s.eventsPerSec, s.reachesPerSec, s.winRate(), done, ms(s.lat.p(0.5)), ms(s.lat.p(0.95)), ms(s.lat.p(0.99)), ms(s.lat.p(1)),
			start50, start99, s.lag, s.missing(), s.saturated)
	}
}

func procTable(w *bytes.Buffer, steps ...step) {
	keys := procNames(steps)
	fmt.Fprintf(w, "| process |")
	for _, s := range steps {
		fmt.Fprintf(w, " %s CPU | %s PSS |", s.name, s.name)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|---:|", len(steps)))
	for _, k := range keys {
		fmt.Fprintf(w, "| %s |", k)
		for _, s := range steps {
			fmt.Fprintf(w, " %.2f | %.0f |", s.cpu[k], s.rss[k])
		}
		fmt.Fprintln(w)
	}
}

// plot draws p50 and p99 event-to-dispatch latency against the offered rate, both axes log.
func plot(omega, tonly []step) []byte {
	const W, H, L, R, T, B = 760.0, 440.0, 70.0, 170.0, 30.0, 50.0
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), 1.0, 1000.0
	all := append(slices.Clone(omega), tonly...)
	slices.SortFunc(omega, func(a, b step) int { return a.offered - b.offered })
	for _, s := range all {
		minX, maxX = math.Min(minX, float64(s.offered)), math.Max(maxX, float64(s.offered))
		maxY = math.Max(maxY, float64(s.lat.p(0.99))/1e6)
	}
	minX, maxX = minX/1.3, maxX*1.3
	x := func(v float64) float64 {
		return L + (math.Log(v)-math.Log(minX))/(math.Log(maxX)-math.Log(minX))*(W-L-R)
	}
	y := func(d time.Duration) float64 {
		v := math.Max(float64(d)/1e6, minY)
		return T + (1-(math.Log(v)-math.Log(minY))/(math.Log(maxY)-math.Log(minY)))*(H-T-B)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">Event to dispatch latency vs offered load (log-log)</text>`+"\n", L)
	for v := minY; v <= maxY*1.01; v *= 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%g ms</text>`+"\n",
			L, W-R, y(time.Duration(v*1e6)), y(time.Duration(v*1e6)), L-6, y(time.Duration(v*1e6))+4, v)
	}
	for _, s := range all {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x(float64(s.offered)), x(float64(s.offered)), T, H-B)
	}
	var ticks []int
	for _, s := range all {
		if !slices.Contains(ticks, s.offered) {
			ticks = append(ticks, s.offered)
		}
	}
	slices.Sort(ticks)
	lastX := math.Inf(-1)
	for _, t := range ticks {
		if x(float64(t))-lastX < 30 { // labels would overlap
			continue
		}
		lastX = x(float64(t))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%d</text>`+"\n", lastX, H-B+14, t)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered events/s</text>`+"\n", (L+W-R)/2, H-12)
	series := []struct {
		name  string
		steps []step
		q     float64
		color string
		dash  string
	}{
		{"Omega p50", omega, 0.5, "#1f77b4", ""}, {"Omega p99", omega, 0.99, "#1f77b4", "6,4"},
		{"Temporal-only p50", tonly, 0.5, "#d62728", ""}, {"Temporal-only p99", tonly, 0.99, "#d62728", "6,4"},
	}
	for i, se := range series {
		var pts []string
		for _, s := range se.steps {
			if len(s.lat) == 0 {
				continue
			}
			px, py := x(float64(s.offered)), y(s.lat.p(se.q))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
			marker := "circle"
			if s.saturated {
				marker = "cross"
			}
			if marker == "circle" {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px, py, se.color)
			} else {
				fmt.Fprintf(&b, `<path d="M%.1f %.1fl6 6m0 -6l-6 6" stroke="%s" stroke-width="2"/>`+"\n", px-3, py-3, se.color)
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>`+"\n", se.color, se.dash, strings.Join(pts, " "))
		ly := T + 20 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
			W-R+10, W-R+40, ly, ly, se.color, se.dash, W-R+46, ly+4, se.name)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10">x: saturated step</text>`+"\n", W-R+10, T+110)
	fmt.Fprintf(&b, "</svg>\n")
	return b.Bytes()
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			_, _ = fmt.Sscan(strings.Fields(l)[1], &kb) // zero when unreadable: the report says so
		}
	}
	return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
}

func modVersion(m string) string {
	out, err := exec.Command("go", "list", "-m", m).Output()
	if err != nil {
		return m
	}
	return "Temporal server " + strings.Fields(string(out))[1]
}

func cmdFirstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return name
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// quietLogger keeps the Temporal client's logs out of the report.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(msg string, kv ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"temporal client:", msg}, kv...)...)
}
