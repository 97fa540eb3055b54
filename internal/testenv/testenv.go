// Package testenv helps tests that need real parts of the mail world
// (Dovecot, Postfix, GnuPG, poppler, qpdf). On a developer machine a missing
// program skips the test with the install hint; under CI (CI=true) it fails,
// because the test command installs them and a skip there would hide a gap.
package testenv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// for a server that binds it later (Dovecot, Postfix, the bench's SMTP
// server behind Postfix). It is taken from below the kernel's range of
// ports for outgoing connections: a port from that range (what binding
// port 0 gives) can be taken meanwhile by any connection a process makes,
// and the server then fails to bind ("address already in use"), as
// happened to a test whose Postfix took seconds to start.
func FreePort(t testing.TB) int {
	t.Helper()
	if low := ephemeralLow(); low > lowestPort+1000 {
		for range 100 {
			port := lowestPort + rand.IntN(low-lowestPort)
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				l.Close()
				return port
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lowestPort is the lowest port FreePort picks: above the well-known and
// most registered services.
const lowestPort = 10000

// ephemeralLow is the first port of the kernel's range for outgoing
// connections (Linux's default when it cannot be read).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &low)
	}
	return low
}

// BuildDaemon builds the secondopinion binary into a temporary directory,
// for tests that run `secondopinion serve` as a process of its own.
// SECONDOPINION_BIN names a binary to use instead: one built before, to
// compare two versions in the same minutes, or to profile it (perf needs
// the binary after the run).
func BuildDaemon(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("SECONDOPINION_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("SECONDOPINION_BIN: %v", err)
		}
		return bin
	}
	Require(t, "go")
	bin := filepath.Join(t.TempDir(), "secondopinion")
	if out, err := exec.Command("go", "build", "-o", bin, "secondopinion/cmd/secondopinion").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// groupProcesses lists the live (not zombie) processes of process group
// pgid, from /proc; with comm set, only those whose command name is comm.
func groupProcesses(pgid int, comm string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readProcStat(pid)
		if !ok || st.state == "Z" || (comm != "" && st.comm != comm) {
			continue // gone meanwhile, a zombie, or another command
		}
		if st.pgrp == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// procStat is what testenv reads of /proc/<pid>/stat.
type procStat struct {
	comm  string
	state string // R, S, D, T (stopped), Z (zombie), ...
	pgrp  int
}

// readProcStat reads /proc/<pid>/stat; ok is false when the process is
// gone.
func readProcStat(pid int) (st procStat, ok bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return st, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and ')', so
	// it ends at the last ')'.
	lp, rp := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if lp < 0 || rp < lp {
		return st, false
	}
	fields := strings.Fields(string(stat[rp+1:]))
	if len(fields) < 3 {
		return st, false
	}
	pgrp, err := strconv.Atoi(fields[2])
	if err != nil {
		return st, false
	}
	return procStat{comm: string(stat[lp+1 : rp]), state: fields[0], pgrp: pgrp}, true
}

// ServeEach accepts connections on ln until the test ends (it closes ln
// then) and hands each to handle, closing it after: a throwaway server.
func ServeEach(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
			c.Close()
		}
	}()
}
