//go:build unix

package testenv

import (
	"syscall"
	"time"
)

// ProcessCPU returns the user+system CPU time of this process so far:
// benchmarks on a shared, loaded machine report CPU time per step next to
// wall time, as the steadier of the two.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
