package rundb_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
	"github.com/sslrun/sslrun/core/rundb/rundbtest"
)

// mountTmpfs mounts a small tmpfs for a real full-disk or read-only file
// system. It needs CAP_SYS_ADMIN (CI runs the tests as root); otherwise the
// test is skipped, and TestDiskFull still covers SQLITE_FULL through
// max_page_count.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func remount(t *testing.T, dir, opts string, flags uintptr) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|flags, opts); err != nil {
		t.Fatalf("remount %s %s: %v", dir, opts, err)
	}
}

// TestFullFilesystem fills a 1 MiB tmpfs: the writer gets a disk-full
// error naming the file, stops cleanly, and after space is freed the file
// opens with every committed row and nothing partial.
func TestFullFilesystem(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	path := filepath.Join(dir, "runs.db")
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "full"})
	if err != nil {
		t.Fatal(err)
	}
	const batch = 500
	r.SetFlushPolicy(batch, time.Hour)
	committed := 0
	var logErr error
	for i := 0; i < 10_000_000 && logErr == nil; i++ {
		logErr = r.Log(int64(i), 0, rundb.Metric{Key: "loss", Value: float64(i)})
		if logErr == nil && (i+1)%batch == 0 {
			committed = i + 1
		}
	}
	if !errors.Is(logErr, rundb.ErrDiskFull) && !errors.Is(logErr, rundb.ErrIO) || !strings.Contains(logErr.Error(), path) {
		t.Fatalf("Log: %v, want a disk-full (or I/O) error naming %s", logErr, path)
	}
	t.Logf("after %d committed rows: %v", committed, logErr)
	ferr := r.Finish(rundb.StatusFinished, nil)
	t.Logf("Finish: %v", ferr)
	if ferr == nil {
		t.Error("Finish after a failed flush returned nil")
	}
	db.Close()

	remount(t, dir, "size=16m", 0)
	db, err = rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	integrity(t, db.SQL())
	if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != int64(committed) {
		t.Errorf("%d rows, want the %d committed", n, committed)
	}
	if n := count(t, db.SQL(), "SELECT count FROM series"); n != int64(committed) {
		t.Errorf("summary count %d, want %d", n, committed)
	}
	var status string
	db.SQL().QueryRow("SELECT status FROM runs").Scan(&status)
	// Finish released the reserve file Open set aside, so the final
	// status fits although the metrics did not.
	if status != "FAILED" {
		t.Errorf("run status %s, want FAILED", status)
	}
}

// TestReadOnlyFilesystem puts a finished database on a file system that
// is then remounted read-only: Open for writing fails with a clear error,
// OpenReadOnly still reads it.
func TestReadOnlyFilesystem(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	path := filepath.Join(dir, "runs.db")
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rundbtest.Populate(ctx, db, "s", rundbtest.DefaultSpecs[:2]); err != nil {
		t.Fatal(err)
	}
	want := count(t, db.SQL(), "SELECT count(*) FROM metrics")
	db.Close()
	remount(t, dir, "", syscall.MS_RDONLY)

	_, err = rundb.Open(path)
	if !errors.Is(err, rundb.ErrReadOnly) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open on a read-only file system: %v, want ErrReadOnly naming %s", err, path)
	}
	t.Logf("Open: %v", err)
	ro, err := rundb.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	tab, err := ro.Query(ctx, "SELECT count(*) FROM metrics")
	if err != nil || tab.Rows[0][0] != want {
		t.Errorf("read-only query: %v %v, want %d", tab, err, want)
	}
}

// TestReadOnlyFile makes the database file itself read-only. Root ignores
// file modes, so this runs only for other users (the tmpfs test above
// covers root).
func TestReadOnlyFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores file modes; TestReadOnlyFilesystem covers read-only databases")
	}
	db, path := openTemp(t)
	db.Close()
	os.Chmod(path, 0o444)
	_, err := rundb.Open(path)
	if !errors.Is(err, rundb.ErrReadOnly) {
		t.Errorf("Open of a 0444 file: %v, want ErrReadOnly", err)
	}
}
