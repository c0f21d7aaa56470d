package parallel

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// QuietMonitor moves the Go runtime's monitor thread (sysmon) of this
// process to the SCHED_IDLE scheduling class, so that it runs on a core
// only when nothing else wants it. Processes that hand a training step
// back and forth (the host and its plugin subprocesses) call it once at
// start.
//
// Why: after a process blocks waiting for another, its sysmon keeps
// waking every 20 us (about every 120 us on the 2-vCPU VM) for up to
// 10 ms before it notices that the process is idle, and each wake-up
// preempted one of the two threads of the plugin computing meanwhile,
// stalling the other at the next barrier: the encoder's share of a W1
// SimSiam step ran 2-6% slower in its own process than in the host's,
// and exactly as fast with the monitors of all three processes
// SCHED_IDLE (the monitor's duties, retaking processors from blocked
// system calls and preempting long-running goroutines, matter only when
// this process has work waiting, and then it runs again as soon as a
// core is free). Lowering a thread's own class needs no privilege.
//
// The monitor is the first thread the runtime starts (runtime.main does
// it before any package init), so it is the process's thread with the
// lowest id after the main thread's; if any thread id is below the
// process id (the kernel's ids wrapped around), the order proves nothing
// and QuietMonitor leaves everything as it is; so it does under the race
// detector, whose runtime starts a thread before the monitor. It reports
// the thread it changed, or 0.
func QuietMonitor() (int, error) {
	monitorOnce.Do(func() { monitorTID, monitorErr = quietMonitor() })
	return monitorTID, monitorErr
}

var (
	monitorOnce sync.Once
	monitorTID  int
	monitorErr  error
)

func quietMonitor() (int, error) {
	if raceEnabled {
		return 0, nil
	}
	pid := os.Getpid()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("quiet runtime monitor: %w", err)
	}
	first := 0
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == pid {
			continue
		}
		if tid < pid {
			return 0, nil
		}
		if first == 0 || tid < first {
			first = tid
		}
	}
	if first == 0 {
		return 0, nil
	}
	// sched_setattr with SCHED_IDLE; the nice value is ignored for it.
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	if err := unix.SchedSetAttr(first, &attr, 0); err != nil {
		return 0, fmt.Errorf("quiet runtime monitor: sched_setattr(%d, SCHED_IDLE): %w", first, err)
	}
	return first, nil
}
