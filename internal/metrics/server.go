package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves a registry over HTTP. Its methods are safe for concurrent
// use.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when the serving goroutine returns
}

// Serve listens on addr and serves reg at /metrics, with a small page at /
// that links to it, until Close.
//
// Bind addr to loopback, such as 127.0.0.1:9977, and let a local agent
// scrape it: the metrics reveal the community's topology, every peer's
// underlay address and every group. Port 0 picks a free port; Addr reports
// it.
//
// A metric that fails to build is left out of the scrape and counted in
// promhttp_metric_handler_errors_total, which Serve registers in reg.
func Serve(addr string, reg *prometheus.Registry) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ServeListener(ln, reg), nil
}

// ServeFile serves reg on a listening socket handed over by the daemon
// that served it before, so that scrapes find it throughout.
func ServeFile(f *os.File, reg *prometheus.Registry) (*Server, error) {
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("metrics: handed-over listener: %w", err)
	}
	return ServeListener(ln, reg), nil
}

// ServeListener serves reg on ln, as Serve does.
func ServeListener(ln net.Listener, reg *prometheus.Registry) *Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
		Timeout:       30 * time.Second,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, indexPage)
	})
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       2 * time.Minute,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return s
}

const indexPage = `<!DOCTYPE html>
<html><head><title>meshcast</title></head>
<body><h1>meshcast</h1><p><a href="/metrics">Metrics</a></p></body>
</html>
`

// Listener returns the listening socket, to hand over to a successor.
func (s *Server) Listener() syscall.RawConn {
	sc, ok := s.ln.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Addr returns the address the server listens on, such as 127.0.0.1:9977.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening, closes every connection and waits for the serving
// goroutine to return. Scrapes in progress are cut off.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
