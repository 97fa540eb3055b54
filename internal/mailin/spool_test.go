package mailin_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"secondopinion/internal/mailin"
)

// fileSpool is the test stand-in for the store's inbound table: it streams
// each body to a file (fsynced), hashing as it goes, and dedupes on
// Message-ID + SHA-256 like the real store.
type fileSpool struct {
	dir string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every Store
	keys    map[string]int64
	records []record

	// hook, if set, runs after a message is durably stored and before
	// Store returns (a crash simulation cancels the context here).
	hook func(r record)
	// fail, if set, makes Store fail for a record when it returns an error.
	fail func(r record) error
}

type record struct {
	Raw       mailin.Raw
	Stored    mailin.Stored
	MessageID string
	SHA256    string
	Path      string
}

func newFileSpool(t testing.TB) *fileSpool {
	t.Helper()
	return &fileSpool{dir: t.TempDir(), changed: make(chan struct{}), keys: map[string]int64{}}
}

func (s *fileSpool) Store(ctx context.Context, m mailin.Raw, body io.Reader) (mailin.Stored, error) {
	f, err := os.CreateTemp(s.dir, "msg-*.eml")
	if err != nil {
		return mailin.Stored{}, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 32<<10)
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), body, buf); err != nil {
		os.Remove(f.Name())
		return mailin.Stored{}, fmt.Errorf("copy body: %w", err)
	}
	if err := f.Sync(); err != nil {
		return mailin.Stored{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return mailin.Stored{}, err
	}
	hdr, _ := textproto.NewReader(bufio.NewReader(io.LimitReader(f, 1<<20))).ReadMIMEHeader()
	r := record{Raw: m, MessageID: strings.Trim(strings.TrimSpace(hdr.Get("Message-Id")), "<>"), SHA256: hex.EncodeToString(h.Sum(nil)), Path: f.Name()}
	if s.fail != nil {
		if err := s.fail(r); err != nil {
			os.Remove(f.Name())
			return mailin.Stored{}, err
		}
	}

	s.mu.Lock()
	key := r.MessageID + "\x00" + r.SHA256
	if id, ok := s.keys[key]; ok {
		r.Stored = mailin.Stored{ID: id, Duplicate: true}
		os.Remove(f.Name())
		r.Path = filepath.Join(s.dir, "dup")
	} else {
		id := int64(len(s.keys) + 1)
		s.keys[key] = id
		r.Stored = mailin.Stored{ID: id}
	}
	s.records = append(s.records, r)
	close(s.changed)
	s.changed = make(chan struct{})
	hook := s.hook
	s.mu.Unlock()

	if hook != nil {
		hook(r)
	}
	return r.Stored, nil
}

// snapshot returns every Store call so far.
func (s *fileSpool) snapshot() []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]record(nil), s.records...)
}

// waitFor blocks until pred holds for the records, or ctx ends.
func (s *fileSpool) waitFor(ctx context.Context, pred func([]record) bool) ([]record, error) {
	for {
		s.mu.Lock()
		recs := append([]record(nil), s.records...)
		ch := s.changed
		s.mu.Unlock()
		if pred(recs) {
			return recs, nil
		}
		select {
		case <-ctx.Done():
			return recs, ctx.Err()
		case <-ch:
		}
	}
}

// uniqueIDs counts the records that were new (not duplicates) per Message-ID.
func uniqueIDs(recs []record) map[string]int {
	n := map[string]int{}
	for _, r := range recs {
		if !r.Stored.Duplicate {
			n[r.MessageID]++
		}
	}
	return n
}

// hasNew reports whether every id was stored (as new) at least once.
func hasNew(ids ...string) func([]record) bool {
	return func(recs []record) bool {
		n := uniqueIDs(recs)
		for _, id := range ids {
			if n[id] == 0 {
				return false
			}
		}
		return true
	}
}
