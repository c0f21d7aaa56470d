//go:build unix && !linux

package rundb

import "syscall"

// procStart is only available on Linux; elsewhere a run records start time
// 0 and liveness falls back to signal 0 (a reused pid is not detected).
func procStart(pid int) (start int64, running bool, ok bool) { return 0, true, true }

func bootID() string { return "" }

// processAlive reports whether a process with this pid exists.
func processAlive(pid int, start int64) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// writable reports why path cannot be written (nil if it can).
func writable(path string) error { return syscall.Access(path, 2 /* W_OK */) }
