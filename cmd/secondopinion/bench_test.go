package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"secondopinion/internal/testenv"
)

func TestBenchJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb},
		[]string{"bench", "--cases", "4", "--concurrency", "2", "--attachment-size", "32KB", "--nosync", "--json", "--out", t.TempDir()})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if n := strings.Count(strings.TrimSpace(out.String()), "\n"); n != 0 {
		t.Errorf("want exactly one JSON line, got %d more:\n%s", n, out.String())
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	for _, k := range []string{"cases", "cases_per_second", "reaction_ms", "peak_rss_mb", "db_bytes_per_case"} {
		if _, ok := r[k]; !ok {
			t.Errorf("no %q in %s", k, out.String())
		}
	}
	if r["cases"] != float64(4) || r["cases_per_second"].(float64) <= 0 || r["db_bytes_per_case"].(float64) <= 0 {
		t.Errorf("implausible: %s", out.String())
	}
	react, _ := r["reaction_ms"].(map[string]any)
	for _, k := range []string{"p50", "p95", "p99"} {
		if v, _ := react[k].(float64); v <= 0 {
			t.Errorf("reaction_ms.%s = %v", k, react[k])
		}
	}
}

func TestBenchUsage(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"bad size", []string{"bench", "--attachment-size", "lots"}},
		{"zero cases", []string{"bench", "--cases", "0"}},
		{"stray argument", []string{"bench", "now"}},
		{"imap without port", []string{"bench", "--imap", "127.0.0.1", "--imap-user", "u", "--imap-password-file", "f"}},
		{"imap without user", []string{"bench", "--imap", "127.0.0.1:143", "--imap-password-file", "f"}},
		{"imap without password", []string{"bench", "--imap", "127.0.0.1:143", "--imap-user", "u"}},
		{"imap bad security", []string{"bench", "--imap", "127.0.0.1:143", "--imap-user", "u", "--imap-password-file", "f", "--imap-security", "ssl"}},
		{"imap CA with plain", []string{"bench", "--imap", "127.0.0.1:143", "--imap-user", "u", "--imap-password-file", "f", "--imap-security", "plain", "--imap-ca", "bench_test.go"}},
		{"imap CA not PEM", []string{"bench", "--imap", "127.0.0.1:143", "--imap-user", "u", "--imap-password-file", "f", "--imap-ca", "bench_test.go"}},
		{"smtp CA missing", []string{"bench", "--smtp", "127.0.0.1:25", "--listen", "127.0.0.1:2525", "--smtp-ca", "no-such-ca.pem"}},
		{"smtp without listen", []string{"bench", "--smtp", "127.0.0.1:25"}},
		{"smtp user without password", []string{"bench", "--smtp", "127.0.0.1:25", "--listen", "127.0.0.1:2525", "--smtp-user", "u"}},
		{"smtp bad security", []string{"bench", "--smtp", "127.0.0.1:25", "--listen", "127.0.0.1:2525", "--smtp-security", "ssl"}},
		{"smtp plain to another host", []string{"bench", "--smtp", "192.0.2.1:25", "--listen", "127.0.0.1:2525", "--smtp-security", "plain"}},
		{"imap plain to another host", []string{"bench", "--imap", "mail.example.test:143", "--imap-user", "u", "--imap-password-file", "f", "--imap-security", "plain"}},
		{"nosync with an external daemon", []string{"bench", "--external", "--nosync"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), &env{stdout: &out, stderr: &errb}, tt.args); code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, errb.String())
			}
		})
	}
}

// TestBenchGivenServers runs `secondopinion bench --imap --smtp` as an
// operator would, against a test account on a real IMAP server (a private
// Dovecot) and a relay (a private Postfix that passes all mail on to the
// bench), both with STARTTLS and a certificate from a private CA: the
// cases complete through them, and the report names the servers and the
// IMAP server's own notification delay. Without the CA the bench refuses
// the server's certificate before it starts.
func TestBenchGivenServers(t *testing.T) {
	const user, pass = "bench@test.example", "bench-imap-test"
	tlsFiles := testenv.NewTLSFiles(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{user: pass}, TLS: &tlsFiles})
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Relayhost: listen, TLS: &tlsFiles})
	bin := testenv.BuildDaemon(t)
	passFile := filepath.Join(t.TempDir(), "imap.password")
	if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	imapFlags := []string{"--imap", dc.Addr, "--imap-user", user, "--imap-password-file", passFile, "--imap-security", "starttls"}

	t.Run("without the CA", func(t *testing.T) {
		cmd := exec.Command(bin, append([]string{"bench", "--cases", "1", "--timeout", "1m"}, imapFlags...)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Run(); err == nil {
			t.Fatal("bench trusted a certificate of a CA it was not given")
		}
		if !strings.Contains(errb.String(), "certificate signed by unknown authority") {
			t.Errorf("stderr does not say why: %s", errb.String())
		}
	})

	args := append([]string{"bench"}, imapFlags...)
	args = append(args, "--imap-ca", tlsFiles.CAFile, "--smtp", pf.Addr, "--smtp-security", "starttls", "--smtp-ca", tlsFiles.CAFile,
		"--listen", listen, "--cases", "2", "--concurrency", "2", "--attachment-size", "64KB", "--json", "--timeout", "2m")
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench --imap: %v\n%s", err, errb.String())
	}
	var r struct {
		Cases      int    `json:"cases"`
		Daemon     string `json:"daemon"`
		IMAP       string `json:"imap"`
		SMTP       string `json:"smtp"`
		Duplicates int    `json:"duplicates"`
		MailsIn    int    `json:"mails_in"`
		Reaction   struct{ P50, P99 float64 }
		Notify     *struct{ P50, P99 float64 } `json:"imap_notify_ms"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if r.Cases != 2 || r.Daemon != "external" || r.IMAP != dc.Addr || r.SMTP != pf.Addr || r.Duplicates != 0 || r.MailsIn != 16 {
		t.Errorf("report: %s", out.String())
	}
	if r.Notify == nil || r.Notify.P50 <= 0 {
		t.Errorf("no notification delay of the server in %s", out.String())
	}
	// The daemon's connections were encrypted: Dovecot marks a login over
	// TLS, Postfix logs each TLS session.
	if log := dc.Log(); !strings.Contains(log, "user=<"+user+">, method=PLAIN") || !strings.Contains(log, ", TLS, ") {
		t.Errorf("Dovecot logged no login over TLS:\n%s", log)
	}
	if log := pf.Log(); !strings.Contains(log, "TLS connection established from") {
		t.Errorf("Postfix logged no TLS connection from the daemon:\n%s", log)
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		bad  bool
	}{
		{"1MB", 1 << 20, false},
		{"1 MiB", 1 << 20, false},
		{"512KiB", 512 << 10, false},
		{"1.5M", 3 << 19, false},
		{"20000", 20000, false},
		{"0", 0, true},
		{"-1MB", 0, true},
		{"2GB", 0, true},
		{"MB", 0, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.bad)
			}
		})
	}
}
