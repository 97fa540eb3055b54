package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// armoredKey makes a throwaway public key created at created with the given
// lifetime (0: none) and RSA size (0: Ed25519/X25519).
func armoredKey(t *testing.T, email string, created time.Time, lifetime time.Duration, rsaBits int) []byte {
	t.Helper()
	cfg := &packet.Config{Time: func() time.Time { return created }, KeyLifetimeSecs: uint32(lifetime / time.Second),
		Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519}
	if rsaBits > 0 {
		cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, rsaBits
	}
	e, err := openpgp.NewEntity("Dr. Test", "", email, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

func runKeys(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), &env{stdout: &out, stderr: &errb}, append([]string{"keys"}, args...))
	return code, out.String(), errb.String()
}

func TestKeysCommand(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()

	// The service key: mode 0600, public key printed, never overwritten.
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("geheim\n"), 0o600)
	code, out, errs := runKeys(t, "generate-service-key", "--keys", dir, "--name", "Second Opinion", "--email", "so@service.example.test", "--passphrase-file", pass)
	if code != 0 || !strings.Contains(out, "BEGIN PGP PUBLIC KEY BLOCK") || strings.Contains(out, "PRIVATE") || !strings.Contains(errs, "protected by the passphrase") {
		t.Fatalf("generate: %d\n%s\n%s", code, out, errs)
	}
	if st, err := os.Stat(filepath.Join(dir, "service.asc")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("service.asc: %v %v", err, st)
	}
	if code, _, errs := runKeys(t, "generate-service-key", "--keys", dir, "--name", "X", "--email", "x@example.test"); code != 1 || !strings.Contains(errs, "refusing to overwrite") {
		t.Fatalf("second generate: %d %s", code, errs)
	}

	// Import: a good key is registered, a weak one refused with the reason.
	good := filepath.Join(t.TempDir(), "arts.asc")
	os.WriteFile(good, armoredKey(t, "Arts@Example.test", now.Add(-time.Hour), 0, 0), 0o644)
	if code, out, _ := runKeys(t, "import", good, "--keys", dir); code != 0 || !strings.Contains(out, "imported") || !strings.Contains(out, "arts@example.test") {
		t.Fatalf("import good: %d %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "public", "arts@example.test.asc")); err != nil {
		t.Fatal(err)
	}
	weak := filepath.Join(t.TempDir(), "weak.asc")
	os.WriteFile(weak, armoredKey(t, "weak@example.test", now.Add(-time.Hour), 0, 2048), 0o644)
	if code, out, _ := runKeys(t, "import", weak, "--keys", dir); code != 1 || !strings.Contains(out, "refused") || !strings.Contains(out, "2048 bits") {
		t.Fatalf("import weak: %d %s", code, out)
	}

	// A key expiring in 10 days: usable, with a warning.
	os.WriteFile(filepath.Join(dir, "public", "soon@example.test.asc"), armoredKey(t, "soon@example.test", now.Add(-20*24*time.Hour), 30*24*time.Hour, 0), 0o644)
	code, out, _ = runKeys(t, "check", "--keys", dir)
	if code != 0 || !strings.Contains(out, "WARNING: the key of soon@example.test expires on") || !strings.Contains(out, "3 key(s) usable") {
		t.Fatalf("check: %d\n%s", code, out)
	}
	fpr := regexp.MustCompile(`[0-9A-F]{40}`)
	for _, line := range strings.Split(out, "\n")[1:4] {
		if loc := fpr.FindStringIndex(line); loc == nil || loc[0] != strings.Index(out, "FINGERPRINT") {
			t.Errorf("table not aligned:\n%s", out)
		}
	}

	// An expired key (placed by hand) makes check fail; list still shows it.
	os.WriteFile(filepath.Join(dir, "public", "old@example.test.asc"), armoredKey(t, "old@example.test", now.Add(-400*24*time.Hour), 24*time.Hour, 0), 0o644)
	code, out, errs = runKeys(t, "check", "--keys", dir)
	if code != 1 || !strings.Contains(out, "UNUSABLE: key") || !strings.Contains(out, "expired on") || !strings.Contains(errs, "1 of 4 key(s) unusable") {
		t.Fatalf("check with expired key: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runKeys(t, "list", "--keys", dir)
	if code != 0 || !strings.Contains(out, "old@example.test") || !strings.Contains(out, "Dr. Test <soon@example.test>") || !strings.Contains(out, "never") {
		t.Fatalf("list: %d\n%s", code, out)
	}

	if code, _, _ := runKeys(t, "frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: exit %d, want 2", code)
	}
}
