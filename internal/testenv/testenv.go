// Package testenv helps tests that need real parts of the mail world
// (Dovecot, Postfix, GnuPG, poppler, qpdf). On a developer machine a missing
// program skips the test with the install hint; under CI (CI=true) it fails,
// because the test command installs them and a skip there would hide a gap.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// Require skips (or, under CI, fails) the test unless every program is on PATH.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed; the test command (make test) installs it", p)
			}
			t.Skipf("%s not installed; run make test to install the real servers", p)
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
