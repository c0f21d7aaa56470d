package rundb_test

import (
	"database/sql"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/rundb"
	"github.com/sslrun/sslrun/core/rundb/rundbtest"
)

// verdictRun is one run of the collapse-rule tests: its final z metrics
// (NaN: not logged), kNN top-1 (NaN: none), number of classes (0: the
// default), and the verdicts of schema version 2 and of run_final now
// (-1 for NULL).
type verdictRun struct {
	name                string
	mo, std, knn        float64
	classes             int
	v2, collapsed, knnC int64
}

// verdictRuns covers the rule: the partial collapse of docs/study.md (m_o
// 0.999 but kNN 0.6, not collapsed in version 2), complete collapse,
// collapse of the dimensions without a kNN accuracy, healthy runs, a run
// without geometry, and chance from num_classes.
var verdictRuns = []verdictRun{
	{"partial", 0.999, 0.3, 0.6, 0, 0, 1, 0},
	{"point", 0.95, 0.2, 0.1, 0, 1, 1, 1},
	{"dims", 0.3, 0.05, math.NaN(), 0, 1, 1, -1},
	{"healthy", 0.1, 0.9, 0.7, 0, 0, 0, 0},
	{"std-only", math.NaN(), 0.5, 0.1, 0, 0, 0, 1},
	{"no-geometry", math.NaN(), math.NaN(), 0.1, 0, -1, -1, 1},
	{"100-classes", 0.95, 0.3, 0.08, 100, 0, 1, 0}, // at chance with 10 classes, not with 100
	{"edge", 0.9, 0.1, 0.2, 0, 0, 0, 0},            // the geometric thresholds are strict
}

