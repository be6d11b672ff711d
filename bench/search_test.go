package bench

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// knee returns a measure function whose loss is zero up to capacity and
// grows beyond it, as a saturated path behaves.
func knee(capacity float64, calls *[]float64) func(float64) (float64, float64, error) {
	return func(rate float64) (float64, float64, error) {
		if calls != nil {
			*calls = append(*calls, rate)
		}
		offered := rate * 0.5 // half a second of traffic
		delivered := offered
		if rate > capacity {
			delivered = capacity * 0.5
		}
		return delivered, offered, nil
	}
}

func TestSearchRateMonotone(t *testing.T) {
	for _, capacity := range []float64{1000, 37000, 123456, 999} {
		var calls []float64
		cfg := SearchConfig{Start: 1000, Max: 1e6, Bisections: 4}
		res, err := SearchRate(cfg, knee(capacity, &calls))
		if err != nil {
			t.Fatal(err)
		}
		if res.Best > capacity {
			t.Errorf("capacity %v: best %v is above the capacity", capacity, res.Best)
		}
		// After the ramp the bracket is one doubling wide; four
		// bisections leave 1/16 of it.
		if res.Best < capacity*(1-1.0/16)-1 {
			t.Errorf("capacity %v: best %v is too low (steps %v)", capacity, res.Best, calls)
		}
		if res.BestStep < 0 || res.Steps[res.BestStep].Rate != res.Best || !res.Steps[res.BestStep].Pass {
			t.Errorf("capacity %v: BestStep %d does not point at a passing step at %v", capacity, res.BestStep, res.Best)
		}
		if len(res.Steps) != len(calls) {
			t.Errorf("%d steps recorded for %d calls", len(res.Steps), len(calls))
		}
		if len(calls) > 16 {
			t.Errorf("capacity %v: %d steps; want a short search", capacity, len(calls))
		}
	}
}

