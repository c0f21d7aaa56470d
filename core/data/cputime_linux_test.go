package data

import "golang.org/x/sys/unix"

// processCPU returns the CPU time used by the whole process in seconds: on
// a machine shared with other jobs, throughput per CPU-second is steadier
// than throughput per wall-second.
func processCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
