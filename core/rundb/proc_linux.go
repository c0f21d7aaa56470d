package rundb

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStart returns field 22 of /proc/<pid>/stat (the process start time in
// clock ticks since boot) and whether the process is running (not a zombie).
// Together with the pid and the boot id it identifies a process uniquely:
// a reused pid has a different start time.
func procStart(pid int) (start int64, running bool, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, false
	}
	// The command name (field 2) is in parentheses and may itself contain
	// spaces or ')': fields resume after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 { // f[0] is field 3 (state), f[19] is field 22
		return 0, false, false
	}
	start, err = strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return 0, false, false
	}
	return start, f[0] != "Z" && f[0] != "X", true
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// processAlive reports whether pid is the running process that started at
// start (as recorded by selfIdentity).
func processAlive(pid int, start int64) bool {
	if pid <= 0 {
		return false
	}
	s, running, ok := procStart(pid)
	return ok && running && s == start
}

// writable reports why path cannot be written (nil if it can), checked
// with access(2) so that a read-only mount (EROFS) or missing permission
// is named before SQLite turns it into a vague "unable to open".
func writable(path string) error { return syscall.Access(path, 2 /* W_OK */) }
