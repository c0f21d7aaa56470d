// Package rundb is sslrun's run database: one SQLite file that records every
// run (its resolved config, params, tags, metrics, evaluations, analyzer
// arrays, artifacts and dataset digests) so that runs can be listed, compared
// across methods and seeds, queried with SQL and turned into reports.
//
// Only the host process writes. A runner opens the database with [Open],
// creates a run with [DB.CreateRun] (or continues one with [DB.ResumeRun]),
// logs through the returned [Run] and ends it with [Run.Finish]. Metric rows
// are buffered and committed in one transaction per batch, with the per-series
// summaries (last/min/max/best) updated in the same transaction, so a reader
// never sees metrics without their summary or a half-written batch.
//
// Read-side helpers serve the CLI: [DB.ListRuns], [DB.ShowRun], [DB.Compare],
// [DB.Query] (on a database opened with [OpenReadOnly]) and [Format] for
// table, CSV and JSON output. The schema, its views and example queries are
// documented in docs/rundb.md; the migrations live in schema.go.
//
// Reliability choices: WAL journal with synchronous=NORMAL (a commit survives
// a crash of the process; a power loss may lose the last commits but never
// corrupts the file), busy_timeout so that several writer processes wait for
// each other instead of failing with "database is locked", BEGIN IMMEDIATE
// transactions so that a writer takes the write lock before reading (no
// deadlock-by-upgrade), and multi-row INSERTs chunked below the compiled
// bind-variable limit. A RUNNING run whose process died is marked CRASHED the
// next time the database is opened for writing.
//
// A failed metric commit (a full disk, say) loses nothing that was logged:
// the rows stay buffered and every later [Run.Log] returns an error wrapping
// the failure (errors.Is matches [ErrDiskFull] and the like) until a commit
// succeeds, so a runner that stops on Log's error stops with a clear error at
// the first failure. Log retries the commit with a backoff from one second
// doubling to a minute rather than on every call; [Run.Flush] and
// [Run.Finish] always retry. While commits keep failing the buffer is bounded
// ([DefaultMaxPendingRows]): past it Log refuses new rows with an error
// matching [ErrMetricsDropped], and Finish records the run as FAILED with the
// number of refused rows. Rows are never dropped without an error.
package rundb
