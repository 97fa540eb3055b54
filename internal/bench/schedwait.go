package bench

import (
	"math"
	"runtime/metrics"
)

// schedWaitMetric is the Go runtime's histogram of how long goroutines
// waited for a core once ready to run.
const schedWaitMetric = "/sched/latencies:seconds"

// schedWaits reads the process's histogram of waits for a core.
func schedWaits() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: schedWaitMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	return s[0].Value.Float64Histogram()
}

// schedWaitBetween gives the percentiles of the waits counted between two
// readings, in milliseconds: each is the upper bound of its bucket (the
// runtime's buckets are about 20 % wide from a microsecond up). Max is
// the upper bound of the highest bucket that counted a wait, or its lower
// bound when that one is open-ended. nil when there was nothing to count.
func schedWaitBetween(before, after *metrics.Float64Histogram) *Percent {
	if before == nil || after == nil || len(before.Counts) != len(after.Counts) {
		return nil
	}
	counts := make([]uint64, len(after.Counts))
	var total uint64
	for i := range counts {
		counts[i] = after.Counts[i] - before.Counts[i]
		total += counts[i]
	}
	if total == 0 {
		return nil
	}
	ms := func(i int) float64 {
		b := after.Buckets[i+1]
		if math.IsInf(b, 1) {
			b = after.Buckets[i]
		}
		return b * 1000
	}
	// The bucket where the running count reaches q of the total; at 1,
	// the highest bucket that counted a wait.
	at := func(q float64) float64 {
		need := uint64(math.Ceil(q * float64(total)))
		var cum uint64
		i := 0
		for ; i < len(counts)-1; i++ {
			if cum += counts[i]; cum >= need {
				break
			}
		}
		return ms(i)
	}
	return &Percent{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: at(1)}
}
