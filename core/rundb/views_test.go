package rundb_test

import (
	"database/sql"
	"testing"

	"github.com/sslrun/sslrun/core/rundb"
)

// TestGradientSharesOnP: run_final reads the gradient shares of tensor z,
// and of tensor p for a run that split the gradient only on p (the
// plugin-based decompose analyzer does for SimSiam).
func TestGradientSharesOnP(t *testing.T) {
	db, _ := openTemp(t)
	z := rundb.Ctx("tensor", "z", "scope", "batch")
	p := rundb.Ctx("tensor", "p", "scope", "batch")
	log := func(name string, ms ...rundb.Metric) int64 {
		t.Helper()
		r, err := db.CreateRun(ctx, rundb.RunSpec{Name: name, Method: "simsiam", Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Log(10, 1, ms...); err != nil {
			t.Fatal(err)
		}
		if err := r.Finish(rundb.StatusFinished, nil); err != nil {
			t.Fatal(err)
		}
		return r.ID()
	}
	both := log("both",
		rundb.Metric{Key: "decompose/grad_decenter_share", Context: z, Value: 0.1},
		rundb.Metric{Key: "decompose/grad_decorr_share", Context: z, Value: 0.9},
		rundb.Metric{Key: "decompose/grad_decenter_share", Context: p, Value: 0.3},
		rundb.Metric{Key: "decompose/grad_decorr_share", Context: p, Value: 0.7})
	onlyP := log("only-p",
		rundb.Metric{Key: "decompose/m_o", Context: z, Value: 0.05},
		rundb.Metric{Key: "decompose/grad_decenter_share", Context: p, Value: 0.2},
		rundb.Metric{Key: "decompose/grad_decorr_share", Context: p, Value: 0.8},
		rundb.Metric{Key: "decompose/m_o", Context: p, Value: 0.6}) // m_o stays z's
	for _, tc := range []struct {
		run        int64
		dc, dr, mo float64
		moValid    bool
	}{{both, 0.1, 0.9, 0, false}, {onlyP, 0.2, 0.8, 0.05, true}} {
		var dc, dr, mo sql.NullFloat64
		if err := db.SQL().QueryRow(`SELECT grad_decenter_share, grad_decorr_share, m_o FROM run_final WHERE run_id = ?`,
			tc.run).Scan(&dc, &dr, &mo); err != nil {
			t.Fatal(err)
		}
		if dc.Float64 != tc.dc || dr.Float64 != tc.dr || mo.Valid != tc.moValid || mo.Float64 != tc.mo {
			t.Errorf("run %d: decenter %v decorr %v m_o %v, want %v %v %v (valid %v)", tc.run, dc, dr, mo, tc.dc, tc.dr, tc.mo, tc.moValid)
		}
	}
	rows, err := db.Compare(ctx, rundb.CompareOptions{})
	if err != nil || len(rows) != 1 || rows[0].Decenter.N != 2 || rows[0].Decorr.N != 2 {
		t.Errorf("Compare: %+v %v, want the shares of both runs", rows, err)
	}
}
