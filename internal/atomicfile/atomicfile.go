// Package atomicfile replaces files atomically: readers of the path see
// either the old content or the complete new content, never a prefix, even
// when the writer crashes or the disk fills up half-way.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// Write atomically replaces path with data and gives it mode perm.
//
// The data goes to a temporary file in the same directory (a rename is only
// atomic within one file system), which is synced, chmodded to perm, closed
// and renamed over path; the directory is then synced so the rename itself
// survives a crash. perm is applied as given, not masked by the umask, so
// the result does not depend on the process environment. On error path is
// left as it was and the temporary file is removed. If path is a symlink,
// the link itself is replaced, not its target.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc is Write for content produced by write, which streams into the
// temporary file through a buffer. An error from write aborts the
// replacement and is returned wrapped, so errors.Is sees it.
func WriteFunc(path string, perm os.FileMode, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// The leading dot hides the temporary file from globs and directory
	// listings such as the dataset folder scan.
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			f.Close() // may already be closed; the error is moot
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := write(bw); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: sync %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfile: chmod %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: rename to %s: %w", path, err)
	}
	// From here on path has the new content and tmp no longer exists
	// (another file may even take its name): remove nothing.
	renamed = true
	if serr := syncDir(dir); serr != nil {
		return fmt.Errorf("atomicfile: sync directory of %s: %w", path, serr)
	}
	return nil
}

// syncDir makes a rename in dir durable. Windows cannot open or sync a
// directory this way, and some file systems reject fsync on directories
// (EINVAL); neither makes the write itself fail.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
