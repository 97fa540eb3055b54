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
	changed chan struct{} // closed and replaced on every message committed
	keys    map[string]int64
	records []record
	commits [][]string // the Message-IDs of each Commit, in order

	// hook, if set, runs after a message is recorded and before Commit
	// returns (a crash simulation cancels the context here).
	hook func(r record)
	// fail, if set, makes Stage fail for a record when it returns an error.
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

// Stage streams the body to a file, fsynced, and reads its Message-ID.
func (s *fileSpool) Stage(ctx context.Context, m mailin.Raw, body io.Reader) (mailin.Staged, error) {
	f, err := os.CreateTemp(s.dir, "msg-*.eml")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 32<<10)
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), body, buf); err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("copy body: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	hdr, _ := textproto.NewReader(bufio.NewReader(io.LimitReader(f, 1<<20))).ReadMIMEHeader()
	r := &record{Raw: m, MessageID: strings.Trim(strings.TrimSpace(hdr.Get("Message-Id")), "<>"), SHA256: hex.EncodeToString(h.Sum(nil)), Path: f.Name()}
	if s.fail != nil {
		if err := s.fail(*r); err != nil {
			os.Remove(f.Name())
			return nil, err
		}
	}
	return r, nil
}

// Commit records the staged messages, deduping on Message-ID + SHA-256.
func (s *fileSpool) Commit(ctx context.Context, staged []mailin.Staged) ([]mailin.Stored, error) {
	out := make([]mailin.Stored, len(staged))
	var ids []string
	for _, st := range staged {
		ids = append(ids, st.(*record).MessageID)
	}
	s.mu.Lock()
	s.commits = append(s.commits, ids)
	s.mu.Unlock()
	for i, st := range staged {
		r := *st.(*record)
		s.mu.Lock()
		key := r.MessageID + "\x00" + r.SHA256
		if id, ok := s.keys[key]; ok {
			r.Stored = mailin.Stored{ID: id, Duplicate: true}
			os.Remove(r.Path)
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
		out[i] = r.Stored
	}
	return out, nil
}

// snapshot returns every message committed so far.
func (s *fileSpool) snapshot() []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]record(nil), s.records...)
}

// commitBatches returns the Message-IDs committed together, per Commit.
func (s *fileSpool) commitBatches() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.commits...)
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
