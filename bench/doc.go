// Package bench will hold meshcast's throughput harness, which runs the
// kernel path and the userspace path side by side in network namespaces.
// Until it lands, `make bench` runs the Go micro-benchmarks of the codecs
// and the forwarding engine.
package bench
