package rundb_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/rundb"
	"github.com/sslrun/sslrun/core/rundb/rundbtest"
)

// fixture writes the synthetic study into a closed database file.
func fixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runs.db")
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rundbtest.Populate(ctx, db, "cifar", rundbtest.DefaultSpecs); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// sqlite3CLI finds the sqlite3 command-line tool (Debian package sqlite3;
// CI installs it).
func sqlite3CLI(t *testing.T) string {
	p, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("sqlite3 command-line tool not installed (apt-get install sqlite3)")
	}
	return p
}

func TestSQLite3CLI(t *testing.T) {
	cli := sqlite3CLI(t)
	path := fixture(t)
	out, err := exec.Command(cli, "-readonly", "-bail", path,
		"PRAGMA integrity_check; PRAGMA user_version; SELECT count(*) FROM metrics; SELECT count(*) FROM run_final WHERE collapsed = 1;").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	ro, err := rundb.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	n := count(t, ro.SQL(), "SELECT count(*) FROM metrics")
	want := "ok\n" + strconv.Itoa(rundb.SchemaVersion) + "\n" + strconv.FormatInt(n, 10) + "\n2\n"
	if string(out) != want {
		t.Errorf("sqlite3 printed %q, want %q", out, want)
	}
}

func python(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if q, err := exec.LookPath(p); err == nil {
			return q
		}
	}
	t.Skip("python3 not installed")
	return ""
}

const pyCheck = `
import json, sqlite3, struct, sys
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
version = con.execute("PRAGMA user_version").fetchone()[0]
metrics = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
collapsed = con.execute("SELECT count(*) FROM run_final WHERE collapsed = 1").fetchone()[0]
lr = con.execute("SELECT value, typeof(value) FROM params WHERE key = 'optim.lr' LIMIT 1").fetchone()
shape, data = con.execute("SELECT shape, data FROM arrays LIMIT 1").fetchone()
n = 1
for d in json.loads(shape):
    n *= d
spectrum = struct.unpack("<%df" % n, data)
print(json.dumps({"version": version, "metrics": metrics, "collapsed": collapsed,
    "lr": lr, "spectrum0": spectrum[0], "n": n, "sqlite": sqlite3.sqlite_version}))
`

func TestPython(t *testing.T) {
	py := python(t)
	path := fixture(t)
	out, err := exec.Command(py, "-c", pyCheck, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	ro, err := rundb.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	n := count(t, ro.SQL(), "SELECT count(*) FROM metrics")
	got := strings.TrimSpace(string(out))
	for _, w := range []string{`"version": ` + strconv.Itoa(rundb.SchemaVersion), `"metrics": ` + strconv.FormatInt(n, 10), `"collapsed": 2`,
		`"lr": [0.06, "real"]`, `"spectrum0": 1.0`, `"n": 16`} {
		if !strings.Contains(got, w) {
			t.Errorf("python printed %s; missing %s", got, w)
		}
	}
	t.Logf("python: %s", got)
}

// TestDocQueries runs every ```sql block of docs/rundb.md with Go and with
// the sqlite3 tool, and the ```python block with Python.
func TestDocQueries(t *testing.T) {
	doc, err := os.ReadFile("../../docs/rundb.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 5 {
		t.Fatalf("found %d sql blocks in docs/rundb.md", len(blocks))
	}
	path := fixture(t)
	ro, err := rundb.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	cli, _ := exec.LookPath("sqlite3")
	for i, b := range blocks {
		q := strings.TrimSpace(b[1])
		tab, err := ro.Query(ctx, q)
		if err != nil {
			t.Errorf("query %d: %v\n%s", i+1, err, q)
			continue
		}
		if len(tab.Rows) == 0 {
			t.Errorf("query %d returned no rows:\n%s", i+1, q)
		}
		if cli != "" {
			out, err := exec.Command(cli, "-readonly", "-bail", "-csv", path, q).CombinedOutput()
			lines := strings.Count(string(out), "\n")
			if err != nil || lines != len(tab.Rows) {
				t.Errorf("query %d with sqlite3: %v, %d lines, want %d\n%s", i+1, err, lines, len(tab.Rows), out)
			}
		}
	}
	py := regexp.MustCompile("(?s)```python\n(.*?)```").FindStringSubmatch(string(doc))
	if py == nil {
		t.Fatal("no python block in docs/rundb.md")
	}
	if p, err := exec.LookPath("/usr/bin/python3"); err == nil {
		cmd := exec.Command(p, "-c", py[1])
		cmd.Dir = filepath.Dir(path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || strings.Count(out.String(), "\n") != 3 {
			t.Errorf("python block: %v\n%s", err, out.String())
		}
	}
}
