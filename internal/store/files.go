package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// subdirs are the data dir's directories of files: raw inbound mail,
// outgoing mail, sealed documents, and files being written.
var subdirs = []string{"inbound", "outbox", "documents", "tmp"}

// fileBuffer batches the small writes of a stream (an encryptor behind a
// pipe, an IMAP literal) into few write system calls.
const fileBuffer = 256 << 10

// PutFile streams r into a new file under the data dir's sub directory,
// fsyncs it and its directory, and returns the path relative to the data
// dir and the size. The file gets a random name: nothing looks a sealed
// document or an outgoing mail up by its content, and hashing the bytes
// (2 MB for a forwarding) only to name them cost CPU. The caller names
// the path in a row committed afterwards; a file whose row never commits
// is removed by SweepFiles.
func (s *Store) PutFile(sub string, r io.Reader) (rel string, size int64, err error) {
	rel, _, size, err = s.putFile(sub, "", r, false)
	return rel, size, err
}

// putFile is PutFile; byContent names the file by the SHA-256 of its
// content and ext instead (raw inbound mail: fetching the same message
// twice writes the same file), and returns the hash.
func (s *Store) putFile(sub, ext string, r io.Reader, byContent bool) (rel, sha string, size int64, err error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("put file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(&writingBack{f: tmp}, fileBuffer)
	var w io.Writer = bw
	var h hash.Hash
	if byContent {
		h = sha256.New()
		w = io.MultiWriter(bw, h)
	}
	size, err = io.Copy(w, r)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return "", "", 0, fmt.Errorf("put file: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("put file: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return "", "", 0, fmt.Errorf("put file: %w", err)
	}
	if byContent {
		sha = hex.EncodeToString(h.Sum(nil))
		rel = filepath.Join(sub, sha+ext)
	} else {
		rel = filepath.Join(sub, rand.Text()+ext)
	}
	if err = os.Rename(tmp.Name(), filepath.Join(s.dir, rel)); err != nil {
		return "", "", 0, fmt.Errorf("put file: %w", err)
	}
	if err = syncDir(filepath.Join(s.dir, sub)); err != nil {
		return "", "", 0, err
	}
	return rel, sha, size, nil
}

// writingBack writes to f and has the kernel begin writing each piece to
// disk at once (startWriteback), so that the file's fsync overlaps with
// streaming the rest: for a 2 MB message the fsync took 2 ms after the
// last byte.
type writingBack struct {
	f   *os.File
	off int64
}

func (w *writingBack) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if n > 0 {
		startWriteback(w.f, w.off, int64(n))
		w.off += int64(n)
	}
	return n, err
}

// PutBody reads r into memory when it ends within inline bytes, and
// returns it as body; a longer stream goes to a file under sub, as with
// PutFile, and its path is returned as rel. A composed mail that is small
// then travels in its outbox row, committed with the decision: no file to
// create, fsync and name in its directory.
func (s *Store) PutBody(sub string, r io.Reader, inline int) (body []byte, rel string, err error) {
	body, rel, _, _, err = s.putBody(sub, "", r, inline, false)
	return body, rel, err
}

// putBody is PutBody; byContent names a file as putFile does, and returns
// the content's SHA-256, wherever the content went, and its size.
func (s *Store) putBody(sub, ext string, r io.Reader, inline int, byContent bool) (body []byte, rel, sha string, size int64, err error) {
	// The first inline+1 bytes go into a reused buffer (growing one by
	// doubling cleared and copied about twice what a large mail holds);
	// what ends within it is copied out at its size.
	bp := headBuffers.Get().(*[]byte)
	defer headBuffers.Put(bp)
	if cap(*bp) < inline+1 {
		*bp = make([]byte, inline+1)
	}
	head := (*bp)[:inline+1]
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		body = bytes.Clone(head[:n]) // not nil, even when empty
		if byContent {
			h := sha256.Sum256(body)
			sha = hex.EncodeToString(h[:])
		}
		return body, "", sha, int64(n), nil
	case err != nil:
		return nil, "", "", 0, fmt.Errorf("put body: %w", err)
	}
	rel, sha, size, err = s.putFile(sub, ext, io.MultiReader(bytes.NewReader(head), r), byContent)
	return nil, rel, sha, size, err
}

// headBuffers holds the buffers putBody reads the start of a body into.
var headBuffers = sync.Pool{New: func() any { return new([]byte) }}

// OpenFile opens a file PutFile wrote.
func (s *Store) OpenFile(rel string) (*os.File, error) {
	if rel == "" || filepath.IsAbs(rel) || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("open %q: not a data-dir path", rel)
	}
	return os.Open(filepath.Join(s.dir, rel))
}

// removeFiles removes data-dir files no row names any more; one it
// cannot remove is left to SweepFiles.
func (s *Store) removeFiles(rels []string) {
	for _, rel := range rels {
		os.Remove(filepath.Join(s.dir, rel))
	}
}

// SweepFiles removes what a crash or a failed step left in the data dir:
// the files under inbound/, outbox/ and documents/ that no row names (one
// written for a decision that never committed, an outbox file whose mail
// was sent just before a crash), and what tmp/ holds (a write cut off). A
// file is removed only when it was last written before 'before', so that
// one whose row is about to commit, in this process or in a command's, is
// left alone: the daemon passes a day ago. It returns how many it removed.
func (s *Store) SweepFiles(ctx context.Context, before time.Time) (removed int, err error) {
	named := map[string]bool{}
	rows, err := s.queryContext(ctx, `SELECT path FROM documents
		UNION ALL SELECT path FROM inbound WHERE path != ''
		UNION ALL SELECT path FROM outbox WHERE path IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("sweep files: %w", err)
	}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sweep files: %w", err)
		}
		named[filepath.Clean(p)] = true
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("sweep files: %w", err)
	}
	for _, sub := range subdirs {
		entries, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return removed, fmt.Errorf("sweep files: %w", err)
		}
		for _, e := range entries {
			rel := filepath.Join(sub, e.Name())
			if !e.Type().IsRegular() || named[rel] {
				continue
			}
			info, err := e.Info()
			if err != nil || !info.ModTime().Before(before) {
				continue // gone meanwhile, or maybe about to be named
			}
			if err := os.Remove(filepath.Join(s.dir, rel)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return removed, fmt.Errorf("sweep files: %w", err)
			}
			removed++
		}
	}
	return removed, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
