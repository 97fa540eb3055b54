package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"secondopinion/internal/testenv"
)

// A server whose certificate a private CA signed is trusted with that CA in
// ca_file, and refused without it.
func TestCAFileTrusted(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.ServeEach(t, ln, func(c net.Conn) { _ = c.(*tls.Conn).Handshake() })

	dir := t.TempDir()
	ca := filepath.Join(dir, "internal-ca.pem")
	copyFile(t, files.CAFile, ca)
	yaml := strings.Replace(minimal, "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  security: starttls\n  ca_file: internal-ca.pem\n", 1)
	c, err := Parse(filepath.Join(dir, "so.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("valid ca_file refused: %v", errs)
	}
	if c.SMTP.CAFile != ca {
		t.Errorf("ca_file resolved to %q, want %q (next to the config)", c.SMTP.CAFile, ca)
	}
	dial := func(cfg *tls.Config) error {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg = cfg.Clone()
		cfg.ServerName = "127.0.0.1"
		conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil {
			conn.Close()
		}
		return err
	}

	withCA, err := c.SMTPTLS()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(withCA); err != nil {
		t.Errorf("with ca_file: %v", err)
	}
	without, err := c.IMAPTLS() // imap has no ca_file: the system's roots
	if err != nil || without != nil {
		t.Fatalf("IMAPTLS without ca_file = %v, %v; want nil, nil", without, err)
	}
	var unknown x509.UnknownAuthorityError
	if err := dial(without); !errors.As(err, &unknown) {
		t.Errorf("without ca_file: %v, want an unknown authority", err)
	}
}

func TestCAFileErrors(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caPEM, err := os.ReadFile(files.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, security, file, want string
	}{
		{"missing", "tls", filepath.Join(dir, "nope.pem"), "imap.ca_file: CA file: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"no certificate", "tls", write("empty.pem", []byte("just text\n")), "no PEM certificate in it"},
		{"a key with the CA", "starttls", write("key.pem", append(append([]byte{}, caPEM...), keyPEM...)), "block 2 is a PRIVATE KEY; want only CERTIFICATE blocks"},
		{"broken certificate", "tls", write("broken.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})), "certificate 1: x509:"},
		{"with plain", "plain", files.CAFile, "imap.ca_file: is for security tls or starttls, not plain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			yaml := strings.Replace(minimal, "  host: imap.example.nl\n", "  host: 127.0.0.1\n  security: "+tt.security+"\n  ca_file: "+tt.file+"\n", 1)
			c, err := Parse(filepath.Join(dir, "so.yaml"), []byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range c.Validate() {
				got = append(got, e.Error())
			}
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Errorf("errors %q, want one with %q", got, tt.want)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
