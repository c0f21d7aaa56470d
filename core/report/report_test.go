package report

import (
	"bytes"
	"context"
	"encoding/xml"
	"image"
	"image/png"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
	"github.com/sslrun/sslrun/core/rundb/rundbtest"
)

var ctx = context.Background()

func fixture(t *testing.T) *rundb.DB {
	t.Helper()
	db, err := rundb.Open(filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := rundbtest.Populate(ctx, db, "cifar", rundbtest.DefaultSpecs); err != nil {
		t.Fatal(err)
	}
	return db
}

var svgRE = regexp.MustCompile(`(?s)<svg class="plot" id="([^"]+)".*?</svg>`)

func TestWrite(t *testing.T) {
	db := fixture(t)
	var b bytes.Buffer
	if err := Write(ctx, &b, db, Options{Study: "cifar", Now: func() time.Time { return time.Unix(0, 0) }}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	svgs := svgRE.FindAllStringSubmatch(out, -1)
	if len(svgs) != len(DefaultPlots) {
		t.Fatalf("%d plots, want %d", len(svgs), len(DefaultPlots))
	}
	nRuns := len(rundbtest.DefaultSpecs)
	for i, m := range svgs {
		if m[1] != DefaultPlots[i].ID {
			t.Errorf("plot %d has id %s, want %s", i, m[1], DefaultPlots[i].ID)
		}
		// Well-formed XML, one line group per run, ticks on both axes.
		dec := xml.NewDecoder(strings.NewReader(m[0]))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Errorf("%s: not well-formed: %v", m[1], err)
				break
			}
		}
		if got := strings.Count(m[0], `<g class="run"`); got != nRuns {
			t.Errorf("%s: %d run lines, want %d", m[1], got, nRuns)
		}
		if strings.Count(m[0], `text-anchor="end"`) < 3 || strings.Count(m[0], `text-anchor="middle" stroke="none">`) < 4 {
			t.Errorf("%s: too few tick labels", m[1])
		}
	}
	// Self-contained: no scripts, no external resources.
	for _, bad := range []string{"<script", "src=", "href=", "url(", "@import", "<link"} {
		if strings.Contains(out, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	for _, want := range []string{`id="compare"`, "no-stopgrad", "±", `class="collapsed-yes"`, `id="runs"`} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestWriteEmptyAndGaps(t *testing.T) {
	db, err := rundb.Open(filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.CreateRun(ctx, rundb.RunSpec{Study: "s", Method: "m"})
	if err != nil {
		t.Fatal(err)
	}
	// A loss with a NaN gap and 1000 steps (downsampled), a constant kNN.
	for i := range 1000 {
		v := math.Exp(-float64(i) / 300)
		if i >= 400 && i < 420 {
			v = math.NaN()
		}
		r.Log(int64(i), float64(i)/100, rundb.Metric{Key: "loss", Value: v}, rundb.Metric{Key: "knn/top1", Value: 0.1}) // the fallback keys
	}
	r.Finish(rundb.StatusFinished, nil)
	var b bytes.Buffer
	if err := Write(ctx, &b, db, Options{Study: "s", MaxPoints: 200}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	svgs := svgRE.FindAllStringSubmatch(out, -1)
	if len(svgs) != len(DefaultPlots) {
		t.Fatalf("%d plots", len(svgs))
	}
	if n := strings.Count(svgs[0][0], "<polyline"); n != 2 {
		t.Errorf("loss with a NaN gap: %d polylines, want 2", n)
	}
	if pts := strings.Count(svgs[0][0], ","); pts > 200 {
		t.Errorf("loss has %d points, want <= 200 after downsampling", pts)
	}
	if !strings.Contains(svgs[2][0], "no data for decompose/m_o") {
		t.Error("m_o plot without data lacks its notice")
	}
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		n      int
		want   []float64
	}{
		{0, 10, 5, []float64{0, 2, 4, 6, 8, 10}},
		{-0.93, -0.17, 6, []float64{-0.8, -0.6, -0.4, -0.2}},
		{-0.93, -0.17, 10, []float64{-0.9, -0.8, -0.7, -0.6, -0.5, -0.4, -0.3, -0.2}},
		{0.08, 0.87, 6, []float64{0.2, 0.4, 0.6, 0.8}},
		{3, 3, 5, []float64{3}},
	}
	for _, tt := range tests {
		got, _ := niceTicks(tt.lo, tt.hi, tt.n)
		if len(got) != len(tt.want) {
			t.Errorf("niceTicks(%v, %v) = %v, want %v", tt.lo, tt.hi, got, tt.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tt.want[i]) > 1e-9 {
				t.Errorf("niceTicks(%v, %v) = %v, want %v", tt.lo, tt.hi, got, tt.want)
				break
			}
		}
	}
}

// TestChromium renders the report in headless Chromium (Debian package
// chromium; CI installs it): the DOM holds every plot's <svg> with its run
// lines, and the screenshot shows the plots' colours. Set
// REPORT_SCREENSHOT=file.png to keep the screenshot.
func TestChromium(t *testing.T) {
	var bin string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium not installed (apt-get install --no-install-recommends chromium): report render test skipped")
	}
	db := fixture(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	if err := WriteFile(ctx, path, db, Options{Study: "cifar"}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--user-data-dir=" + filepath.Join(dir, "profile")}
		cmd := exec.CommandContext(c, bin, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.Bytes()
	}
	dom := string(run("--dump-dom", "file://"+path))
	for _, p := range DefaultPlots {
		m := regexp.MustCompile(`(?s)<svg[^>]*id="` + p.ID + `".*?</svg>`).FindString(dom)
		if m == "" {
			t.Errorf("rendered DOM lacks <svg id=%q>", p.ID)
			continue
		}
		if n := strings.Count(m, `class="run"`); n != len(rundbtest.DefaultSpecs) {
			t.Errorf("%s: %d run lines in the DOM, want %d", p.ID, n, len(rundbtest.DefaultSpecs))
		}
	}
	if !strings.Contains(dom, `id="compare"`) {
		t.Error("rendered DOM lacks the comparison table")
	}

	shot := filepath.Join(dir, "shot.png")
	run("--screenshot="+shot, "--window-size=1300,2400", "--hide-scrollbars", "file://"+path)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The first two methods' colours must be painted (lines and legend).
	for _, hex := range palette[:2] {
		if n := countColor(img, hex); n < 200 {
			t.Errorf("screenshot has %d pixels of %s, want >= 200", n, hex)
		}
	}
	if keep := os.Getenv("REPORT_SCREENSHOT"); keep != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(keep, b, 0o644)
		h, _ := os.ReadFile(path)
		os.WriteFile(strings.TrimSuffix(keep, ".png")+".html", h, 0o644)
	}
}

// countColor counts pixels within a small distance of an "#rrggbb" colour.
func countColor(img image.Image, hex string) int {
	var want [3]int
	for i := range want {
		var v int
		for _, c := range hex[1+2*i : 3+2*i] {
			v = v*16 + strings.IndexRune("0123456789abcdef", c)
		}
		want[i] = v
	}
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			d := abs(int(r>>8)-want[0]) + abs(int(g>>8)-want[1]) + abs(int(b>>8)-want[2])
			if d < 24 {
				n++
			}
		}
	}
	return n
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// TestGradientPlotFallsBackToP: a run that split the gradient only on the
// prediction p still gets a line in the gradient plots.
func TestGradientPlotFallsBackToP(t *testing.T) {
	db, err := rundb.Open(filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "p-only", Method: "simsiam"})
	if err != nil {
		t.Fatal(err)
	}
	p := rundb.Ctx("tensor", "p")
	for step := range int64(5) {
		if err := r.Log(step, float64(step), rundb.Metric{Key: "decompose/grad_decenter_share", Context: p, Value: 0.1},
			rundb.Metric{Key: "decompose/grad_decorr_share", Context: p, Value: 0.9},
			rundb.Metric{Key: "decompose/m_o", Context: p, Value: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(ctx, &b, db, Options{}); err != nil {
		t.Fatal(err)
	}
	lines := map[string]int{}
	for _, m := range svgRE.FindAllStringSubmatch(b.String(), -1) {
		lines[m[1]] = strings.Count(m[0], `<g class="run"`)
	}
	if lines["plot-grad-decenter"] != 1 || lines["plot-grad-decorr"] != 1 || lines["plot-m-o"] != 0 {
		t.Errorf("run lines per plot %v: want the gradient shares of p plotted, and m_o of p not (m_o is z's)", lines)
	}
}
