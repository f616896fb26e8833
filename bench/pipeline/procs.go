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
	out["bench (load, receiver, Temporal-only worker)"], _ = readProc(os.Getpid())
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
	// PostgreSQL: every process named postgres.
	var pg procSample
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if s, ok := readProc(pid); ok {
			pg.cpu += s.cpu
			pg.rss += s.rss
		}
	}
	out["postgresql"] = pg
	return out
}

// readProc returns a process's user+system CPU time and RSS.
func readProc(pid int) (procSample, bool) {
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
