package rundb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/mattn/go-sqlite3"
)

// Error classes, matched with errors.Is against any error this package
// returns.
var (
	// ErrDiskFull: SQLite could not grow the database or its WAL
	// (SQLITE_FULL). The failed transaction was rolled back.
	ErrDiskFull = errors.New("disk full")
	// ErrReadOnly: the database, its directory or its file system does not
	// allow writing, or it was opened with OpenReadOnly.
	ErrReadOnly = errors.New("database is read-only")
	// ErrIO: the operating system reported an I/O error.
	ErrIO = errors.New("I/O error")
	// ErrNotFound: no run matches the reference.
	ErrNotFound = errors.New("not found")
	// ErrNewerSchema: the file was written by a newer sslrun.
	ErrNewerSchema = errors.New("database schema is newer than this sslrun")
)

// Error is the error type of every failed database operation: it names the
// database file and what was being done, and classifies SQLite's result code
// (see ErrDiskFull, ErrReadOnly, ErrIO).
type Error struct {
	Path string // database file
	Op   string // what was being done, e.g. "write 512 metric rows of run 3"
	Err  error  // the underlying error (often a sqlite3.Error)
}

// Error formats as "rundb <path>: <op>: <class>: <cause>".
func (e *Error) Error() string {
	hint := ""
	switch {
	case errors.Is(e, ErrDiskFull):
		hint = "disk full, nothing of this write was committed: "
	case errors.Is(e, ErrReadOnly):
		hint = "database is read-only: "
	case errors.Is(e, ErrIO):
		hint = "I/O error: "
	}
	return fmt.Sprintf("rundb %s: %s: %s%v", e.Path, e.Op, hint, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is classifies SQLite result codes into this package's error classes.
func (e *Error) Is(target error) bool {
	var se sqlite3.Error
	if !errors.As(e.Err, &se) {
		return false
	}
	switch target {
	case ErrDiskFull:
		return se.Code == sqlite3.ErrFull
	case ErrReadOnly:
		return se.Code == sqlite3.ErrReadonly
	case ErrIO:
		return se.Code == sqlite3.ErrIoErr
	}
	return false
}

// wrap attaches the database path and operation to err; nil stays nil.
func (db *DB) wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Path: db.path, Op: fmt.Sprintf(format, args...), Err: err}
}

// DB is an open run database. It is safe for concurrent use.
type DB struct {
	sql       *sql.DB
	path      string
	readOnly  bool
	maxVars   int     // compiled SQLITE_LIMIT_VARIABLE_NUMBER
	recovered []int64 // runs marked CRASHED by Open

	// connHook, when set (by tests), runs on each dedicated writer
	// connection, e.g. to set PRAGMA max_page_count.
	connHook func(context.Context, *sql.Conn) error
}

// DSN parameters. WAL lets readers run while one writer commits;
// busy_timeout makes concurrent writers wait instead of failing with
// "database is locked"; _txlock=immediate takes the write lock at BEGIN so
// that two writers never both hold a read snapshot they then try to upgrade
// (which SQLite resolves with SQLITE_BUSY without waiting); synchronous
// NORMAL is durable against process crashes in WAL mode and avoids an fsync
// per commit.
const (
	rwParams = "_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate&_synchronous=NORMAL&_foreign_keys=1"
	roParams = "mode=ro&_query_only=1&_busy_timeout=5000"
)

// dsn builds a URI filename, so that SQLite sees mode= and a path holding
// '?' or '#' survives.
func dsn(path, params string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	u := url.URL{Path: abs}
	return "file:" + u.EscapedPath() + "?" + params, nil
}

