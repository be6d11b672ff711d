package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
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

// A chartSection is a set of panel rows: one measure, or the deployment
// estimate.
type chartSection struct {
	name   string // a measure, or "estimate"
	ylabel string
	title  string // before the encapsulation and payload; "" for e2e
	log    bool   // a logarithmic y axis
	// points[encap][payload][path]
	points map[string]map[int]map[string]plotter.XYs
	lo, hi float64 // the smallest and largest y
}

func (s *chartSection) add(encap string, payload int, path string, x, y float64) {
	if s.points == nil {
		s.points = map[string]map[int]map[string]plotter.XYs{}
	}
	if s.points[encap] == nil {
		s.points[encap] = map[int]map[string]plotter.XYs{}
	}
	if s.points[encap][payload] == nil {
		s.points[encap][payload] = map[string]plotter.XYs{}
	}
	s.points[encap][payload][path] = append(s.points[encap][payload][path], plotter.XY{X: x, Y: y})
	if s.lo == 0 || y < s.lo {
		s.lo = y
	}
	s.hi = max(s.hi, y)
}

// WriteChart draws the results into prefix+".png" and prefix+".svg", and
// returns the two file names. It has a set of panels for each of: the e2e
// measure (copies per second at the applications against fanout), the
// source measure (copies per second at the receivers' ingress against
// fanout) and, with source and receiver results, the deployment estimate
// (the ceiling of one stream in datagrams per second against fanout, on a
// logarithmic axis, since it falls with the fanout). Each set has a row
// per encapsulation and a column per payload size, all on one y scale, so
// that its panels compare at a glance; every path has one colour and
// marker in every panel (the better-kernel rows are not drawn: they repeat
// a kernel shape). The legend stands to the right of the panels, so it
// never hides a line; a path marked * was sender-limited in some case (it
// may go faster). Results without a measurement are left out; with none at
// all WriteChart returns an error.
func WriteChart(prefix string, results []Result) ([]string, error) {
	sections := []*chartSection{
		{name: MeasureE2E, ylabel: "copies/s at < 0.1% loss"},
		{name: MeasureSource, ylabel: "source copies/s at < 0.5% loss", title: "source: "},
		{name: "estimate", ylabel: "ceiling, datagrams/s", title: "one stream: ", log: true},
	}
	var encaps, paths []string
	var payloads, fanouts []int
	limited := map[string]bool{}
	note := func(encap string, payload, fanout int, path string, senderLimited bool) {
		encaps, paths = appendNew(encaps, encap), appendNew(paths, path)
		payloads, fanouts = appendNew(payloads, payload), appendNew(fanouts, fanout)
		limited[path] = limited[path] || senderLimited
	}
	for _, r := range results {
		if r.Rounds == 0 || r.Path == PathKernel {
			continue
		}
		var sec *chartSection
		switch measureOf(r.Case) {
		case MeasureE2E:
			sec = sections[0]
		case MeasureSource:
			sec = sections[1]
		default:
			continue
		}
		note(r.Encap, r.Payload, r.Fanout, r.Path, r.SenderLimited)
		sec.add(r.Encap, r.Payload, r.Path, float64(r.Fanout), r.CopiesPerSec)
	}
	for _, e := range Estimates(results) {
		if e.Ceiling > 0 && e.Path != PathKernel {
			note(e.Encap, e.Payload, e.Fanout, e.Path, e.SourceLimited || e.ReceiverLimited)
			sections[2].add(e.Encap, e.Payload, e.Path, float64(e.Fanout), e.Ceiling)
		}
	}
	if len(payloads) == 0 {
		return nil, errors.New("bench: no results to chart")
	}
	slices.SortFunc(encaps, func(a, b string) int { return cmp.Or(cmp.Compare(encapRank(a), encapRank(b)), cmp.Compare(a, b)) })
	slices.SortFunc(paths, comparePaths)
	slices.Sort(payloads)
	slices.Sort(fanouts)

	var plots [][]*plot.Plot
	for _, sec := range sections {
		for _, encap := range encaps {
			if sec.points[encap] == nil {
				continue
			}
			var row []*plot.Plot
			for j, payload := range payloads {
				p, err := chartPanel(sec, encap, payload, fanouts)
				if err != nil {
					return nil, err
				}
				if j == 0 {
					p.Y.Label.Text = sec.ylabel
				}
				row = append(row, p)
			}
			plots = append(plots, row)
		}
	}
	for _, p := range plots[len(plots)-1] {
		p.X.Label.Text = "fanout (subscribers)"
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
	note2 := ""
	if slices.ContainsFunc(paths, func(p string) bool { return limited[p] }) {
		note2 = "* sender-limited: may go faster"
	}
	noteStyle := legend.TextStyle
	noteStyle.Font.Size = vg.Points(9)
	lr := legend.Rectangle(draw.Canvas{})
	legendW := lr.Max.X - lr.Min.X
	if note2 != "" {
		legendW = max(legendW, noteStyle.Rectangle(note2).Max.X)
	}

	w := vg.Length(len(payloads))*panelWidth + legendGap + legendW + 2*vg.Millimeter
	h := vg.Length(len(plots)) * panelHeight
	drawAll := func(c vg.CanvasSizer) {
		dc := draw.New(c)
		panels := draw.Crop(dc, 0, -(legendGap + legendW + 2*vg.Millimeter), 0, 0)
		tiles := draw.Tiles{Rows: len(plots), Cols: len(payloads), PadX: 8 * vg.Millimeter, PadY: 6 * vg.Millimeter,
			PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
		canvases := plot.Align(plots, tiles, panels)
		for i := range plots {
			for j, p := range plots[i] {
				p.Draw(canvases[i][j])
			}
		}
		lc := draw.Crop(dc, panels.Max.X-dc.Min.X+legendGap, 0, 0, -legendTop)
		legend.Draw(lc)
		if note2 != "" {
			lh := lr.Max.Y - lr.Min.Y
			lc.FillText(noteStyle, vg.Point{X: lc.Min.X, Y: lc.Max.Y - lh - legend.Padding - noteStyle.Rectangle(note2).Max.Y}, note2)
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

// chartPanel draws one encapsulation and payload size of a section: a line
// per path against fanout, on the section's y scale.
func chartPanel(sec *chartSection, encap string, payload int, fanouts []int) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s%s, payload %d bytes", sec.title, strings.ToUpper(encap), payload)
	if sec.log {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = siLogTicks{}
		p.Y.Min, p.Y.Max = sec.lo/1.5, sec.hi*1.5
	} else {
		p.Y.Min, p.Y.Max = 0, max(sec.hi, 1)*1.05
		p.Y.Tick.Marker = siTicks{}
	}
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

	points := sec.points[encap][payload]
	var paths []string
	for path := range points {
		paths = append(paths, path)
	}
	slices.SortFunc(paths, comparePaths)
	for _, path := range paths {
		xys := points[path]
		slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
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

// siLogTicks are ticks for a logarithmic axis labelled like the table: a
// labelled tick at 1, 2 and 5 times each power of ten, an unlabelled one at
// the other multiples.
type siLogTicks struct{}

// Ticks implements plot.Ticker.
func (siLogTicks) Ticks(min, max float64) []plot.Tick {
	if !(min > 0) || !(max > min) {
		return nil
	}
	var ticks []plot.Tick
	for p := math.Pow(10, math.Floor(math.Log10(min))); p <= max; p *= 10 {
		for k := 1; k <= 9; k++ {
			v := float64(k) * p
			if v < min || v > max {
				continue
			}
			t := plot.Tick{Value: v}
			if k == 1 || k == 2 || k == 5 {
				t.Label = siTick(v)
			}
			ticks = append(ticks, t)
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
