package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/engine"
	"secondopinion/internal/pgpmime"
)

// A SIGHUP with a broken registry must leave the running daemon on the
// registry it had, and say why in the log; a good one replaces it.
func TestFaultRegistryReload(t *testing.T) {
	dir := t.TempDir()
	cfgPath, regPath := filepath.Join(dir, "so.yaml"), filepath.Join(dir, "registry.yaml")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(filepath.Join(dir, "token.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys", "public"), 0o700); err != nil {
		t.Fatal(err)
	}
	armored, err := pgpmime.GenerateServiceKey("Second Opinion", "so@secondopinion.example.nl", time.Now().Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := pgpmime.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.WriteServiceKey(armored); err != nil {
		t.Fatal(err)
	}
	ccCopyEdit(t, "../../config/secondopinion.example.yaml", cfgPath,
		"data_dir: /var/lib/secondopinion", "data_dir: data",
		"keys_dir: ../keys", "keys_dir: keys",
		"registry: registry.example.yaml", "registry: registry.yaml",
		"token_key_file: /etc/secondopinion/token.key", "token_key_file: token.key",
		"service_key_passphrase_env: SECONDOPINION_KEY_PASSPHRASE", "# no passphrase",
	)
	ccCopyEdit(t, "../../config/registry.example.yaml", regPath)
	good, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SECONDOPINION_IMAP_PASSWORD", "imap-pw")
	t.Setenv("SECONDOPINION_SMTP_PASSWORD", "smtp-pw")

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	w, err := engine.FromConfig(context.Background(), cfgPath, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := w.Engine.Registry()

	tests := []struct {
		name    string
		content []byte // nil: the file is removed
		ok      bool
		log     string
	}{
		{"cut off mid-line", truncatedAt(t, good, "languages: [n"), false, "reload refused"},
		{"garbage", []byte("\x00\x01{{{ not: [yaml"), false, "reload refused"},
		{"an unknown arbodienst", bytes.Replace(good, []byte("arbodienst: arbo-noord"), []byte("arbodienst: arbo-nergens"), 1), false, "arbo-nergens"},
		{"file gone", nil, false, "reload refused"},
		{"a valid registry with one physician fewer", dropPhysician(t, good, "k.smit@"), true, "registry reloaded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			before := w.Engine.Registry()
			if tc.content == nil {
				os.Remove(regPath)
			} else if err := os.WriteFile(regPath, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			err := reloadRegistry(cfgPath, w.Engine, logger)
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logs.String())
			}
			t.Logf("log: %s", strings.TrimSpace(logs.String()))
			if !tc.ok {
				if err == nil {
					t.Fatal("a broken registry was accepted")
				}
				if w.Engine.Registry() != before {
					t.Error("the engine's registry changed after a refused reload")
				}
				return
			}
			if err != nil {
				t.Fatalf("a valid registry was refused: %v", err)
			}
			if n, m := len(w.Engine.Registry().Physicians), len(first.Physicians); n != m-1 {
				t.Errorf("after the reload %d physicians, want %d", n, m-1)
			}
		})
	}
}

// dropPhysician removes the physician entry whose email starts with addr.
func dropPhysician(t *testing.T, reg []byte, addr string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(reg), "\n")
	at := -1
	for i, l := range lines {
		if strings.Contains(l, "email: "+addr) {
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("no physician %s in the registry", addr)
	}
	start := at
	for start > 0 && !strings.HasPrefix(strings.TrimSpace(lines[start]), "- ") {
		start--
	}
	end := at + 1
	for end < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[end]), "- ") && strings.HasPrefix(lines[end], "    ") {
		end++
	}
	return []byte(strings.Join(append(lines[:start:start], lines[end:]...), ""))
}

// truncatedAt cuts reg off after the first occurrence of at, as a copy
// interrupted mid-write leaves it.
func truncatedAt(t *testing.T, reg []byte, at string) []byte {
	t.Helper()
	i := bytes.Index(reg, []byte(at))
	if i < 0 {
		t.Fatalf("registry lacks %q", at)
	}
	return reg[:i+len(at)]
}
