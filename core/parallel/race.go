//go:build race

package parallel

// raceEnabled: the race detector's runtime starts a thread of its own
// before runtime.main starts the monitor (see QuietMonitor).
const raceEnabled = true
