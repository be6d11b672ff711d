package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WriteChart draws copies per second against fanout, one line per path and
// encapsulation and one panel per payload size, into prefix+".png" and
// prefix+".svg". It returns the two file names. Results without a
// measurement are left out; with none at all it returns an error.
func WriteChart(prefix string, results []Result) ([]string, error) {
	var payloads []int
	for _, r := range results {
		if r.Rounds > 0 && !slices.Contains(payloads, r.Payload) {
			payloads = append(payloads, r.Payload)
		}
	}
	if len(payloads) == 0 {
		return nil, errors.New("bench: no results to chart")
	}
	slices.Sort(payloads)
	plots := make([][]*plot.Plot, 1)
	for _, payload := range payloads {
		p, err := chartPanel(payload, results)
		if err != nil {
			return nil, err
		}
		plots[0] = append(plots[0], p)
	}

	w := vg.Length(len(payloads)) * 11 * vg.Centimeter
	h := 10 * vg.Centimeter
	draw1 := func(c vg.CanvasSizer) {
		dc := draw.New(c)
		tiles := draw.Tiles{Rows: 1, Cols: len(payloads), PadX: vg.Centimeter,
			PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
		canvases := plot.Align(plots, tiles, dc)
		for i, p := range plots[0] {
			p.Draw(canvases[0][i])
		}
	}

	img := vgimg.New(w, h)
	draw1(img)
	svg := vgsvg.New(w, h)
	draw1(svg)
	files := []string{prefix + ".png", prefix + ".svg"}
	if err := writeTo(files[0], vgimg.PngCanvas{Canvas: img}); err != nil {
		return nil, err
	}
	if err := writeTo(files[1], svg); err != nil {
		return nil, err
	}
	return files, nil
}

func chartPanel(payload int, results []Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("payload %d bytes", payload)
	p.X.Label.Text = "fanout (subscribers)"
	p.Y.Label.Text = "copies/s at < 0.1% loss"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())

	type series struct{ path, encap string }
	var order []series
	points := map[series]plotter.XYs{}
	for _, r := range results {
		if r.Payload != payload || r.Rounds == 0 {
			continue
		}
		s := series{r.Path, r.Encap}
		if _, ok := points[s]; !ok {
			order = append(order, s)
		}
		points[s] = append(points[s], plotter.XY{X: float64(r.Fanout), Y: r.CopiesPerSec})
	}
	slices.SortStableFunc(order, func(a, b series) int {
		return cmp.Or(cmp.Compare(pathRank(a.path), pathRank(b.path)), cmp.Compare(b.encap, a.encap))
	})
	var fanouts []float64
	top := 0.0
	for i, s := range order {
		xys := points[s]
		slices.SortFunc(xys, func(a, b plotter.XY) int { return int(a.X - b.X) })
		line, dots, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("bench: chart: %w", err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		dots.Color = plotutil.Color(i)
		dots.Shape = plotutil.Shape(i)
		p.Add(line, dots)
		p.Legend.Add(s.path+" / "+s.encap, line, dots)
		for _, xy := range xys {
			top = max(top, xy.Y)
			if !slices.Contains(fanouts, xy.X) {
				fanouts = append(fanouts, xy.X)
			}
		}
	}
	p.Y.Max = top * 1.25 // room for the legend
	slices.Sort(fanouts)
	var ticks []plot.Tick
	for _, f := range fanouts {
		ticks = append(ticks, plot.Tick{Value: f, Label: fmt.Sprint(f)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	return p, nil
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
