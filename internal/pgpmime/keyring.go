package pgpmime

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Layout of the keys directory (see keys/README.md).
const (
	ServiceKeyFile = "service.asc" // the service's armored private key
	PublicDir      = "public"      // public/<lower-case address>.asc per participant
)

// Keyring is the keys directory. It looks at the files at each use, so a
// key imported while the daemon runs counts at once and a key that expires
// is refused from that moment; a file is parsed again only when it changed
// (another file, size or modification time), not at every message.
type Keyring struct {
	Dir string

	mu     sync.Mutex
	parsed map[string]parsedFile // by path
}

// parsedFile is a key file as last parsed. Its keys are shared and never
// modified after parsing.
type parsedFile struct {
	info fs.FileInfo
	keys []*PublicKey
	err  error
}

// readKeys returns the keys in the file at path, each with the address
// from the file name, parsing the file only if it changed since last time.
// The error is an os.Stat error or the parse error.
func (k *Keyring) readKeys(path string) ([]*PublicKey, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	p, ok := k.parsed[path]
	k.mu.Unlock()
	if ok && os.SameFile(p.info, info) && p.info.Size() == info.Size() && p.info.ModTime().Equal(info.ModTime()) {
		return p.keys, p.err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, perr := ReadPublicKeys(bytes.NewReader(data))
	addr := strings.TrimSuffix(filepath.Base(path), ".asc")
	for _, key := range keys {
		key.Address = addr
	}
	k.mu.Lock()
	if k.parsed == nil {
		k.parsed = map[string]parsedFile{}
	}
	k.parsed[path] = parsedFile{info: info, keys: keys, err: perr}
	k.mu.Unlock()
	return keys, perr
}

// OpenKeyring returns the keyring in dir, which must exist.
func OpenKeyring(dir string) (*Keyring, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("keys dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("keys dir %s: not a directory", dir)
	}
	return &Keyring{Dir: dir}, nil
}

// ServiceKey loads service.asc with passphrase.
func (k *Keyring) ServiceKey(passphrase []byte) (*ServiceKey, error) {
	return LoadServiceKey(filepath.Join(k.Dir, ServiceKeyFile), passphrase)
}

// PathFor is the file that holds the public key registered for address.
func (k *Keyring) PathFor(address string) (string, error) {
	a, err := NormalizeAddress(address)
	if err != nil {
		return "", err
	}
	return filepath.Join(k.Dir, PublicDir, a+".asc"), nil
}

// Lookup returns the key registered for address, judged at now. When there
// is no usable key the error wraps ErrNoUsableKey and the verdict says why;
// the key is returned as well when one is on file, for display.
func (k *Keyring) Lookup(address string, now time.Time) (*PublicKey, Verdict, error) {
	path, err := k.PathFor(address)
	if err != nil {
		v := Verdict{Problem: ProblemMissing, Reason: err.Error()}
		return nil, v, v.Err()
	}
	addr := strings.TrimSuffix(filepath.Base(path), ".asc")
	return k.judgeFile(path, addr, now)
}

// judgeFile picks the first usable key in a key file, or else reports the
// first key's verdict.
func (k *Keyring) judgeFile(path, addr string, now time.Time) (*PublicKey, Verdict, error) {
	keys, err := k.readKeys(path)
	if errors.Is(err, fs.ErrNotExist) {
		v := Verdict{Problem: ProblemMissing, Reason: fmt.Sprintf("no key on file for %s", addr)}
		return nil, v, v.Err()
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return nil, Verdict{Problem: ProblemUnreadable, Reason: err.Error()}, fmt.Errorf("key for %s: %w", addr, err)
	}
	if err != nil {
		v := Verdict{Problem: ProblemUnreadable, Reason: fmt.Sprintf("key file for %s: %v", addr, err)}
		return nil, v, v.Err()
	}
	var firstKey *PublicKey
	var first Verdict
	for i, key := range keys {
		v := Judge(key, addr, now)
		if v.Usable {
			return key, v, nil
		}
		if i == 0 {
			firstKey, first = key, v
		}
	}
	return firstKey, first, first.Err()
}

// Entry is one file of the public key directory as judged by List.
type Entry struct {
	Address string // from the file name
	Path    string
	Key     *PublicKey // nil when the file does not parse
	Verdict Verdict
}

// List judges every public key file at now, sorted by address.
func (k *Keyring) List(now time.Time) ([]Entry, error) {
	dir := filepath.Join(k.Dir, PublicDir)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []Entry
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || !strings.HasSuffix(name, ".asc") || strings.HasPrefix(name, ".") {
			continue
		}
		addr := strings.TrimSuffix(name, ".asc")
		path := filepath.Join(dir, name)
		key, v, _ := k.judgeFile(path, addr, now)
		out = append(out, Entry{Address: addr, Path: path, Key: key, Verdict: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, nil
}

// all returns every readable key on file with its registered address, for
// telling a wrong signer from an unknown one.
func (k *Keyring) all() []*PublicKey {
	if k == nil {
		return nil
	}
	dir := filepath.Join(k.Dir, PublicDir)
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []*PublicKey
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || !strings.HasSuffix(name, ".asc") || strings.HasPrefix(name, ".") {
			continue
		}
		keys, err := k.readKeys(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		out = append(out, keys...)
	}
	return out
}

// Imported reports what Import did for one address of an imported key.
type Imported struct {
	Address  string
	Path     string
	Verdict  Verdict
	Replaced string // fingerprint of the key that was on file before, if any
	Written  bool
}

// Import registers the public keys in data (armored or binary) for each
// address among their user IDs, after judging them at now: a usable key is
// written to public/<address>.asc atomically (replacing the one on file);
// an unusable one is refused with its reason. Secret key material is never
// written. The error wraps ErrNoUsableKey when nothing could be imported.
func (k *Keyring) Import(data []byte, now time.Time) ([]Imported, error) {
	keys, err := ReadPublicKeys(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []Imported
	var reasons []string
	for _, key := range keys {
		addrs := key.Addresses()
		if len(addrs) == 0 {
			reasons = append(reasons, fmt.Sprintf("key %s has no user ID with an e-mail address", key.Fingerprint()))
			continue
		}
		for _, addr := range addrs {
			v := Judge(key, addr, now)
			path, err := k.PathFor(addr)
			if err != nil {
				return out, err
			}
			im := Imported{Address: addr, Path: path, Verdict: v}
			if !v.Usable {
				reasons = append(reasons, fmt.Sprintf("%s: %s", addr, v.Reason))
				out = append(out, im)
				continue
			}
			if old, err := os.ReadFile(path); err == nil {
				if oks, err := ReadPublicKeys(bytes.NewReader(old)); err == nil && len(oks) > 0 {
					im.Replaced = oks[0].Fingerprint()
				}
			}
			one := &PublicKey{Address: addr, entity: key.entity}
			armored, err := one.Armored()
			if err != nil {
				return out, err
			}
			if err := writeFileAtomic(path, armored, 0o644, true); err != nil {
				return out, fmt.Errorf("import key for %s: %w", addr, err)
			}
			im.Written = true
			out = append(out, im)
		}
	}
	for _, im := range out {
		if im.Written {
			return out, nil
		}
	}
	return out, fmt.Errorf("%w: %s", ErrNoUsableKey, strings.Join(reasons, "; "))
}

// writeFileAtomic writes data to path via a temporary file in the same
// directory: write, fsync, rename, fsync the directory. A crash leaves the
// old file or the new one, never a torn one.
// With replace false an existing file is left alone and fs.ErrExist
// returned (the new file is linked into place, which fails if one exists).
func writeFileAtomic(path string, data []byte, perm os.FileMode, replace bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if replace {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteServiceKey writes an armored private key as service.asc (mode 0600)
// and refuses to overwrite an existing one.
func (k *Keyring) WriteServiceKey(armored []byte) (string, error) {
	path := filepath.Join(k.Dir, ServiceKeyFile)
	if err := writeFileAtomic(path, armored, 0o600, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return path, fmt.Errorf("%s exists; refusing to overwrite the service key", path)
		}
		return path, fmt.Errorf("write service key: %w", err)
	}
	return path, nil
}

// verifyList builds the key list used to verify signatures: every key on
// file (whatever its verdict, so a wrong or unusable signer is named).
func verifyList(keys []*PublicKey) openpgp.EntityList {
	el := make(openpgp.EntityList, 0, len(keys))
	for _, k := range keys {
		el = append(el, k.entity)
	}
	return el
}
