package bench

import (
	"math"
	"runtime/metrics"
	"testing"
)

func TestSchedWaitBetween(t *testing.T) {
	buckets := []float64{0, 0.001, 0.002, 0.004, 0.008, math.Inf(1)}
	before := &metrics.Float64Histogram{Buckets: buckets, Counts: []uint64{5, 5, 5, 5, 5}}
	// 100 waits during the run: 90 under 1 ms, 5 under 2, 4 under 8, 1
	// beyond the last bound.
	after := &metrics.Float64Histogram{Buckets: buckets, Counts: []uint64{95, 10, 5, 9, 6}}
	p := schedWaitBetween(before, after)
	if p == nil {
		t.Fatal("no percentiles")
	}
	want := Percent{P50: 1, P95: 2, P99: 8, Max: 8}
	if *p != want {
		t.Errorf("got %+v, want %+v (the readings before the run left out)", *p, want)
	}
	// The longest wait lies above the p99, in a bucket of its own.
	buckets = []float64{0, 0.001, 0.002, 0.004, 0.008, 0.016, math.Inf(1)}
	zero := &metrics.Float64Histogram{Buckets: buckets, Counts: make([]uint64, 6)}
	one := &metrics.Float64Histogram{Buckets: buckets, Counts: []uint64{98, 1, 0, 0, 1, 0}}
	if p := schedWaitBetween(zero, one); p == nil || *p != (Percent{P50: 1, P95: 1, P99: 2, Max: 16}) {
		t.Errorf("got %+v, want p50 1, p95 1, p99 2, max 16", p)
	}
	if p := schedWaitBetween(after, after); p != nil {
		t.Errorf("no waits between two equal readings, got %+v", *p)
	}
	if schedWaits() == nil {
		t.Errorf("the runtime has no %s", schedWaitMetric)
	}
}
