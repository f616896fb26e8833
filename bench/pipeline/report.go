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

// write prints the report to b.c.out and the plot to b.c.svg.
func (b *bench) write(omega []step, half step, tonly []step, one, two step, peak float64, profiles map[string]string) {
	w := &b.report
	fmt.Fprintf(w, "# Whole-pipeline benchmark\n\n")
	fmt.Fprintf(w, "Command: `make bench` (a fresh stack on test ports with Temporal on PostgreSQL, then `go run ./bench/pipeline %s`); run %s, %s.\n\n",
		strings.Join(os.Args[1:], " "), b.c.run, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "Machine: %s; %d cores, %s RAM; Go %s; %s; %s; %s. Every server, both omega processes and the load generator share the machine.\n\n",
		cpuModel(), runtime.NumCPU(), memTotal(), runtime.Version(), modVersion("go.temporal.io/server"), cmdFirstLine("redis-server", "--version"), cmdFirstLine("psql", "--version"))
	fmt.Fprintf(w, "Stream: open loop at fixed rates; one event in %d is a `cart_add` of a new user (the demo rule `cart-add` starts a reach: route, filter chain, one webhook send, audit), the others are views of 1M users on 100k items (input of the demo count rule). All demo rules are loaded. Latency is from the event's due time to the message reaching the provider receiver in the benchmark process, over every reach of the step (one never delivered counts as the end of the drain), percentiles by nearest rank. A step is saturated when fewer than 90%% of its reaches were delivered while it ran, more than 1%% were never delivered, or p99 passed 5 s; the peak is the highest rate not saturated. Reaches/s is sustained: delivered reaches over the time from the step's start to its last delivery. Each Omega step runs %ds, each Temporal-only step %ds, then up to %s for stragglers; before each step the previous one's backlog drains (no consumer lag, no deliveries, Temporal nearly idle).\n\n",
		b.c.reachEvery, b.c.stepSecs, b.c.tonlySecs, b.c.drain)

	fmt.Fprintf(w, "## Omega Reach (1 CEP replica, 1 worker)\n\n")
	all := append(slices.Clone(omega), half)
	stepTable(w, all, true)
	fmt.Fprintf(w, "\nPeak: **%.0f events/s** (%.0f reaches/s offered). At half of it (%d events/s): event to dispatch p50 **%s ms**, p99 **%s ms** (n=%d); produce to workflow start p50 %s ms, p99 %s ms (n=%d).\n\n",
		peak, peak/float64(b.c.reachEvery), half.offered, ms(half.lat.p(0.5)), ms(half.lat.p(0.99)), len(half.lat), ms(half.startLat.p(0.5)), ms(half.startLat.p(0.99)), len(half.startLat))
	fmt.Fprintf(w, "CPU (cores used over the step) and memory (PSS MiB at its end) per process, per step:\n\n")
	procTable(w, all...)
	marginal(w, omega)

	if one.name != "" {
		fmt.Fprintf(w, "\n## Scale-out: two CEP replicas and two workers against one of each\n\n")
		fmt.Fprintf(w, "Same offered rate (%d events/s, twice the peak), same topic (4 partitions) and task queue: the second pair joins the consumer group and polls the task queue, no coordination of our own.\n\n", one.offered)
		stepTable(w, []step{one, two}, true)
		fmt.Fprintf(w, "\nThroughput ratio (reaches/s sustained), 2+2 / 1+1: **%.2f**; CEP events/s ratio %.2f.\n\n",
			two.reachesPerSec/max(one.reachesPerSec, 0.001), two.eventsPerSec/max(one.eventsPerSec, 0.001))
		procTable(w, one, two)
	}
	if len(tonly) > 0 {
		writeTemporalOnly(w, omega, tonly, peak)
	}
	names := make([]string, 0, len(profiles))
	for k := range profiles {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) > 0 {
		fmt.Fprintf(w, "\n## CPU profiles (10 s during an unreported step at half the peak, `go tool pprof -top`)\n\n")
		for _, k := range names {
			fmt.Fprintf(w, "`%s`:\n\n```\n%s```\n\n", k, profiles[k])
		}
	}
	fmt.Fprintf(w, "\nPlot: [latency versus load](../../%s).\n", b.c.svg)

	must(os.MkdirAll("bench/results", 0o755))
	must(os.WriteFile(b.c.out, w.Bytes(), 0o644))
	must(os.WriteFile(b.c.svg, plot(all, tonly), 0o644))
	progress("wrote %s and %s", b.c.out, b.c.svg)
	os.Stdout.Write(w.Bytes())
}

// marginal prints the CPU each process adds per reach/s between the lowest and the highest
// unsaturated steps (the slope; what a process costs at zero load drops out).
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
	d := hi.reachesPerSec - lo.reachesPerSec
	if d <= 0 {
		return
	}
	fmt.Fprintf(w, "\nMarginal CPU per reach (ms of CPU per reach, from %s to %s):", lo.name, hi.name)
	keys := make([]string, 0, len(hi.cpu))
	for k := range hi.cpu {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, " %s %.1f;", k, (hi.cpu[k]-lo.cpu[k])/d*1000)
	}
	fmt.Fprintf(w, " total %.1f.\n", (sum(hi.cpu)-sum(lo.cpu))/d*1000)
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
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
	fmt.Fprintf(w, "| step | offered events/s | reaches | %s | reaches/s sustained | completed (audit) | p50 ms | p95 ms | p99 ms | max ms | start p50 ms | start p99 ms | lag at end | never delivered | saturated |\n", consumed)
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range steps {
		start50, start99 := "-", "-"
		if len(s.startLat) > 0 {
			start50, start99 = ms(s.startLat.p(0.5)), ms(s.startLat.p(0.99))
		}
		done := "-"
		if s.completed >= 0 && cep {
			done = fmt.Sprint(s.completed)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.1f | %s | %s | %s | %s | %s | %s | %s | %.0f | %d | %v |\n", s.name, s.offered, s.reaches,
			s.eventsPerSec, s.reachesPerSec, done, ms(s.lat.p(0.5)), ms(s.lat.p(0.95)), ms(s.lat.p(0.99)), ms(s.lat.p(1)),
			start50, start99, s.lag, s.missing(), s.saturated)
	}
}

func procTable(w *bytes.Buffer, steps ...step) {
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
