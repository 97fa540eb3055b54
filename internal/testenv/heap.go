package testenv

import (
	"io"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// HeapRise runs f and returns how far the live heap rose above its level
// before f (taken after a GC), sampled every millisecond while f runs: what
// f held in memory at its peak, for tests of streaming code.
func HeapRise(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := read()
	var peak atomic.Uint64
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak.Store(max(peak.Load(), read()))
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	<-stopped
	if p := max(peak.Load(), read()); p > base {
		return p - base
	}
	return 0
}

// RepeatReader yields s n times, without holding more than s: large test
// messages streamed from a few lines.
func RepeatReader(s string, n int64) io.Reader { return &repeatReader{s: s, n: n} }

type repeatReader struct {
	s   string
	n   int64
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 && r.n > 0 {
		c := copy(p, r.s[r.off:])
		p, total, r.off = p[c:], total+c, r.off+c
		if r.off == len(r.s) {
			r.off, r.n = 0, r.n-1
		}
	}
	if total == 0 && r.n == 0 {
		return 0, io.EOF
	}
	return total, nil
}
