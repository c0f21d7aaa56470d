package report

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

type xy struct{ x, y float64 }

// line is one run's series in a plot.
type line struct {
	label       string
	runID       int64
	color, dash string
	pts         []xy
}

// Plot geometry in SVG user units; the SVG scales to its container.
const (
	plotW, plotH                  = 640, 340
	marginL, marginR              = 64, 16
	marginT, marginB              = 14, 44
	innerW                        = plotW - marginL - marginR
	innerH                        = plotH - marginT - marginB
	tickLen                       = 5
	targetXTicks, targetYTicks    = 8, 6
	fontSize                      = 12
	axisColor, gridColor, txtGray = "#444", "#e6e6e6", "#555"
	legendCols, legendColW        = 3, 190
	legendRowH                    = 16
)

// niceTicks returns round tick values (1, 2 or 5 times a power of ten)
// covering [lo, hi] with about n intervals, and the step.
func niceTicks(lo, hi float64, n int) ([]float64, float64) {
	span := hi - lo
	if !(span > 0) {
		return []float64{lo}, 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	// Multiply rather than accumulate, so ticks do not drift.
	for k := math.Ceil(lo/step - 1e-9); k*step <= hi+step*1e-9; k++ {
		v := k * step
		if k == 0 {
			v = 0 // avoid "-0"
		}
		ticks = append(ticks, v)
	}
	return ticks, step
}

func fmtTick(v, step float64) string {
	prec := 0
	if step < 1 {
		prec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	if math.Abs(v) >= 1e5 || (v != 0 && math.Abs(v) < 1e-4) {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// renderPlot draws one plot: frame, grid, ticks and labels on both axes, a
// polyline per run (split at NaN gaps) with a <title> naming the run, and
// "no data" when no run logged the metric.
func renderPlot(pl Plot, lines []line, legend []legendEntry) template.HTML {
	xlo, xhi := math.Inf(1), math.Inf(-1)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	n := 0
	for _, l := range lines {
		for _, p := range l.pts {
			if finite(p.x) && finite(p.y) {
				xlo, xhi = min(xlo, p.x), max(xhi, p.x)
				ylo, yhi = min(ylo, p.y), max(yhi, p.y)
				n++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<figure><figcaption>%s <span class="meta">(%s)</span></figcaption>`, html.EscapeString(pl.Title), html.EscapeString(strings.Join(pl.Keys, ", ")))
	totalH := plotH
	if len(legend) > 0 {
		totalH += 8 + (len(legend)+legendCols-1)/legendCols*legendRowH
	}
	fmt.Fprintf(&b, `<svg class="plot" id="%s" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		html.EscapeString(pl.ID), plotW, totalH, plotW, totalH, html.EscapeString(pl.Title))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`, plotW, totalH)
	if n == 0 {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`, marginL, marginT, innerW, innerH, axisColor)
		fmt.Fprintf(&b, `<text class="nodata" x="%d" y="%d" text-anchor="middle" font-size="%d" fill="%s">no data for %s</text>`,
			marginL+innerW/2, marginT+innerH/2, fontSize+2, txtGray, html.EscapeString(strings.Join(pl.Keys, " or ")))
		b.WriteString(`</svg></figure>`)
		return template.HTML(b.String())
	}
	// Epochs start at 0; values get a 5% margin so lines do not touch the
	// frame, and a flat series gets a visible band.
	xlo = min(0, xlo)
	if xhi <= xlo {
		xhi = xlo + 1
	}
	if yhi-ylo < 1e-12*max(1, math.Abs(yhi)) {
		d := max(math.Abs(yhi)*0.1, 0.5)
		ylo, yhi = ylo-d, yhi+d
	} else {
		pad := 0.05 * (yhi - ylo)
		ylo, yhi = ylo-pad, yhi+pad
	}
	xt, xstep := niceTicks(xlo, xhi, targetXTicks)
	yt, ystep := niceTicks(ylo, yhi, targetYTicks)
	// Extend the ranges to the outer ticks for a tidy frame.
	xlo, xhi = min(xlo, xt[0]), max(xhi, xt[len(xt)-1])
	ylo, yhi = min(ylo, yt[0]), max(yhi, yt[len(yt)-1])
	sx := func(x float64) float64 { return marginL + (x-xlo)/(xhi-xlo)*innerW }
	sy := func(y float64) float64 { return marginT + (1-(y-ylo)/(yhi-ylo))*innerH }

	b.WriteString(`<g class="grid" stroke="` + gridColor + `" stroke-width="1">`)
	for _, v := range yt {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, marginL, sy(v), marginL+innerW, sy(v))
	}
	for _, v := range xt {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`, sx(v), marginT, sx(v), marginT+innerH)
	}
	b.WriteString(`</g>`)

	b.WriteString(`<g class="lines" fill="none" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round">`)
	for _, l := range lines {
		dash := ""
		if l.dash != "" {
			dash = ` stroke-dasharray="` + l.dash + `"`
		}
		fmt.Fprintf(&b, `<g class="run" data-run="%d" stroke="%s"%s><title>%s</title>`, l.runID, l.color, dash, html.EscapeString(l.label))
		var seg []string
		flush := func() {
			if len(seg) == 1 { // a lone point between gaps: draw a dot
				b.WriteString(`<polyline points="` + seg[0] + " " + seg[0] + `" stroke-width="4"/>`)
			} else if len(seg) > 1 {
				b.WriteString(`<polyline points="` + strings.Join(seg, " ") + `"/>`)
			}
			seg = seg[:0]
		}
		for _, p := range l.pts {
			if !finite(p.x) || !finite(p.y) {
				flush()
				continue
			}
			seg = append(seg, fmt.Sprintf("%.1f,%.1f", sx(p.x), sy(p.y)))
		}
		flush()
		b.WriteString(`</g>`)
	}
	b.WriteString(`</g>`)

	// Axes, ticks and labels.
	fmt.Fprintf(&b, `<g class="axes" stroke="%s" stroke-width="1" font-size="%d" fill="%s">`, axisColor, fontSize, txtGray)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none"/>`, marginL, marginT, innerW, innerH)
	for _, v := range xt {
		x := sx(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`, x, marginT+innerH, x, marginT+innerH+tickLen)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" stroke="none">%s</text>`, x, marginT+innerH+tickLen+fontSize+1, fmtTick(v, xstep))
	}
	for _, v := range yt {
		y := sy(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, marginL-tickLen, y, marginL, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle" stroke="none">%s</text>`, marginL-tickLen-3, y, fmtTick(v, ystep))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" stroke="none">epoch</text>`, marginL+innerW/2, plotH-6)
	fmt.Fprintf(&b, `<text x="14" y="%d" text-anchor="middle" stroke="none" transform="rotate(-90 14 %d)">%s</text>`,
		marginT+innerH/2, marginT+innerH/2, html.EscapeString(pl.YLabel))
	b.WriteString(`</g>`)

	// Legend below the axes, inside the SVG, so a plot copied alone keeps
	// its key and no line is hidden behind it.
	if len(legend) > 0 {
		fmt.Fprintf(&b, `<g class="legend" font-size="11">`)
		for i, e := range legend {
			x := marginL + (i%legendCols)*legendColW
			y := plotH + 4 + (i/legendCols)*legendRowH + legendRowH/2
			dash := ""
			if e.Dash != "" {
				dash = ` stroke-dasharray="` + e.Dash + `"`
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, x, y, x+22, y, e.Color, dash)
			fmt.Fprintf(&b, `<text x="%d" y="%d" dominant-baseline="middle" fill="#333">%s</text>`, x+26, y, html.EscapeString(e.Label))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg></figure>`)
	return template.HTML(b.String())
}