// Open opens the database at path for writing, creating it if needed,
// migrates its schema to SchemaVersion and marks RUNNING runs whose owner
// process on this host is gone as CRASHED (see RecoverCrashed and
// Recovered).
func Open(path string) (*DB, error) {
	ctx := context.Background()
	db := &DB{path: path}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); err != nil {
		return nil, db.wrap(err, "open")
	}
	// SQLite needs to write the file and to create the -wal and -shm files
	// beside it; say so instead of its "unable to open database file".
	if err := writable(dir); err != nil {
		return nil, db.wrap(classErr{ErrReadOnly, fmt.Sprintf("directory %s: %v (SQLite creates the -wal and -shm files there)", dir, err)}, "open for writing")
	}
	if _, err := os.Stat(path); err == nil {
		if err := writable(path); err != nil {
			return nil, db.wrap(classErr{ErrReadOnly, err.Error()}, "open for writing")
		}
	}
	d, err := dsn(path, rwParams)
	if err != nil {
		return nil, db.wrap(err, "open")
	}
	if db.sql, err = sql.Open("sqlite3", d); err != nil {
		return nil, db.wrap(err, "open")
	}
	if err := db.init(ctx); err != nil {
		db.sql.Close()
		return nil, err
	}
	// SQLite silently opens a file it may not write read-only; take the
	// write lock once so that such a database fails here, clearly, rather
	// than at the first metric.
	tx, err := db.sql.BeginTx(ctx, nil)
	if err == nil {
		err = tx.Rollback()
	}
	if err != nil {
		db.sql.Close()
		return nil, db.wrap(err, "open for writing")
	}
	if err := db.migrate(ctx); err != nil {
		db.sql.Close()
		return nil, err
	}
	ids, err := db.RecoverCrashed(ctx)
	if err != nil {
		db.sql.Close()
		return nil, err
	}
	db.recovered = ids
	db.reserve()
	return db, nil
}

// reserveBytes is the space Open sets aside beside a writable database,
// in FILE-reserve, for a full disk: a run's Finish deletes the file when
// its final status cannot be written for lack of space and tries again,
// so that the run ends FAILED, with its error, instead of staying RUNNING
// until the next Open finds its process gone.
const reserveBytes = 256 << 10

func (db *DB) reservePath() string { return db.path + "-reserve" }

// reserve makes sure the reserve file exists at full size. A disk already
// too full for it is not an error: Finish then has nothing to release.
func (db *DB) reserve() {
	p := db.reservePath()
	if st, err := os.Stat(p); err == nil && st.Size() >= reserveBytes {
		return
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return
	}
	// Zeros, not a hole: a sparse file would free nothing when deleted.
	_, err = f.Write(make([]byte, reserveBytes))
	if cerr := f.Close(); err != nil || cerr != nil {
		os.Remove(p)
	}
}

// releaseReserve deletes the reserve file and reports whether there was
// one to delete.
func (db *DB) releaseReserve() bool { return os.Remove(db.reservePath()) == nil }

// OpenReadOnly opens an existing database so that no statement can change
// it: SQLite opens the file read-only (mode=ro) and the connection refuses
// writes (query_only). A DELETE or UPDATE fails with an error matching
// ErrReadOnly. It is what `sslrun sql` uses.
func OpenReadOnly(path string) (*DB, error) {
	ctx := context.Background()
	db := &DB{path: path, readOnly: true}
	if _, err := os.Stat(path); err != nil {
		return nil, db.wrap(err, "open read-only")
	}
	params := roParams
	if writable(filepath.Dir(path)) != nil && !exists(path+"-shm") {
		// A WAL database on read-only media: SQLite cannot create the
		// -shm file, so declare the file immutable (nobody can change it
		// there anyway), which reads it without WAL locking.
		params += "&immutable=1"
	}
	d, err := dsn(path, params)
	if err != nil {
		return nil, db.wrap(err, "open read-only")
	}
	if db.sql, err = sql.Open("sqlite3", d); err != nil {
		return nil, db.wrap(err, "open read-only")
	}
	if err := db.init(ctx); err != nil {
		db.sql.Close()
		return nil, err
	}
	var v int
	if err := db.sql.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		db.sql.Close()
		return nil, db.wrap(err, "read schema version")
	}
	if v > SchemaVersion {
		db.sql.Close()
		return nil, db.wrap(ErrNewerSchema, "open read-only (schema %d, this sslrun knows %d)", v, SchemaVersion)
	}
	return db, nil
}

// init checks that the file is a usable SQLite database and reads the
// compiled bind-variable limit.
func (db *DB) init(ctx context.Context) error {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return db.wrap(err, "open")
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		db.maxVars = c.GetLimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
		return nil
	})
	if err != nil {
		return db.wrap(err, "open")
	}
	// Touch the schema so that "file is not a database" surfaces here.
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return db.wrap(err, "open")
	}
	return nil
}