// logVerdictRuns writes verdictRuns as FINISHED runs of study "verdicts",
// method "m", one variant each, and returns their ids by name.
func logVerdictRuns(t *testing.T, db *rundb.DB) map[string]int64 {
	t.Helper()
	ids := map[string]int64{}
	for _, v := range verdictRuns {
		spec := rundb.RunSpec{Study: "verdicts", Name: v.name, Method: "m", Variant: v.name, Seed: 1}
		if v.classes > 0 {
			spec.Config = []byte(fmt.Sprintf(`{"data": {"num_classes": %d}}`, v.classes))
		}
		r, err := db.CreateRun(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		var ms []rundb.Metric
		if !math.IsNaN(v.mo) {
			ms = append(ms, rundb.Metric{Key: "decompose/m_o", Context: rundbtest.Z, Value: v.mo})
		}
		if !math.IsNaN(v.std) {
			ms = append(ms, rundb.Metric{Key: "decompose/std_sqrt_d", Context: rundbtest.Z, Value: v.std})
		}
		ms = append(ms, rundb.Metric{Key: "train/loss", Value: 1})
		if err := r.Log(10, 1, ms...); err != nil {
			t.Fatal(err)
		}
		if !math.IsNaN(v.knn) {
			if err := r.LogEvaluation(ctx, rundb.Evaluation{Protocol: "knn", Dataset: "d", Split: "test", Feature: "backbone",
				Selection: "last", K: 20, Temperature: 0.1, Step: 10, Epoch: 1, Top1: v.knn, Top5: math.NaN()}); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Finish(rundb.StatusFinished, nil); err != nil {
			t.Fatal(err)
		}
		ids[v.name] = r.ID()
	}
	return ids
}

// nullable reads a nullable integer column as -1 for NULL.
func nullable(n sql.NullInt64) int64 {
	if !n.Valid {
		return -1
	}
	return n.Int64
}

// columns returns the column names of q's result.
func columns(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

// schemaOf returns the schema objects of a database file, one line each.
func schemaOf(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT type, name, tbl_name, ifnull(sql, '') FROM sqlite_master ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ, name, tbl, text string
		if err := rows.Scan(&typ, &name, &tbl, &text); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+" "+name+" "+tbl+" "+text)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawOpen opens a database file without this package (no migration).
func rawOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	t.Cleanup(func() { raw.Close() })
	return raw
}

// TestCollapseVerdict: run_final's collapsed is the geometric rule alone
// and knn_at_chance the kNN condition; compare's collapsed column follows.
func TestCollapseVerdict(t *testing.T) {
	db, _ := openTemp(t)
	ids := logVerdictRuns(t, db)
	for _, v := range verdictRuns {
		var c, k sql.NullInt64
		if err := db.SQL().QueryRow(`SELECT collapsed, knn_at_chance FROM run_final WHERE run_id = ?`, ids[v.name]).Scan(&c, &k); err != nil {
			t.Fatal(err)
		}
		if nullable(c) != v.collapsed || nullable(k) != v.knnC {
			t.Errorf("%s: collapsed %d knn_at_chance %d, want %d %d (-1 = NULL)", v.name, nullable(c), nullable(k), v.collapsed, v.knnC)
		}
	}
	rows, err := db.Compare(ctx, rundb.CompareOptions{Study: "verdicts"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{1: "yes", 0: "no", -1: "?"}
	for _, r := range rows {
		i := slices.IndexFunc(verdictRuns, func(v verdictRun) bool { return v.name == r.Variant })
		if i < 0 {
			t.Fatalf("compare row for unknown variant %q", r.Variant)
		}
		if w := want[verdictRuns[i].collapsed]; r.Verdict() != w {
			t.Errorf("compare %s: collapsed %q, want %q", r.Variant, r.Verdict(), w)
		}
	}
	if len(rows) != len(verdictRuns) {
		t.Errorf("%d compare rows, want %d", len(rows), len(verdictRuns))
	}
}

// TestMigrateFromV2 writes runs with this package, turns the file into
// exactly what version 2 left (its run_final view, the plugins table
// without attempts, user_version 2), checks that its view gives version
// 2's verdicts, and opens it: the migration replaces run_final, keeps every
// column and row, adds knn_at_chance, and collapsed AND
// ifnull(knn_at_chance, 1) is version 2's verdict.
func TestMigrateFromV2(t *testing.T) {
	if rundb.SchemaVersion < 3 || len(rundb.Migrations()) != rundb.SchemaVersion {
		t.Fatalf("SchemaVersion %d, %d migrations; want at least 3, one per version", rundb.SchemaVersion, len(rundb.Migrations()))
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "v2.db")
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rundbtest.Populate(ctx, db, "cifar", rundbtest.DefaultSpecs); err != nil {
		t.Fatal(err)
	}
	ids := logVerdictRuns(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Version 2's schema, from its migrations alone.
	ref := rawOpen(t, filepath.Join(dir, "ref.db"))
	for _, m := range rundb.Migrations()[:2] {
		if _, err := ref.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	m2 := rundb.Migrations()[1]
	v2view := m2[strings.Index(m2, "CREATE VIEW run_final"):]
	// Version 4 added the plugins table's attempt column: put back the
	// table as versions 1-3 had it, with the same rows.
	m1 := rundb.Migrations()[0]
	v1plugins := m1[strings.Index(m1, "CREATE TABLE plugins"):]
	v1plugins = v1plugins[:strings.Index(v1plugins, ");")+2]
	raw := rawOpen(t, path)
	for _, q := range []string{"DROP VIEW run_final", v2view,
		"CREATE TEMP TABLE p AS SELECT run_id, role, name, version, sha256 FROM plugins",
		"DROP TABLE plugins", v1plugins, "INSERT INTO plugins SELECT * FROM temp.p", "DROP TABLE temp.p",
		"PRAGMA user_version = 2"} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	if got, want := schemaOf(t, raw), schemaOf(t, ref); !slices.Equal(got, want) {
		t.Fatalf("the fixture's schema is not version 2's:\n got %q\nwant %q", got, want)
	}
	v2cols := columns(t, raw, "SELECT * FROM run_final")
	pluginRows := count(t, raw, "SELECT count(*) FROM plugins")
	v2rows := map[int64]string{}
	rows, err := raw.Query(`SELECT run_id, quote(collapsed) || ' ' || quote(knn_top1) || ' ' || quote(m_o) || ' ' ||
		quote(std_sqrt_d) || ' ' || quote(loss) || ' ' || quote(num_classes) FROM run_final`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var s string
		if err := rows.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		v2rows[id] = s
	}
	rows.Close()
	for _, v := range verdictRuns {
		var c sql.NullInt64
		if err := raw.QueryRow(`SELECT collapsed FROM run_final WHERE run_id = ?`, ids[v.name]).Scan(&c); err != nil {
			t.Fatal(err)
		}
		if nullable(c) != v.v2 {
			t.Fatalf("%s: version 2's view says collapsed %d, want %d", v.name, nullable(c), v.v2)
		}
	}
	raw.Close()

	db = openMigrated(t, path)
	// Version 4: every plugin row is kept, as attempt 1's.
	if n, m := count(t, db.SQL(), "SELECT count(*) FROM plugins"), count(t, db.SQL(), "SELECT count(*) FROM plugins WHERE attempt = 1"); n == 0 || n != m || n != pluginRows {
		t.Errorf("plugins after migration: %d rows, %d of attempt 1, want %d, all of attempt 1", n, m, pluginRows)
	}
	if got, want := columns(t, db.SQL(), "SELECT * FROM run_final"), append(v2cols, "knn_at_chance"); !slices.Equal(got, want) {
		t.Errorf("run_final columns\n got %v\nwant %v", got, want)
	}
	// Every run keeps its values; the verdict changes only where version
	// 2's kNN condition decided, and the old rule is one AND away.
	rows, err = db.SQL().Query(`SELECT run_id, quote(collapsed) || ' ' || quote(knn_top1) || ' ' || quote(m_o) || ' ' ||
		quote(std_sqrt_d) || ' ' || quote(loss) || ' ' || quote(num_classes),
		quote(collapsed AND ifnull(knn_at_chance, 1)) || ' ' || quote(knn_top1) || ' ' || quote(m_o) || ' ' ||
		quote(std_sqrt_d) || ' ' || quote(loss) || ' ' || quote(num_classes) FROM run_final`)
	if err != nil {
		t.Fatal(err)
	}
	n, changed := 0, 0
	for rows.Next() {
		var id int64
		var now, old string
		if err := rows.Scan(&id, &now, &old); err != nil {
			t.Fatal(err)
		}
		n++
		if old != v2rows[id] {
			t.Errorf("run %d: old rule after migration %s, version 2 %s", id, old, v2rows[id])
		}
		if now != v2rows[id] {
			changed++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if n != len(v2rows) || n != len(rundbtest.DefaultSpecs)+len(verdictRuns) {
		t.Errorf("%d runs after migration, %d before, want %d", n, len(v2rows), len(rundbtest.DefaultSpecs)+len(verdictRuns))
	}
	if changed != 2 { // "partial" and "100-classes"
		t.Errorf("%d verdicts changed, want 2", changed)
	}
	for _, v := range verdictRuns {
		var c, k sql.NullInt64
		if err := db.SQL().QueryRow(`SELECT collapsed, knn_at_chance FROM run_final WHERE run_id = ?`, ids[v.name]).Scan(&c, &k); err != nil {
			t.Fatal(err)
		}
		if nullable(c) != v.collapsed || nullable(k) != v.knnC {
			t.Errorf("%s after migration: collapsed %d knn_at_chance %d, want %d %d", v.name, nullable(c), nullable(k), v.collapsed, v.knnC)
		}
	}
	cmp, err := db.Compare(ctx, rundb.CompareOptions{Study: "verdicts"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range cmp {
		if r.Variant == "partial" && r.Verdict() != "yes" {
			t.Errorf("compare after migration: partial collapse %q, want yes", r.Verdict())
		}
	}
}
