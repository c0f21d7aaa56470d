//go:build unix

package train

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of this process, so that
// BenchmarkStep can report CPU time per step next to wall time: on the
// shared, overloaded machine it is the steadier of the two.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
