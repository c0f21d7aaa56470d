package rundb

import (
	"context"
	"database/sql"
	"time"
)

// SetMaxVariables lowers the bind-variable limit the writer chunks by, so
// tests can exercise chunking with small batches.
func SetMaxVariables(db *DB, n int) { db.maxVars = n }

// SetConnHook installs a hook run on each new writer connection.
func SetConnHook(db *DB, f func(context.Context, *sql.Conn) error) { db.connHook = f }

// FlushAttempts is the number of flush transactions r has tried.
func FlushAttempts(r *Run) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

// ExpireRetryBackoff lets the next Log retry a failed flush at once.
func ExpireRetryBackoff(r *Run) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAt = time.Time{}
}

// SetMaxPending sets the bound on buffered rows while commits fail.
func SetMaxPending(r *Run, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxPending = n
}

// Pending is the number of buffered metric rows.
func Pending(r *Run) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buf)
}

// Migrations returns the schema history (migrations[i] takes version i to
// i+1).
func Migrations() []string { return migrations }
