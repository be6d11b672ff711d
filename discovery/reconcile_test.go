package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type scripted struct {
	results []error
	calls   int
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) Members(context.Context) ([]Member, error) {
	i := s.calls
	s.calls++
	if i < len(s.results) && s.results[i] != nil {
		return nil, s.results[i]
	}
	return []Member{{ID: "a", Community: "demo", Underlay: netip.MustParseAddr("198.18.0.1"),
		Overlay: netip.MustParsePrefix("198.19.0.1/24")}}, nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestReconcilerKeepsPeersOnFailure(t *testing.T) {
	src := &scripted{results: []error{nil, errors.New("boom"), errors.New("boom"), nil}}
	applied := 0
	r := &Reconciler{Source: src, Logger: quiet(), Apply: func([]Member) error { applied++; return nil }}
	for i := 0; i < 4; i++ {
		r.Once(context.Background())
	}
	st := r.Status()
	if applied != 2 || st.Successes != 2 || st.Failures != 2 || st.ConsecutiveFailures != 0 || st.LastSuccess.IsZero() {
		t.Fatalf("applied %d, status %+v", applied, st)
	}
	// An Apply error counts as a failure too and keeps the last set.
	r.Apply = func([]Member) error { return errors.New("inconsistent") }
	if err := r.Once(context.Background()); err == nil || r.Status().ConsecutiveFailures != 1 {
		t.Fatalf("apply error not reported: %v %+v", err, r.Status())
	}
}

func TestReconcilerDelay(t *testing.T) {
	for _, rnd := range []float64{0, 0.5, 0.999} {
		r := &Reconciler{Source: &scripted{}, Interval: 60 * time.Second, Backoff: time.Second, Rand: func() float64 { return rnd }}
		// Success: the interval within ±10%.
		if d := r.Delay(0); d < 54*time.Second || d > 66*time.Second {
			t.Errorf("rand %v: success delay %v outside 60s ±10%%", rnd, d)
		}
		// Failures: exponential, capped at the interval, jittered in [d/2, d].
		prevMax := time.Duration(0)
		for n := 1; n <= 10; n++ {
			full := min(time.Second<<(n-1), 60*time.Second)
			d := r.Delay(n)
			if d < full/2 || d > full {
				t.Errorf("rand %v, %d failures: %v outside [%v, %v]", rnd, n, d, full/2, full)
			}
			if full < prevMax {
				t.Errorf("backoff shrank")
			}
			prevMax = full
		}
	}
}

func TestReconcilerPoke(t *testing.T) {
	src := &scripted{}
	done := make(chan struct{}, 8)
	r := &Reconciler{Source: src, Interval: time.Hour, Logger: quiet(), Apply: func([]Member) error { done <- struct{}{}; return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	<-done
	r.Poke()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Poke did not cause a listing")
	}
}

func TestStaticChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers")
	os.WriteFile(path, []byte("198.18.0.1 demo,198.19.0.1/24\n"), 0o644)
	s := &Static{Path: path}
	if _, err := s.Members(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Changed() {
		t.Fatal("unchanged file reported changed")
	}
	os.WriteFile(path, []byte("198.18.0.1 demo,198.19.0.1/24\n198.18.0.2 demo,198.19.0.2/24\n"), 0o644)
	if !s.Changed() {
		t.Fatal("changed file not noticed")
	}
	m, err := s.Members(context.Background())
	if err != nil || len(m) != 2 || s.Changed() {
		t.Fatalf("members %v err %v", m, err)
	}
	// Replaced by a new file (rename, as editors do): a new inode.
	tmp := path + ".new"
	os.WriteFile(tmp, []byte("198.18.0.1 demo,198.19.0.1/24\n198.18.0.3 demo,198.19.0.3/24\n"), 0o644)
	os.Rename(tmp, path)
	if !s.Changed() {
		t.Fatal("replaced file not noticed")
	}
}

// TestStaticConcurrent: the reconciler lists the file (Members) while the
// daemon's file watcher polls it (Changed), each on its own goroutine; the
// race detector (make test runs it) fails this test if they share the
// stamp unguarded, as they once did.
func TestStaticConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers")
	os.WriteFile(path, []byte("198.18.0.1 demo,198.19.0.1/24\n"), 0o644)
	s := &Static{Path: path}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 200 {
			if _, err := s.Members(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			s.Changed()
		}
	}()
	wg.Wait()
	if s.Changed() {
		t.Error("unchanged file reported changed")
	}
}

func TestReconcilerRunAfterWaitsForPoke(t *testing.T) {
	done := make(chan struct{}, 8)
	r := &Reconciler{Source: &scripted{}, Interval: time.Hour, Logger: quiet(), Apply: func([]Member) error { done <- struct{}{}; return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.RunAfter(ctx)
	// RunAfter sets NextAttempt when it starts to wait: a listing at once
	// would come before that, so once it is set, nothing listed means it
	// did not list at once.
	deadline := time.Now().Add(5 * time.Second)
	for r.Status().NextAttempt.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("RunAfter never started to wait")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("RunAfter listed at once")
	default:
	}
	if st := r.Status(); st.Successes+st.Failures != 0 || time.Until(st.NextAttempt) < 50*time.Minute {
		t.Fatalf("RunAfter before a Poke: %+v, want no listing and the next one an interval away", st)
	}
	r.Poke()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Poke did not cause a listing")
	}
}