// migrate brings the schema to SchemaVersion, one transaction for all
// steps. The version is re-read inside the (IMMEDIATE) transaction, so two
// processes opening a new file at once migrate it exactly once.
func (db *DB) migrate(ctx context.Context) error {
	var v int
	if err := db.sql.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return db.wrap(err, "read schema version")
	}
	if v == SchemaVersion {
		return nil
	}
	if v > SchemaVersion {
		return db.wrap(ErrNewerSchema, "open (schema %d, this sslrun knows %d)", v, SchemaVersion)
	}
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return db.wrap(err, "migrate schema")
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return db.wrap(err, "read schema version")
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return db.wrap(err, "migrate schema to version %d", i+1)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return db.wrap(err, "set schema version")
	}
	return db.wrap(tx.Commit(), "migrate schema")
}

// Close closes the database. Runs still open keep their own connection
// until Finish; Close waits for nothing.
func (db *DB) Close() error { return db.wrap(db.sql.Close(), "close") }

// SQL returns the underlying *sql.DB, for queries this package does not
// wrap.
func (db *DB) SQL() *sql.DB { return db.sql }

// Path returns the database file path as given to Open.
func (db *DB) Path() string { return db.path }

// Recovered returns the ids of the runs that Open marked CRASHED.
func (db *DB) Recovered() []int64 { return db.recovered }

// MaxVariables returns SQLite's compiled limit on bind variables per
// statement (SQLITE_MAX_VARIABLE_NUMBER); multi-row inserts stay below it.
func (db *DB) MaxVariables() int { return db.maxVars }

// RecoverCrashed marks as CRASHED every RUNNING run recorded by this host
// whose process is gone: the pid no longer exists, is a zombie, was reused
// by another process (its start time differs), or the machine has rebooted
// since (the boot id differs). Runs of other hosts are left alone: their
// processes cannot be checked from here. It returns the ids it marked.
func (db *DB) RecoverCrashed(ctx context.Context) ([]int64, error) {
	if db.readOnly {
		return nil, nil
	}
	self := selfIdentity()
	rows, err := db.sql.QueryContext(ctx, `SELECT id, attempt, pid, pid_start, boot_id, heartbeat
		FROM runs WHERE status = 'RUNNING' AND host = ?`, self.host)
	if err != nil {
		return nil, db.wrap(err, "find crashed runs")
	}
	type cand struct {
		id, attempt, pid, start int64
		boot                    string
		heartbeat               sql.NullInt64
	}
	var cands []cand
	for rows.Next() {
		var c cand
		var pid, start sql.NullInt64
		if err := rows.Scan(&c.id, &c.attempt, &pid, &start, &c.boot, &c.heartbeat); err != nil {
			rows.Close()
			return nil, db.wrap(err, "find crashed runs")
		}
		c.pid, c.start = pid.Int64, start.Int64
		cands = append(cands, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, db.wrap(err, "find crashed runs")
	}
	var marked []int64
	for _, c := range cands {
		if c.boot == self.bootID && processAlive(int(c.pid), c.start) {
			continue
		}
		end := c.heartbeat
		if !end.Valid {
			end = sql.NullInt64{Int64: nowMillis(), Valid: true}
		}
		tx, err := db.sql.BeginTx(ctx, nil)
		if err != nil {
			return marked, db.wrap(err, "mark run %d crashed", c.id)
		}
		// The WHERE repeats the owner so that a run resumed meanwhile by
		// another process is not touched.
		res, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'CRASHED', end_time = ?,
			error = 'process ' || pid || ' on ' || host || ' ended without recording a final status'
			WHERE id = ? AND status = 'RUNNING' AND attempt = ? AND pid IS ? AND pid_start IS ?`,
			end, c.id, c.attempt, c.pid, c.start)
		if err == nil {
			if n, _ := res.RowsAffected(); n == 1 {
				_, err = tx.ExecContext(ctx, `UPDATE run_attempts SET status = 'CRASHED', end_time = ?
					WHERE run_id = ? AND attempt = ?`, end, c.id, c.attempt)
				if err == nil {
					marked = append(marked, c.id)
				}
			}
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return marked, db.wrap(err, "mark run %d crashed", c.id)
		}
	}
	return marked, nil
}

// classErr is an error of one of the classes above that did not come from
// SQLite; Error.Error adds the class name, so msg leaves it out.
type classErr struct {
	class error
	msg   string
}

func (e classErr) Error() string { return e.msg }
func (e classErr) Unwrap() error { return e.class }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
