package testenv

import (
	"context"
	"strings"
	"sync"
)

// LogBuffer collects log output written from several goroutines (give it
// to slog.NewTextHandler), so a test can read what the daemon logged, or
// wait for a line.
type LogBuffer struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{}
}

// Write appends p and wakes WaitFor.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// WaitFor blocks until the log contains s (true) or ctx ends (false).
func (l *LogBuffer) WaitFor(ctx context.Context, s string) bool {
	for {
		l.mu.Lock()
		if strings.Contains(l.b.String(), s) {
			l.mu.Unlock()
			return true
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}
