package metrics

import "github.com/meshcast/meshcast/internal/control"

// histogram is a cumulative histogram as the replication engine reports
// it (replicate.Engine.Fanout): Counts[i] observations were at most
// Bounds[i], Count observations in all (the +Inf bucket), adding up to Sum.
type histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// fanoutOf returns the fan-out histogram of a snapshot, and false when the
// snapshot has none; then meshcast_replication_fanout is left out.
func fanoutOf(s control.State) (histogram, bool) {
	h := s.Fanout
	return histogram{h.Bounds, h.Counts, h.Count, float64(h.Sum)}, h.Bounds != nil
}
