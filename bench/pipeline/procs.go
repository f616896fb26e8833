package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procSample is a process group's CPU time and resident memory.
type procSample struct {
	cpu time.Duration
	rss float64 // PSS, MiB
}

// sampleProcs reads /proc for the omega processes this run started and the stack's servers.
func (b *bench) sampleProcs() map[string]procSample {
	out := map[string]procSample{}
	for _, p := range b.procs {
		if s, ok := readProc(p.cmd.Process.Pid); ok {
			out["omega "+p.name] = s
		}
	}
	out[benchProc], _ = readProc(os.Getpid())
	for _, name := range []string{"temporal", "kafka", "redis"} {
		b, err := os.ReadFile(filepath.Join(b.c.data, "run", name+".pid"))
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if s, ok := readProc(pid); ok {
			out[name] = s
		}
	}
	// PostgreSQL: the stack's postmaster, with the CPU of the backends it reaped, and its live
	// children (a backend that exits moves its time into the postmaster's reaped total).
	var pg procSample
	if pm, ok := postmaster(b.c.data); ok {
		if s, ok := readProcTree(pm); ok {
			pg = s
		}
	}
	out["postgresql"] = pg
	out[machineProc] = procSample{cpu: machineBusy()}
	return out
}

// machineProc is the whole machine's busy CPU; otherProc what of it no process above used (another
// job on the machine: a step where it is large measured a shared machine).
const (
	machineProc = "machine (every process)"
	otherProc   = "others (not this benchmark's)"
)

// ours reports whether a sampled key is one of the benchmark's processes.
func ours(k string) bool { return k != machineProc && k != otherProc }

// addOthers sets cpu[otherProc] from cpu[machineProc] and the benchmark's processes.
func addOthers(cpu map[string]float64) {
	m, ok := cpu[machineProc]
	if !ok {
		return
	}
	for k, v := range cpu {
		if ours(k) {
			m -= v
		}
	}
	cpu[otherProc] = max(m, 0)
}

// machineBusy is the CPU time every core spent not idle since boot (/proc/stat).
func machineBusy() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	const tick = 100 // USER_HZ
	return time.Duration(busy) * time.Second / tick
}

// readProc returns a process's user+system CPU time and its PSS.
func readProc(pid int) (procSample, bool) { return readProcWith(pid, false) }

// readProcWith adds the CPU time of the process's reaped children when children is set.
func readProcWith(pid int, children bool) (procSample, bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procSample{}, false
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 22 {
		return procSample{}, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	if children {
		cu, _ := strconv.ParseInt(f[13], 10, 64)
		cs, _ := strconv.ParseInt(f[14], 10, 64)
		utime, stime = utime+cu, stime+cs
	}
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	const tick = 100 // USER_HZ
	mem := float64(rssPages*int64(os.Getpagesize())) / (1 << 20)
	// PSS rather than RSS: PostgreSQL's processes share their buffers, and summing RSS would count
	// them once per process.
	if roll, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup")); err == nil {
		for _, l := range strings.Split(string(roll), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				mem = kb / 1024
			}
		}
	}
	return procSample{cpu: time.Duration(utime+stime) * time.Second / tick, rss: mem}, true
}

// temporalCPU is the Temporal server's CPU time so far.
func (b *bench) temporalCPU() (time.Duration, bool) {
	raw, err := os.ReadFile(filepath.Join(b.c.data, "run", "temporal.pid"))
	if err != nil {
		return 0, false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	s, ok := readProc(pid)
	return s.cpu, ok
}

// postmaster is the pid of the stack's PostgreSQL server.
func postmaster(data string) (int, bool) {
	raw, err := os.ReadFile(filepath.Join(data, "postgres", "data", "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
	return pid, err == nil
}

// readProcTree is a process's CPU including its reaped children, plus its live children's; memory
// is the PSS of them all.
func readProcTree(pid int) (procSample, bool) {
	total, ok := readProcWith(pid, true)
	if !ok {
		return total, false
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		st := string(stat)
		f := strings.Fields(st[strings.LastIndexByte(st, ')')+2:])
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		if s, ok := readProc(child); ok {
			total.cpu += s.cpu
			total.rss += s.rss
		}
	}
	return total, true
}
