package pgpmime

import (
	"fmt"
	"io"
)

// asyncWriter hands what is written to a goroutine that writes it to w, so
// that the armor and MIME output of a large mail runs on one core while the
// encryption runs on another. Memory is bounded: asyncBuffers chunks of
// asyncChunk bytes are recycled.
type asyncWriter struct {
	full chan []byte
	free chan []byte
	done chan error
	// failed is closed when writing to w failed, so the producer stops
	// instead of encrypting the rest for nothing.
	failed chan struct{}
	cur    []byte
	err    error
}

const (
	asyncChunk   = 64 << 10
	asyncBuffers = 4
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{
		full: make(chan []byte, asyncBuffers),
		free: make(chan []byte, asyncBuffers),
		done: make(chan error, 1),
	}
	for range asyncBuffers - 1 {
		a.free <- make([]byte, 0, asyncChunk)
	}
	a.cur = make([]byte, 0, asyncChunk)
	full, free := a.full, a.free // Close clears a.full
	failed := make(chan struct{})
	a.failed = failed
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("async writer: %v", p)
			}
			// Drain so the producer never blocks after a failure.
			for b := range full {
				free <- b[:0]
			}
			a.done <- err
		}()
		for b := range full {
			if err == nil {
				if _, err = w.Write(b); err != nil {
					close(failed)
				}
			}
			free <- b[:0]
		}
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	n := len(p)
	for len(p) > 0 {
		c := min(len(p), cap(a.cur)-len(a.cur))
		a.cur = append(a.cur, p[:c]...)
		p = p[c:]
		if len(a.cur) == cap(a.cur) {
			select {
			case <-a.failed:
				a.err = fmt.Errorf("write encrypted: output failed")
				return 0, a.err
			default:
			}
			a.full <- a.cur
			a.cur = <-a.free
		}
	}
	return n, nil
}

// Close hands over the rest, waits for the goroutine and returns its first
// error. It must be called on every path, also after a failure elsewhere.
func (a *asyncWriter) Close() error {
	if a.full == nil {
		return a.err
	}
	if len(a.cur) > 0 {
		a.full <- a.cur
		a.cur = nil
	}
	close(a.full)
	a.full = nil
	err := <-a.done
	if a.err == nil {
		a.err = err
	}
	return err
}
