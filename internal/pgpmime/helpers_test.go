package pgpmime

import (
	"bytes"
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"secondopinion/internal/testenv"
)

// t0 is the fixed clock of tests that do not involve GnuPG.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// newEntity makes a throwaway key pair at created. lifetime 0 means no
// expiry; rsaBits 0 means Ed25519/X25519.
func newEntity(t testing.TB, name, email string, created time.Time, lifetime time.Duration, rsaBits int) *openpgp.Entity {
	t.Helper()
	cfg := &packet.Config{
		Algorithm:       packet.PubKeyAlgoEdDSA,
		Curve:           packet.Curve25519,
		DefaultHash:     crypto.SHA256,
		Time:            func() time.Time { return created },
		KeyLifetimeSecs: uint32(lifetime / time.Second),
	}
	if rsaBits > 0 {
		cfg.Algorithm = packet.PubKeyAlgoRSA
		cfg.RSABits = rsaBits
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	// Round-trip through the wire format so every signature is final.
	var buf bytes.Buffer
	if err := e.SerializePrivate(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	e, err = openpgp.ReadEntity(packet.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func serviceFromEntity(e *openpgp.Entity) *ServiceKey { return &ServiceKey{entity: e} }

func publicFromEntity(t testing.TB, e *openpgp.Entity, addr string) *PublicKey {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	keys, err := ReadPublicKeys(&buf)
	if err != nil {
		t.Fatal(err)
	}
	keys[0].Address = addr
	return keys[0]
}

// fixture keys shared by tests (generation is the slow part).
var (
	fixOnce   sync.Once
	fixSvc    *openpgp.Entity // the service
	fixArts   *openpgp.Entity // a physician, arts@example.test
	fixOther  *openpgp.Entity // another physician, ander@example.test
	fixRandom *openpgp.Entity // a stranger, not on file
)

func fixtures(t testing.TB) {
	t.Helper()
	fixOnce.Do(func() {
		created := t0.Add(-365 * 24 * time.Hour)
		fixSvc = newEntity(t, "Second Opinion", "so@service.example.test", created, 0, 0)
		fixArts = newEntity(t, "Dr. A. Arts", "arts@example.test", created, 0, 0)
		fixOther = newEntity(t, "Dr. B. Ander", "ander@example.test", created, 0, 0)
		fixRandom = newEntity(t, "Mallory", "arts@example.test", created, 0, 0)
	})
}

// keysDir makes a keys directory with the given public keys registered.
func keysDir(t testing.TB, reg map[string]*openpgp.Entity) *Keyring {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, PublicDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for addr, e := range reg {
		armored, err := publicFromEntity(t, e, addr).Armored()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, PublicDir, addr+".asc"), armored, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &Keyring{Dir: dir}
}

// gnupg is a private GnuPG home for one test.
type gnupg struct {
	t    testing.TB
	home string
}

func newGnuPG(t testing.TB) *gnupg {
	t.Helper()
	testenv.Require(t, "gpg", "gpgconf")
	// A short path: the agent's socket path must stay under 108 bytes.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &gnupg{t: t, home: home}
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		_ = cmd.Run()
		os.RemoveAll(home)
	})
	return g
}

// run runs gpg with stdin and returns stdout and the status lines.
func (g *gnupg) run(stdin []byte, args ...string) (stdout []byte, status string, err error) {
	g.t.Helper()
	statusFile := filepath.Join(g.home, "status")
	full := append([]string{"--homedir", g.home, "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback",
		"--passphrase", "", "--trust-model", "always", "--status-file", statusFile}, args...)
	cmd := exec.Command("gpg", full...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	st, _ := os.ReadFile(statusFile)
	if err != nil {
		err = &gpgError{err: err, stderr: errb.String()}
	}
	return out.Bytes(), string(st), err
}

type gpgError struct {
	err    error
	stderr string
}

func (e *gpgError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

func (g *gnupg) must(stdin []byte, args ...string) []byte {
	g.t.Helper()
	out, _, err := g.run(stdin, args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// genKey makes an Ed25519/Cv25519 key in GnuPG and returns its public key.
func (g *gnupg) genKey(uid string, extra ...string) *PublicKey {
	g.t.Helper()
	args := append(extra, "--quick-gen-key", uid, "future-default", "default", "2y")
	g.must(nil, args...)
	return g.export(uid)
}

func (g *gnupg) export(who string) *PublicKey {
	g.t.Helper()
	out := g.must(nil, "--armor", "--export", who)
	keys, err := ReadPublicKeys(bytes.NewReader(out))
	if err != nil {
		g.t.Fatalf("read exported key %s: %v", who, err)
	}
	return keys[0]
}

func (g *gnupg) importKey(k *PublicKey) {
	g.t.Helper()
	armored, err := k.Armored()
	if err != nil {
		g.t.Fatal(err)
	}
	g.must(armored, "--import")
}
