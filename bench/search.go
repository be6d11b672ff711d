package bench

import (
	"errors"
	"fmt"
	"math"
)

// SearchConfig bounds the search for the highest rate without loss. Rates
// are in any unit the measure function understands (the harness uses
// datagrams per second offered by the source).
type SearchConfig struct {
	// Start is the first rate tried; it must be positive.
	Start float64
	// Max caps the ramp: a pass at Max ends the search there; default
	// Start*2^20.
	Max float64
	// Min is the lowest rate tried when Start already fails; default
	// Start/64.
	Min float64
	// Factor multiplies the rate at each ramp step; default 2.
	Factor float64
	// Bisections is the number of steps between the last passing and the
	// first failing rate after the ramp; default 3.
	Bisections int
	// LossThreshold: a step passes when its loss is below it; default
	// 0.001 (0.1 %).
	LossThreshold float64
}

func (c SearchConfig) withDefaults() (SearchConfig, error) {
	if !(c.Start > 0) || math.IsInf(c.Start, 0) {
		return c, fmt.Errorf("bench: search start rate %v must be positive", c.Start)
	}
	if c.Max <= 0 {
		c.Max = c.Start * (1 << 20)
	}
	if c.Max < c.Start {
		c.Max = c.Start
	}
	if c.Min <= 0 || c.Min > c.Start {
		c.Min = c.Start / 64
	}
	if c.Factor <= 1 {
		c.Factor = 2
	}
	if c.Bisections < 0 {
		c.Bisections = 0
	} else if c.Bisections == 0 {
		c.Bisections = 3
	}
	if c.LossThreshold <= 0 {
		c.LossThreshold = 0.001
	}
	return c, nil
}

// A Step is one measurement of a search.
type Step struct {
	Rate      float64 `json:"rate"`      // the rate asked for
	Delivered float64 `json:"delivered"` // what the measure function reported
	Offered   float64 `json:"offered"`
	Loss      float64 `json:"loss"` // 1 - Delivered/Offered, at least 0; 1 when nothing was offered
	Pass      bool    `json:"pass"` // Loss < LossThreshold
}

// SearchResult is the outcome of SearchRate.
type SearchResult struct {
	// Best is the highest rate that passed, bounded by the bisections; 0
	// if no rate passed.
	Best float64
	// BestStep is the index in Steps of the measurement at Best, or -1.
	BestStep int
	// Steps are all measurements, in order.
	Steps []Step
}

// ErrCeiling is returned by a measure function, together with valid
// figures, when the rate asked for could not be offered (the sender is the
// bottleneck): SearchRate records the step and, if it passed, stops there,
// since higher rates cannot be offered either.
var ErrCeiling = errors.New("bench: the offered rate cannot go higher")

// Loss returns the loss fraction of delivered out of offered: 0 when
// everything (or more, with duplicates) arrived, 1 when nothing was offered.
func Loss(delivered, offered float64) float64 {
	if !(offered > 0) {
		return 1
	}
	l := 1 - delivered/offered
	if l < 0 {
		return 0
	}
	return l
}

// SearchRate finds the highest rate at which measure reports a loss below
// cfg.LossThreshold. It ramps up from cfg.Start by cfg.Factor until a step
// fails or cfg.Max passes (ramping down to cfg.Min instead if cfg.Start
// fails), then bisects between the last pass and the first failure
// cfg.Bisections times. A passing step whose measure returned ErrCeiling
// ends the search. It assumes loss grows with the rate; with noisy
// measurements it still ends at a rate that passed once. measure is called
// once per step with the rate to offer and returns what was delivered and
// what was offered (in any common unit, such as datagrams). An error from
// measure ends the search and is returned with the steps so far.
// SearchRate has no other side effects.
func SearchRate(cfg SearchConfig, measure func(rate float64) (delivered, offered float64, err error)) (SearchResult, error) {
	res := SearchResult{BestStep: -1}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return res, err
	}
	if measure == nil {
		return res, errors.New("bench: SearchRate: nil measure function")
	}
	ceiling := false // a step passed at the sender's ceiling
	try := func(rate float64) (bool, error) {
		d, o, err := measure(rate)
		atCeiling := errors.Is(err, ErrCeiling)
		if err != nil && !atCeiling {
			return false, err
		}
		s := Step{Rate: rate, Delivered: d, Offered: o, Loss: Loss(d, o)}
		s.Pass = s.Loss < cfg.LossThreshold
		res.Steps = append(res.Steps, s)
		if s.Pass && rate >= res.Best {
			res.Best, res.BestStep = rate, len(res.Steps)-1
		}
		ceiling = ceiling || (s.Pass && atCeiling)
		return s.Pass, nil
	}

	var lo, hi float64 // the last pass and the first failure; 0 = none yet
	rate := cfg.Start
	for {
		pass, err := try(rate)
		if err != nil {
			return res, err
		}
		if !pass {
			hi = rate
			break
		}
		lo = rate
		if rate >= cfg.Max || ceiling {
			return res, nil
		}
		rate = math.Min(rate*cfg.Factor, cfg.Max)
	}
	if lo == 0 {
		// The start already fails: ramp down.
		for rate = hi / cfg.Factor; rate >= cfg.Min; rate /= cfg.Factor {
			pass, err := try(rate)
			if err != nil {
				return res, err
			}
			if pass {
				lo = rate
				break
			}
			hi = rate
		}
		if lo == 0 {
			return res, nil
		}
	}
	for range cfg.Bisections {
		mid := (lo + hi) / 2
		pass, err := try(mid)
		if err != nil {
			return res, err
		}
		if ceiling {
			break
		}
		if pass {
			lo = mid
		} else {
			hi = mid
		}
	}
	return res, nil // res.Best is lo: every rate that passed is at most lo
}
