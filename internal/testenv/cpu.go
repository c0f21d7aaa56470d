package testenv

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProcessesCPU returns the user+system CPU time the given live processes
// (plugin children, say) have used so far, from /proc/<pid>/stat (utime and
// stime, in clock ticks of 10 ms: sum it over many steps). Processes it
// cannot read count 0; so does everything off Linux.
func ProcessesCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: utime and stime
		// are the 12th and 13th.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond
	}
	return total
}

// Median returns the median of xs (0 for none) without reordering xs.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
