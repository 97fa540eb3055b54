package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// fileBuffer batches the small writes of a stream (an encryptor behind a
// pipe, an IMAP literal) into few write system calls.
const fileBuffer = 256 << 10

// PutFile streams r into a file under the data dir's sub directory, named
// by the SHA-256 of its content, fsyncs it and its directory, and returns
// the path relative to the data dir. Writing the same content twice yields
// the same file. The caller names the path in a row committed afterwards;
// a file whose row never commits is harmless.
func (s *Store) PutFile(sub string, r io.Reader) (rel, sha string, size int64, err error) {
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
	h := sha256.New()
	bw := bufio.NewWriterSize(tmp, fileBuffer)
	size, err = io.Copy(io.MultiWriter(bw, h), r)
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
	sha = hex.EncodeToString(h.Sum(nil))
	rel = filepath.Join(sub, sha)
	if err = os.Rename(tmp.Name(), filepath.Join(s.dir, rel)); err != nil {
		return "", "", 0, fmt.Errorf("put file: %w", err)
	}
	if err = syncDir(filepath.Join(s.dir, sub)); err != nil {
		return "", "", 0, err
	}
	return rel, sha, size, nil
}

// PutBody reads r into memory when it ends within inline bytes, and
// returns it as body; a longer stream goes to a file under sub, as with
// PutFile, and its path is returned as rel. A composed mail that is small
// then travels in its outbox row, committed with the decision: no file to
// create, fsync and name in its directory.
func (s *Store) PutBody(sub string, r io.Reader, inline int) (body []byte, rel string, err error) {
	buf := make([]byte, inline+1)
	n, err := io.ReadFull(r, buf)
	switch err {
	case io.EOF, io.ErrUnexpectedEOF:
		return buf[:n:n], "", nil
	case nil:
		rel, _, _, err = s.PutFile(sub, io.MultiReader(bytes.NewReader(buf), r))
		return nil, rel, err
	default:
		return nil, "", fmt.Errorf("put body: %w", err)
	}
}

// OpenFile opens a file PutFile wrote.
func (s *Store) OpenFile(rel string) (*os.File, error) {
	if rel == "" || filepath.IsAbs(rel) || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("open %q: not a data-dir path", rel)
	}
	return os.Open(filepath.Join(s.dir, rel))
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
