package rundb

import (
	"os"
	"time"
)

// identity describes the current process as recorded with a RUNNING run.
type identity struct {
	host   string
	pid    int
	start  int64
	bootID string
}

func selfIdentity() identity {
	host, _ := os.Hostname()
	pid := os.Getpid()
	start, _, _ := procStart(pid)
	return identity{host: host, pid: pid, start: start, bootID: bootID()}
}

// nowMillis is the time unit of every time column: Unix milliseconds.
func nowMillis() int64 { return time.Now().UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms) }
