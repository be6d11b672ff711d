package metrics_test

import (
	"log"

	"github.com/meshcast/meshcast/internal/control"
	"github.com/meshcast/meshcast/internal/metrics"
)

// The daemon hands New the same snapshot function that serves `meshcast
// status`, and serves the registry on loopback.
func ExampleServe() {
	state := func() control.State {
		return control.State{Community: "demo", Encap: "gre", TAP: "mcbr-demo"}
	}
	srv, err := metrics.Serve("127.0.0.1:9977", metrics.New(state, "v1.0.0"))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	// Prometheus, or curl, reads http://127.0.0.1:9977/metrics.
}
