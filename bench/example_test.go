package bench_test

import (
	"context"
	"fmt"
	"os"

	"github.com/meshcast/meshcast/bench"
)

// SearchRate needs only a function that offers a rate and reports what
// arrived: here a path that loses everything above 30000 datagrams/s.
func ExampleSearchRate() {
	measure := func(rate float64) (delivered, offered float64, err error) {
		offered = rate / 4 // a quarter of a second
		delivered = min(rate, 30000) / 4
		return delivered, offered, nil
	}
	res, err := bench.SearchRate(bench.SearchConfig{Start: 5000, Max: 1e6, Bisections: 4}, measure)
	if err != nil {
		panic(err)
	}
	fmt.Printf("best %.0f after %d steps\n", res.Best, len(res.Steps))
	// Output: best 30000 after 8 steps
}

// A short run on two fanouts, as `meshcast-bench --quick` does (root).
func ExampleRun() {
	opts := bench.Options{
		Binary:    "/usr/local/bin/meshcast",
		Quick:     true,
		JSONPath:  "bench.json",
		ChartPath: "bench-copies",
	}
	rep, err := bench.Run(context.Background(), opts, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for _, r := range rep.Results {
		fmt.Printf("%v %s: %.0f copies/s\n", r.Case, r.Path, r.CopiesPerSec)
	}
}
