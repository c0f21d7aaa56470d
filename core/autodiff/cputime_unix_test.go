//go:build unix

package autodiff

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of this process, so that
// benchmarks on the shared, overloaded machine can report CPU time per step
// next to wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
