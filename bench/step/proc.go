package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clkTck is the kernel's USER_HZ, the unit of the tick counts in /proc/stat
// and /proc/<pid>/stat (100 on every Linux/amd64 system).
const clkTck = 100

// cpuSample is the state torch_baseline.py's _cpu_sample records, with "own"
// meaning the whole process tree (host and plugin children) instead of one
// process: the busy ticks of the machine and of the tree, at a time.
type cpuSample struct {
	t    time.Time
	busy int64 // user+nice+system+irq+softirq ticks of all CPUs
	own  int64 // utime+stime ticks of the tree
}

func sample(pids []int) cpuSample {
	return cpuSample{t: time.Now(), busy: machineBusy(), own: treeTicks(pids)}
}

// foreign is how many CPUs other processes kept busy between a and b, on
// average, as torch_baseline.py computes it.
func foreign(a, b cpuSample) float64 {
	dt := max(b.t.Sub(a.t).Seconds(), 1e-9)
	f := float64((b.busy-a.busy)-(b.own-a.own)) / clkTck / dt
	return max(f, 0)
}

// machineBusy reads the first line of /proc/stat: user nice system idle
// iowait irq softirq steal ...; busy is user+nice+system+irq+softirq.
func machineBusy() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 8 {
		return 0
	}
	var v [7]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	return v[0] + v[1] + v[2] + v[5] + v[6]
}

// treeTicks sums utime+stime of this process and pids.
func treeTicks(pids []int) int64 {
	total := procTicks("self")
	for _, p := range pids {
		total += procTicks(strconv.Itoa(p))
	}
	return total
}

// procTicks reads utime and stime (fields 14 and 15) of /proc/<pid>/stat;
// 0 for a process that is gone.
func procTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name start at field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// statusKB returns the named kB fields of /proc/<pid>/status (VmHWM, VmRSS).
func statusKB(pid string, keys ...string) (map[string]int64, error) {
	return kbFields("/proc/"+pid+"/status", keys)
}

// kbFields parses "Key:   123 kB" lines of a /proc file.
func kbFields(path string, keys []string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]int64, len(keys))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", path, k, err)
				}
				out[k] = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// memory is the tree's memory at one moment, in kB.
type memory struct {
	// HWM is the sum over the tree's processes of each one's peak RSS
	// (VmHWM): an upper bound of the tree's simultaneous peak. Pages of
	// the shared-memory arenas count once in every process that touched
	// them.
	HWM int64
	// PerProcessHWM lists VmHWM of the host first, then each child.
	PerProcessHWM []int64
	// Pss is the tree's proportional set size now (shared pages split
	// between the processes sharing them): the tree's real footprint.
	Pss int64
}

func treeMemory(pids []int) memory {
	var m memory
	for _, p := range append([]string{"self"}, itoas(pids)...) {
		st, err := statusKB(p, "VmHWM")
		if err == nil {
			m.HWM += st["VmHWM"]
			m.PerProcessHWM = append(m.PerProcessHWM, st["VmHWM"])
		}
		if r, err := kbFields("/proc/"+p+"/smaps_rollup", []string{"Pss"}); err == nil {
			m.Pss += r["Pss"]
		}
	}
	return m
}

func itoas(xs []int) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strconv.Itoa(x)
	}
	return out
}
