package discovery

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Reconciler lists a Source periodically and hands every successful
// listing to Apply, which diffs it against the running peers. A failed
// listing changes nothing: the last known good set stays in force, and the
// next attempt backs off exponentially with jitter.
type Reconciler struct {
	Source   Source
	Interval time.Duration                // between successful listings, ±10% jitter; default 60s
	Backoff  time.Duration                // first delay after a failure, doubling up to Interval; default 1s
	Timeout  time.Duration                // per listing; default 30s
	Apply    func(members []Member) error // called after each successful listing; an error keeps the running peers
	Logger   *slog.Logger
	Rand     func() float64 // in [0,1); default math/rand/v2

	poke chan struct{}
	once sync.Once

	mu     sync.Mutex
	status ReconcileStatus
}

// ReconcileStatus describes the reconciler's health.
type ReconcileStatus struct {
	Source              string
	LastSuccess         time.Time // zero before the first success
	LastAttempt         time.Time
	Successes           uint64
	Failures            uint64
	Throttled           uint64 // failures that were the API's rate limit
	ConsecutiveFailures int
	LastError           string
	NextAttempt         time.Time
}

func (r *Reconciler) init() {
	r.once.Do(func() {
		r.poke = make(chan struct{}, 1)
		if r.Interval <= 0 {
			r.Interval = 60 * time.Second
		}
		if r.Backoff <= 0 {
			r.Backoff = time.Second
		}
		if r.Timeout <= 0 {
			r.Timeout = 30 * time.Second
		}
		if r.Logger == nil {
			r.Logger = slog.Default()
		}
		if r.Rand == nil {
			r.Rand = rand.Float64
		}
		r.status.Source = r.Source.Name()
	})
}

// Poke asks for a listing now, as SIGHUP or a changed file does.
func (r *Reconciler) Poke() {
	r.init()
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// Status returns a snapshot of the reconciler's health.
func (r *Reconciler) Status() ReconcileStatus {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Once lists the source one time and applies the result. It returns the
// error of the listing or of Apply; either leaves the running peers alone.
func (r *Reconciler) Once(ctx context.Context) error {
	r.init()
	c, cancel := context.WithTimeout(ctx, r.Timeout)
	members, err := r.Source.Members(c)
	cancel()
	if err == nil {
		err = r.Apply(members)
	}
	now := time.Now()
	r.mu.Lock()
	r.status.LastAttempt = now
	if err != nil {
		r.status.Failures++
		r.status.ConsecutiveFailures++
		if IsThrottled(err) {
			r.status.Throttled++
		}
		r.status.LastError = err.Error()
	} else {
		r.status.Successes++
		r.status.ConsecutiveFailures = 0
		r.status.LastSuccess = now
		r.status.LastError = ""
	}
	r.mu.Unlock()
	return err
}

// SetInterval changes the interval at run time.
func (r *Reconciler) SetInterval(d time.Duration) {
	r.init()
	r.mu.Lock()
	r.Interval = d
	r.mu.Unlock()
}

// Delay returns how long to wait after a listing: the interval with ±10%
// jitter after a success, and after n consecutive failures a backoff of
// Backoff·2^(n-1), capped at Interval, of which a random half is waited.
func (r *Reconciler) Delay(consecutiveFailures int) time.Duration {
	r.init()
	r.mu.Lock()
	interval := r.Interval
	r.mu.Unlock()
	if consecutiveFailures == 0 {
		return time.Duration(float64(interval) * (0.9 + 0.2*r.Rand()))
	}
	d := r.Backoff
	for i := 1; i < consecutiveFailures && d < interval; i++ {
		d *= 2
	}
	d = min(d, interval)
	return time.Duration(float64(d) * (0.5 + 0.5*r.Rand()))
}

// Run lists and applies until ctx is done. The first listing happens at
// once.
func (r *Reconciler) Run(ctx context.Context) { r.run(ctx, true) }

// RunAfter is Run for a caller that has just listed with Once: the first
// listing comes after an interval, or at a Poke.
func (r *Reconciler) RunAfter(ctx context.Context) { r.run(ctx, false) }

func (r *Reconciler) run(ctx context.Context, now bool) {
	r.init()
	if !now && !r.wait(ctx, r.Delay(0)) {
		return
	}
	for {
		err := r.Once(ctx)
		st := r.Status()
		if err != nil && ctx.Err() == nil {
			r.Logger.Warn("discovery failed; keeping the current peers",
				"source", st.Source, "err", err, "failures_in_a_row", st.ConsecutiveFailures,
				"last_success_age", age(st.LastSuccess))
		}
		if !r.wait(ctx, r.Delay(st.ConsecutiveFailures)) {
			return
		}
	}
}

// wait sleeps for d or until a Poke; it reports false when ctx is done.
func (r *Reconciler) wait(ctx context.Context, d time.Duration) bool {
	r.mu.Lock()
	r.status.NextAttempt = time.Now().Add(d)
	r.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-r.poke:
	case <-t.C:
	}
	return true
}

func age(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String()
}
