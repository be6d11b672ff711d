package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The chart's geometry.
const (
	panelWidth  = 9 * vg.Centimeter
	panelHeight = 7 * vg.Centimeter
	legendGap   = 5 * vg.Millimeter // between the panels and the legend
	legendTop   = 9 * vg.Millimeter // from the top, about where the first panel's data starts
)

// WriteChart draws copies per second against fanout into prefix+".png" and
// prefix+".svg", and returns the two file names. There is one panel per
// encapsulation (a row each) and payload size (a column each), all on one
// y scale so that panels compare at a glance, with one line per path in
// the same colour and marker in every panel. The legend stands to the
// right of the panels, so it never hides a line; a path marked * was
// sender-limited in some case (it may go faster). Results without a
// measurement are left out; with none at all WriteChart returns an error.
func WriteChart(prefix string, results []Result) ([]string, error) {
	var encaps, paths []string
	var payloads, fanouts []int
	top := 0.0
	limited := map[string]bool{}
	for _, r := range results {
		if r.Rounds == 0 {
			continue
		}
		encaps, paths = appendNew(encaps, r.Encap), appendNew(paths, r.Path)
		payloads, fanouts = appendNew(payloads, r.Payload), appendNew(fanouts, r.Fanout)
		top = max(top, r.CopiesPerSec)
		limited[r.Path] = limited[r.Path] || r.SenderLimited
	}
	if len(payloads) == 0 {
		return nil, errors.New("bench: no results to chart")
	}
	slices.SortFunc(encaps, func(a, b string) int { return cmp.Or(cmp.Compare(encapRank(a), encapRank(b)), cmp.Compare(a, b)) })
	slices.SortFunc(paths, comparePaths)
	slices.Sort(payloads)
	slices.Sort(fanouts)
	if top <= 0 {
		top = 1
	}

	plots := make([][]*plot.Plot, len(encaps))
	for i, encap := range encaps {
		for j, payload := range payloads {
			p, err := chartPanel(encap, payload, results, fanouts, top*1.05)
			if err != nil {
				return nil, err
			}
			if j == 0 {
				p.Y.Label.Text = "copies/s at < 0.1% loss"
			}
			if i == len(encaps)-1 {
				p.X.Label.Text = "fanout (subscribers)"
			}
			plots[i] = append(plots[i], p)
		}
	}

	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.Padding = 2 * vg.Millimeter
	for _, path := range paths {
		line, dots := pathStyle(path, plotter.XYs{{X: 0, Y: 0}})
		name := path
		if limited[path] {
			name += "*"
		}
		legend.Add(name, line, dots)
	}
	note := ""
	if slices.ContainsFunc(paths, func(p string) bool { return limited[p] }) {
		note = "* sender-limited: may go faster"
	}
	noteStyle := legend.TextStyle
	noteStyle.Font.Size = vg.Points(9)
	lr := legend.Rectangle(draw.Canvas{})
	legendW := lr.Max.X - lr.Min.X
	if note != "" {
		legendW = max(legendW, noteStyle.Rectangle(note).Max.X)
	}

	w := vg.Length(len(payloads))*panelWidth + legendGap + legendW + 2*vg.Millimeter
	h := vg.Length(len(encaps)) * panelHeight
	drawAll := func(c vg.CanvasSizer) {
		dc := draw.New(c)
		panels := draw.Crop(dc, 0, -(legendGap + legendW + 2*vg.Millimeter), 0, 0)
		tiles := draw.Tiles{Rows: len(encaps), Cols: len(payloads), PadX: 8 * vg.Millimeter, PadY: 6 * vg.Millimeter,
			PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
		canvases := plot.Align(plots, tiles, panels)
		for i := range plots {
			for j, p := range plots[i] {
				p.Draw(canvases[i][j])
			}
		}
		lc := draw.Crop(dc, panels.Max.X-dc.Min.X+legendGap, 0, 0, -legendTop)
		legend.Draw(lc)
		if note != "" {
			lh := lr.Max.Y - lr.Min.Y
			lc.FillText(noteStyle, vg.Point{X: lc.Min.X, Y: lc.Max.Y - lh - legend.Padding - noteStyle.Rectangle(note).Max.Y}, note)
		}
	}

	img := vgimg.New(w, h)
	drawAll(img)
	svg := vgsvg.New(w, h)
	drawAll(svg)
	files := []string{prefix + ".png", prefix + ".svg"}
	if err := writeTo(files[0], vgimg.PngCanvas{Canvas: img}); err != nil {
		return nil, err
	}
	if err := writeTo(files[1], svg); err != nil {
		return nil, err
	}
	return files, nil
}

// chartPanel draws one encapsulation and payload size: a line per path
// against fanout, on a y axis from 0 to ymax.
func chartPanel(encap string, payload int, results []Result, fanouts []int, ymax float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, payload %d bytes", strings.ToUpper(encap), payload)
	p.Y.Min, p.Y.Max = 0, ymax
	p.Y.Tick.Marker = siTicks{}
	var ticks []plot.Tick
	for _, f := range fanouts {
		ticks = append(ticks, plot.Tick{Value: float64(f), Label: strconv.Itoa(f)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	if lo, hi := float64(fanouts[0]), float64(fanouts[len(fanouts)-1]); lo < hi {
		// The grid doubles or quadruples the fanout: on a log axis its
		// steps are evenly spaced.
		p.X.Scale = plot.LogScale{}
		p.X.Min, p.X.Max = lo/1.2, hi*1.2
	}
	p.Add(plotter.NewGrid())

	points := map[string]plotter.XYs{}
	var paths []string
	for _, r := range results {
		if r.Encap != encap || r.Payload != payload || r.Rounds == 0 {
			continue
		}
		paths = appendNew(paths, r.Path)
		points[r.Path] = append(points[r.Path], plotter.XY{X: float64(r.Fanout), Y: r.CopiesPerSec})
	}
	slices.SortFunc(paths, comparePaths)
	for _, path := range paths {
		xys := points[path]
		slices.SortFunc(xys, func(a, b plotter.XY) int { return int(a.X - b.X) })
		line, dots := pathStyle(path, xys)
		if line == nil {
			return nil, fmt.Errorf("bench: chart: %s %s payload %d: bad points %v", path, encap, payload, xys)
		}
		p.Add(line, dots)
	}
	return p, nil
}

// pathStyle returns the line and markers of path through xys, in the
// colour, dashes and marker that path has in every panel and the legend;
// nil if xys holds a NaN or an infinity.
func pathStyle(path string, xys plotter.XYs) (*plotter.Line, *plotter.Scatter) {
	line, dots, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, nil
	}
	i := pathRank(path)
	c := plotutil.Color(i)
	line.Color = c
	line.Width = vg.Points(1.5)
	line.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
	dots.Color = c
	dots.Shape = plotutil.Shape(i)
	dots.Radius = vg.Points(3)
	return line, dots
}

// siTicks are gonum's default ticks labelled like the table: 500k, 1.2M.
type siTicks struct{}

// Ticks implements plot.Ticker.
func (siTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = siTick(t.Value)
		}
	}
	return ticks
}

// siTick formats an axis value with a k or M suffix and no trailing
// zeros: 0, 250k, 1.25M.
func siTick(x float64) string {
	suffix := ""
	switch ax := max(x, -x); {
	case ax >= 1e6:
		x, suffix = x/1e6, "M"
	case ax >= 1e3:
		x, suffix = x/1e3, "k"
	}
	// Four significant digits hide the float error of the tick steps
	// (300000.00000000006) and keep a step such as 1.125M.
	return strconv.FormatFloat(x, 'g', 4, 64) + suffix
}

func comparePaths(a, b string) int {
	return cmp.Or(cmp.Compare(pathRank(a), pathRank(b)), cmp.Compare(a, b))
}

// encapRank orders the encapsulations as the default grid does.
func encapRank(e string) int {
	if i := slices.Index(defaultEncaps, e); i >= 0 {
		return i
	}
	return len(defaultEncaps)
}

func appendNew[T comparable](s []T, v T) []T {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func writeTo(name string, wt io.WriterTo) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: chart %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	return nil
}