func TestSearchRateRampsDown(t *testing.T) {
	res, err := SearchRate(SearchConfig{Start: 10000, Bisections: 2}, knee(1500, nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Best > 1500 || res.Best < 1250 {
		t.Errorf("best %v; want in [1250, 1500] (steps %+v)", res.Best, res.Steps)
	}
	if res.Steps[0].Pass {
		t.Error("the first step should fail")
	}
}

func TestSearchRateCapped(t *testing.T) {
	var calls []float64
	res, err := SearchRate(SearchConfig{Start: 1000, Max: 5000}, knee(1e9, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if res.Best != 5000 {
		t.Errorf("best %v; want the cap 5000", res.Best)
	}
	if want := []float64{1000, 2000, 4000, 5000}; !slices.Equal(calls, want) {
		t.Errorf("rates %v; want %v", calls, want)
	}
}

func TestSearchRateNothingPasses(t *testing.T) {
	res, err := SearchRate(SearchConfig{Start: 1000, Min: 100}, func(float64) (float64, float64, error) {
		return 0, 10, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Best != 0 || res.BestStep != -1 {
		t.Errorf("best %v at %d; want 0 at -1", res.Best, res.BestStep)
	}
	for _, s := range res.Steps {
		if s.Rate < 100 {
			t.Errorf("tried %v, below Min", s.Rate)
		}
	}
}

// TestSearchRateNoisy: loss fluctuates around the knee (a little loss
// sometimes below it, sometimes none just above it); the search must still
// end near the knee, at a rate that passed.
func TestSearchRateNoisy(t *testing.T) {
	const capacity = 50000
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		measure := func(rate float64) (float64, float64, error) {
			offered := rate * 0.25
			// Below 80 % of capacity: clean. Near it: random loss
			// around the threshold. Above 120 %: heavy loss.
			var loss float64
			switch x := rate / capacity; {
			case x < 0.8:
				loss = 0
			case x > 1.2:
				loss = 0.05 + rng.Float64()*0.1
			default:
				loss = math.Max(0, (x-1)*0.01+(rng.Float64()-0.5)*0.002)
			}
			return offered * (1 - loss), offered, nil
		}
		res, err := SearchRate(SearchConfig{Start: 2000, Max: 1e6, Bisections: 5}, measure)
		if err != nil {
			t.Fatal(err)
		}
		if res.Best < 0.75*capacity || res.Best > 1.2*capacity {
			t.Errorf("seed %d: best %v; want within [0.75, 1.2] of %v", seed, res.Best, capacity)
		}
		if !res.Steps[res.BestStep].Pass {
			t.Errorf("seed %d: the best step did not pass", seed)
		}
	}
}

func TestSearchRateError(t *testing.T) {
	boom := errors.New("boom")
	n := 0
	res, err := SearchRate(SearchConfig{Start: 1000}, func(rate float64) (float64, float64, error) {
		n++
		if n == 3 {
			return 0, 0, boom
		}
		return rate, rate, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v; want boom", err)
	}
	if len(res.Steps) != 2 || res.Best != 2000 {
		t.Errorf("steps %+v best %v; want the two steps before the error", res.Steps, res.Best)
	}
}

func TestSearchRateBadConfig(t *testing.T) {
	if _, err := SearchRate(SearchConfig{}, knee(1, nil)); err == nil {
		t.Error("no error for a zero start rate")
	}
	if _, err := SearchRate(SearchConfig{Start: 1}, nil); err == nil {
		t.Error("no error for a nil measure function")
	}
}

func TestLoss(t *testing.T) {
	for _, c := range []struct{ d, o, want float64 }{
		{100, 100, 0}, {99, 100, 0.01}, {0, 0, 1}, {110, 100, 0}, {0, 100, 1},
	} {
		if got := Loss(c.d, c.o); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Loss(%v, %v) = %v; want %v", c.d, c.o, got, c.want)
		}
	}
}

func TestSearchRateCeiling(t *testing.T) {
	// The sender cannot offer more than 150000: asked for more, it
	// offers that, without loss, and says so.
	var calls []float64
	res, err := SearchRate(SearchConfig{Start: 20000, Max: 1e6}, func(rate float64) (float64, float64, error) {
		calls = append(calls, rate)
		if rate > 150000 {
			return 150000, 150000, ErrCeiling
		}
		return rate, rate, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{20000, 40000, 80000, 160000}; !slices.Equal(calls, want) {
		t.Errorf("rates %v; want %v (stop at the ceiling)", calls, want)
	}
	if res.Best != 160000 || res.BestStep != 3 {
		t.Errorf("best %v at %d; want 160000 at 3", res.Best, res.BestStep)
	}
	// A ceiling with loss is an ordinary failure: bisect below it.
	res, err = SearchRate(SearchConfig{Start: 20000, Max: 1e6, Bisections: 2}, func(rate float64) (float64, float64, error) {
		if rate > 50000 {
			return 40000, 50000, ErrCeiling
		}
		return rate, rate, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Best != 50000 || len(res.Steps) != 5 {
		t.Errorf("best %v after %d steps; want 50000 after 5: %+v", res.Best, len(res.Steps), res.Steps)
	}
}

// TestTallyIngress: the source measure's loss counts each subscriber for
// at most the datagrams sent, so duplicates at one do not hide what another
// missed, and late copies do not count as on time.
func TestTallyIngress(t *testing.T) {
	// 1000 datagrams sent: the first subscriber counts each twice, the
	// second each once, and 200 more late.
	c0 := []ingressCount{{100, 10000}, {50, 5000}}
	c1 := []ingressCount{{100 + 2000, 10000 + 2000*142}, {50 + 1000, 5000 + 1000*142}}
	c2 := []ingressCount{{100 + 2000, 10000 + 2000*142}, {50 + 1200, 5000 + 1200*142}}
	var s Sample
	tallyIngress(&s, 1000, c0, c1, c2)
	if s.Sent != 1000 || s.OnTime != 3000 || s.Delivered != 3200 || !slices.Equal(s.PerApp, []uint64{2000, 1200}) || s.IngressBytes != 3200*142 {
		t.Errorf("tally %+v", s)
	}
	// The first counts for 1000: 2000 of 2000.
	if s.Loss != 0 {
		t.Errorf("loss %v; want 0 (1000 + 1000 of 2000)", s.Loss)
	}
	// The second misses half: 1500 of 2000, though 2500 copies came.
	c1[1].packets = 50 + 500
	tallyIngress(&s, 1000, c0, c1, c2)
	if math.Abs(s.Loss-0.25) > 1e-12 {
		t.Errorf("loss %v; want 0.25: the duplicates at the first must not hide the second's 500 missing", s.Loss)
	}
	tallyIngress(&s, 0, c0, c0, c0)
	if s.Loss != 1 {
		t.Errorf("nothing sent: loss %v; want 1", s.Loss)
	}
}

// TestSearchRateCapacityThreshold: the source and receiver measures pass a
// step at less than 0.5 % loss, the e2e measure at less than 0.1 %.
func TestSearchRateCapacityThreshold(t *testing.T) {
	measure := func(rate float64) (float64, float64, error) {
		loss := 0.0
		switch {
		case rate > 80000:
			loss = 0.05
		case rate > 40000:
			loss = 0.003 // between the two thresholds
		}
		return rate * (1 - loss), rate, nil
	}
	capacity, err := SearchRate(SearchConfig{Start: 10000, Max: 1e6, Bisections: 3, LossThreshold: 0.005}, measure)
	if err != nil {
		t.Fatal(err)
	}
	e2e, err := SearchRate(SearchConfig{Start: 10000, Max: 1e6, Bisections: 3, LossThreshold: 0.001}, measure)
	if err != nil {
		t.Fatal(err)
	}
	if capacity.Best < 70000 || capacity.Best > 80000 || e2e.Best < 35000 || e2e.Best > 40000 {
		t.Errorf("best %v at 0.5%% and %v at 0.1%%; want about 80000 and 40000", capacity.Best, e2e.Best)
	}
}
