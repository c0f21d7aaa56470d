package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/internal/testenv"
	"github.com/sslrun/sslrun/plugins/decompose"
)

// TestPaperPipelinesValidate runs `sslrun validate` on every pipeline under
// pipelines/paper (TestShippedPipelinesValidate globs pipelines/*.hcl only),
// with the variables docs/study.md shows.
func TestPaperPipelinesValidate(t *testing.T) {
	paths, _ := filepath.Glob("../../pipelines/paper/*.hcl")
	if len(paths) == 0 {
		t.Fatal("no pipelines in ../../pipelines/paper")
	}
	for _, p := range paths {
		for _, vars := range [][]string{nil, {"-var", "quick=true"}, {"-var", "dataset=mnist", "-var", "quick=true"}} {
			t.Run(filepath.Base(p)+strings.Join(vars, ""), func(t *testing.T) {
				args := append([]string{"validate"}, vars...)
				r := sslrun(t, context.Background(), t.TempDir(), nil, append(args, p)...)
				if r.code != exitOK || !strings.Contains(r.stdout, "Success!") {
					t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
				}
			})
		}
	}
}

// studyRow is one run of the quick study as run_final reports it.
type studyRow struct {
	variant   string
	collapsed bool // run_final's verdict (the geometry of z)
	mo, std   float64
	moP       float64 // m_o of the predictor output p (NaN without one)
	knn, knn0 float64
}

// geometric is the decompose analyzer's verdict on the final training
// batch: m_o > 0.9 or std*sqrt(d) < 0.1.
func (r studyRow) geometric() bool {
	return r.mo > decompose.CollapseMO || r.std < decompose.CollapseStdSqrtD
}

// TestPaperStudyQuick runs the quick variant of pipelines/paper/unified.hcl
// (one seed) through the CLI and checks the paper's qualitative outcomes
// (docs/paper.md) in the run database: SimSiam does not collapse and its
// kNN accuracy stays well above chance, while SimSiam without
// stop-gradient, the naive Siamese network and the triplet loss with only
// the residual of the negatives collapse, and the symmetric predictor
// collapses its output p (its loss compares p with p).
//
// The run uses last_bn=none: with SimSiam's affine-free BatchNorm on the
// projector output every dimension of z is zero-mean over the batch, so z
// cannot collapse to a point and the collapsing variants lose effective
// rank instead (docs/study.md). Collapse is run_final's verdict (schema 3:
// m_o > 0.9 or std*sqrt(d) < 0.1 on the final training batch), which must
// agree with the decompose analyzer's rule.
//
// SSLRUN_STUDY_ARGS replaces the extra arguments of the run ("-var
// last_bn=none"); SSLRUN_STUDY_DB names the database of a quick study that
// already ran: the test then only checks it.
func TestPaperStudyQuick(t *testing.T) {
	testenv.Long(t)
	ctx := context.Background()
	dir := t.TempDir()
	db := os.Getenv("SSLRUN_STUDY_DB")
	if db == "" {
		if _, err := os.Stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"); err != nil && os.Getenv("SSLRUN_DATA") == "" {
			t.Skip("Fashion-MNIST is not installed (apt install dataset-fashion-mnist, or set SSLRUN_DATA)")
		}
		db = filepath.Join(dir, "paper-quick.db")
		extra := "-var last_bn=none"
		if v, ok := os.LookupEnv("SSLRUN_STUDY_ARGS"); ok {
			extra = v
		}
		args := []string{"run", "--log-json", "-var", "quick=true", "-var", "seeds=[0]", "-var", "database=" + db}
		args = append(args, strings.Fields(extra)...)
		r := sslrun(t, ctx, dir, nil, append(args, "../../pipelines/paper/unified.hcl")...)
		if r.code != exitOK {
			t.Fatalf("run: exit %d\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
		}
	}
	r := sslrun(t, ctx, dir, nil, "sql", "--db", db, "-f", "json", `
SELECT t.value AS variant, f.collapsed, f.m_o, f.std_sqrt_d, f.knn_top1,
  (SELECT e.top1 FROM evaluations e WHERE e.run_id = f.run_id AND e.protocol = 'knn' AND e.epoch = 0
     ORDER BY e.id LIMIT 1) AS knn0,
  (SELECT s.last_value FROM series s WHERE s.run_id = f.run_id AND s.key = 'decompose/m_o'
     AND json_extract(s.context, '$.tensor') = 'p' AND ifnull(json_extract(s.context, '$.scope'), '') <> 'eval'
     ORDER BY s.last_step DESC LIMIT 1) AS m_o_p
FROM run_final f JOIN tags t ON t.run_id = f.run_id AND t.key = 'variant'
WHERE f.status = 'FINISHED' AND f.study = 'unified' AND f.seed = 0 ORDER BY f.run_id`)
	if r.code != exitOK {
		t.Fatalf("sql: exit %d\n%s", r.code, r.stderr)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatalf("sql output: %v\n%s", err, r.stdout)
	}
	rows := map[string]studyRow{}
	for _, m := range raw {
		row := studyRow{variant: str(m["variant"]), collapsed: num(m["collapsed"]) == 1,
			mo: num(m["m_o"]), std: num(m["std_sqrt_d"]), moP: num(m["m_o_p"]), knn: num(m["knn_top1"]), knn0: num(m["knn0"])}
		rows[row.variant] = row
		t.Logf("%-20s collapsed=%-5v m_o=%.3f std*sqrt(d)=%.3f m_o(p)=%.3f kNN %.3f -> %.3f",
			row.variant, row.collapsed, row.mo, row.std, row.moP, row.knn0, row.knn)
		if row.collapsed != row.geometric() {
			t.Errorf("%s: run_final collapsed=%v, the decompose rule says %v", row.variant, row.collapsed, row.geometric())
		}
	}
	if len(rows) != 14 {
		t.Fatalf("%d finished variants, want 14:\n%s", len(rows), r.stdout)
	}
	// Chance is 0.1 (10 classes); "well above" leaves room for seeds.
	if s := rows["simsiam"]; s.geometric() || s.knn < 0.3 {
		t.Errorf("SimSiam: m_o %.3f, std*sqrt(d) %.3f, kNN %.3f; want no collapse and kNN well above chance", s.mo, s.std, s.knn)
	}
	for _, v := range []string{"simsiam-no-sg", "naive-siamese", "triplet-residual"} {
		if row := rows[v]; !row.collapsed {
			t.Errorf("%s did not collapse (m_o %.3f, std*sqrt(d) %.3f); the paper expects collapse", v, row.mo, row.std)
		}
	}
	if p := rows["symmetric-predictor"].moP; !(p > decompose.CollapseMO) {
		t.Errorf("symmetric predictor: m_o of p %.3f; the paper expects its output to collapse", p)
	}
}

// str and num read a JSON value of `sslrun sql -f json` (numbers may come
// as JSON numbers or, for untyped columns, as text; NULL is NaN).
func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return f
		}
	}
	return math.NaN()
}
