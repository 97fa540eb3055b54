package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// MailUID and MailGID are the ids of Debian's stock "mail" user, which owns
// the maildirs that Dovecot serves and Postfix delivers into.
const (
	MailUID = 8
	MailGID = 8
)

// DovecotOptions configures a private Dovecot instance.
type DovecotOptions struct {
	// MaildirBase is the directory holding one maildir per user, at
	// MaildirBase/<user>/ (the layout Postfix's virtual delivery writes with
	// "user@domain user/" map lines). Empty means a fresh temp dir.
	MaildirBase string
	// Users maps IMAP user name to password.
	Users map[string]string
	// Capability, if set, replaces the capability list Dovecot advertises
	// after login (imap_capability), e.g. to present a server without IDLE.
	Capability string
	// TLS, if set, has the listener offer STARTTLS with this certificate
	// (plain logins still work).
	TLS *TLSFiles
}

// Dovecot is a private Dovecot IMAP server on 127.0.0.1, started for one test.
// It has its own config file, base_dir, state_dir and instance_name, so
// several can run in parallel on one machine.
type Dovecot struct {
	// Addr is the plain-text IMAP listener, 127.0.0.1:port. It stays the same
	// across Stop and Start.
	Addr string
	// MaildirBase is where the users' maildirs are (MaildirBase/<user>/).
	MaildirBase string

	t        testing.TB
	dir      string
	conf     string
	logPath  string
	greeting string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var deliverSeq atomic.Uint64

// StartDovecot starts a private Dovecot for the test and stops it in
// t.Cleanup. The test is skipped (failed under CI) when dovecot is missing.
// It must run as root: Dovecot's master drops to the mail user.
func StartDovecot(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	Require(t, "dovecot")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("dovecot tests need root (Dovecot drops privileges to the mail user)")
		}
		t.Skip("dovecot tests need root (Dovecot drops privileges to the mail user)")
	}

	dir := t.TempDir()
	base := opts.MaildirBase
	if base == "" {
		base = filepath.Join(dir, "mail")
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatalf("dovecot: maildir base: %v", err)
	}
	// Dovecot's login and mail processes run as unprivileged users; they
	// must be able to reach base_dir and the maildirs through the test's
	// 0700 temp dirs.
	for _, p := range []string{dir, base} {
		if err := makeTraversable(p); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	if err := os.Chown(base, MailUID, MailGID); err != nil {
		t.Fatalf("dovecot: chown maildir base: %v", err)
	}

	d := &Dovecot{
		MaildirBase: base,
		t:           t,
		dir:         dir,
		conf:        filepath.Join(dir, "dovecot.conf"),
		logPath:     filepath.Join(dir, "dovecot.log"),
	}

	users := make([]string, 0, len(opts.Users))
	for u := range opts.Users {
		users = append(users, u)
	}
	sort.Strings(users)
	var passwd strings.Builder
	for _, u := range users {
		pw := opts.Users[u]
		if strings.ContainsAny(u, ":\n/") || strings.ContainsAny(pw, ":\n") {
			t.Fatalf("dovecot: user %q or its password contains ':', '/' or a newline", u)
		}
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s::::::\n", u, pw)
		if err := makeMaildir(filepath.Join(base, u)); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	passwdPath := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwdPath, []byte(passwd.String()), 0o644); err != nil {
		t.Fatalf("dovecot: passwd file: %v", err)
	}

	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	conf := dovecotConf{
		Instance:   "sotest-" + hex.EncodeToString(rnd[:]),
		BaseDir:    filepath.Join(dir, "run"),
		StateDir:   filepath.Join(dir, "state"),
		LogPath:    d.logPath,
		Maildir:    base,
		Passwd:     passwdPath,
		Capability: opts.Capability,
		TLS:        opts.TLS,
	}
	d.greeting = conf.greeting()
	if err := os.MkdirAll(conf.StateDir, 0o755); err != nil {
		t.Fatalf("dovecot: state dir: %v", err)
	}
	t.Cleanup(d.Stop)
	// A port that was free a moment ago may be another process's by the
	// time Dovecot binds it (tests run in parallel, in several packages):
	// then Dovecot exits, or, worse, another server answers on it. The
	// greeting tells; a fresh port is tried.
	for attempt := 1; ; attempt++ {
		conf.Port = FreePort(t)
		d.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(conf.Port))
		if err := os.WriteFile(d.conf, []byte(conf.render()), 0o644); err != nil {
			t.Fatalf("dovecot: config: %v", err)
		}
		err := d.start()
		if err == nil {
			return d
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("dovecot: %v\n%s", err, d.Log())
		}
		t.Logf("dovecot: %v; trying another port", err)
	}
}

type dovecotConf struct {
	Instance, BaseDir, StateDir, LogPath, Maildir, Passwd, Capability string
	Port                                                              int
	TLS                                                               *TLSFiles
}

// greeting is the instance's own greeting, by which the test knows that
// it talks to this instance.
func (c dovecotConf) greeting() string { return "Dovecot ready (" + c.Instance + ")" }

func (c dovecotConf) ssl() string {
	if c.TLS == nil {
		return "ssl = no"
	}
	return fmt.Sprintf("ssl = yes\nssl_cert = <%s\nssl_key = <%s", c.TLS.CertFile, c.TLS.KeyFile)
}

func (c dovecotConf) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# private Dovecot instance for one test
instance_name = %s
base_dir = %s
state_dir = %s
log_path = %s
protocols = imap
listen = 127.0.0.1
login_greeting = %s
%s
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:%s/%%u
first_valid_uid = %d
first_valid_gid = %d
mail_fsync = never
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %s
}
userdb {
  driver = passwd-file
  args = username_format=%%u %s
  default_fields = uid=mail gid=mail home=%s/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %d
  }
  inet_listener imaps {
    port = 0
  }
}
`, c.Instance, c.BaseDir, c.StateDir, c.LogPath, c.greeting(), c.ssl(), c.Maildir, MailUID, MailGID,
		c.Passwd, c.Passwd, c.Maildir, c.Port)
	if c.Capability != "" {
		fmt.Fprintf(&b, "protocol imap {\n  imap_capability = %s\n}\n", c.Capability)
	}
	return b.String()
}

// Start starts the server (again, after Stop) and waits until it greets
// on Addr.
func (d *Dovecot) Start() {
	d.t.Helper()
	if err := d.start(); err != nil {
		d.t.Fatalf("dovecot: %v\n%s", err, d.Log())
	}
}

func (d *Dovecot) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return nil
	}
	logStart := len(d.Log())
	// -F keeps the master in the foreground, so the test owns the process.
	cmd := exec.Command("dovecot", "-F", "-c", d.conf)
	cmd.Stdout = nil
	cmd.Stderr = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	d.cmd, d.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := waitGreeting(ctx, d.Addr, d.greeting, done)
	if err != nil {
		d.stopLocked()
		// The log is kept across starts: only this start's lines count.
		if log := d.Log(); len(log) > logStart && strings.Contains(log[logStart:], "Address already in use") {
			err = fmt.Errorf("%w (%v)", errPortTaken, err)
		}
		return fmt.Errorf("not ready on %s: %w", d.Addr, err)
	}
	return nil
}

// errPortTaken says that another process had the instance's port.
var errPortTaken = errors.New("the port is another process's")

// waitGreeting polls addr until a server there greets with greeting.
// Polling is the only readiness signal a daemon's TCP listener gives; it is
// bounded by ctx.
func waitGreeting(ctx context.Context, addr, greeting string, exited <-chan struct{}) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		line, err := readGreeting(addr)
		if err == nil {
			if !strings.Contains(line, greeting) {
				return fmt.Errorf("%w: it greets %q", errPortTaken, line)
			}
			return nil
		}
		select {
		case <-exited:
			return errors.New("dovecot exited")
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// readGreeting connects to addr and reads the server's first line.
func readGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// Stop stops the server and every process it started, closing all client
// connections. The maildirs are kept, so Start serves them again.
func (d *Dovecot) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
}

func (d *Dovecot) stopLocked() {
	if d.cmd == nil {
		return
	}
	// SIGTERM to the whole process group: the master and every child it
	// forked (login, imap, auth) stop at once, closing client connections;
	// the master alone waits about a second for its children.
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGCONT) // a process Hang stopped
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	d.cmd, d.done = nil, nil
}

// Hang stops (SIGSTOP) every mail process of the server that serves a
// logged-in IMAP connection now: those connections stay open, the kernel
// still acknowledges what the client sends, and nothing comes back — a
// server process that hangs. New connections get fresh processes and work:
// Hang stops the processes at a moment when none holds a lock on a
// mailbox (a file lock, or a dotlock file in the maildirs), trying again
// if one does, since a process stopped with a lock would make every other
// session of that mailbox wait as well. It returns how many processes it
// stopped and a func that lets them go on (SIGCONT); Stop lets them go too.
func (d *Dovecot) Hang() (n int, resume func()) {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		d.t.Fatal("dovecot: Hang while stopped")
	}
	for range 100 {
		stopped := d.stopMailProcesses()
		resume = func() {
			for _, pid := range stopped {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		locked, err := d.holdLocks(stopped)
		if err != nil {
			resume()
			d.t.Fatalf("dovecot: %v", err)
		}
		if !locked {
			return len(stopped), resume
		}
		resume()
		time.Sleep(10 * time.Millisecond)
	}
	d.t.Fatal("dovecot: the mail processes held a lock at every try to stop them")
	return 0, nil
}

// stopMailProcesses stops the server's imap processes and returns them.
func (d *Dovecot) stopMailProcesses() []int {
	pids, err := groupProcesses(d.cmd.Process.Pid, "imap")
	if err != nil {
		d.t.Fatalf("dovecot: %v", err)
	}
	var stopped []int
	for _, pid := range pids {
		err := syscall.Kill(pid, syscall.SIGSTOP)
		switch {
		case err == nil:
			stopped = append(stopped, pid)
		case !errors.Is(err, syscall.ESRCH): // ESRCH: it ended meanwhile (a logout)
			d.t.Fatalf("dovecot: stop mail process %d: %v", pid, err)
		}
	}
	// The signal is only queued: a process running on the other core may
	// still take a lock. Locks are looked at once all have stopped.
	for _, pid := range stopped {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			st, ok := readProcStat(pid)
			if !ok || st.state == "T" || st.state == "Z" {
				break
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("dovecot: mail process %d not stopped after 5 s (state %s)", pid, st.state)
			}
		}
	}
	return stopped
}

// holdLocks reports whether one of pids holds a file lock (/proc/locks),
// or a dotlock file (Dovecot's dovecot-uidlist.lock) is in the maildirs.
func (d *Dovecot) holdLocks(pids []int) (bool, error) {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return false, err
	}
	holders := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		// 1: POSIX  ADVISORY  WRITE 1234 08:01:56789 0 EOF
		if f := strings.Fields(line); len(f) > 4 {
			holders[f[4]] = true
		}
	}
	for _, pid := range pids {
		if holders[strconv.Itoa(pid)] {
			return true, nil
		}
	}
	dotlock := false
	err = filepath.WalkDir(d.MaildirBase, func(path string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(e.Name(), ".lock") {
			dotlock = true
			return filepath.SkipAll
		}
		return nil // a file gone meanwhile
	})
	return dotlock, err
}

// Log returns Dovecot's log so far, for failure messages.
func (d *Dovecot) Log() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// Deliver drops raw straight into user's maildir (new/), owned by the mail
// user, as a local delivery agent would. Dovecot picks it up like any new mail.
func (d *Dovecot) Deliver(user string, raw []byte) {
	d.t.Helper()
	d.DeliverFrom(user, bytes.NewReader(raw))
}

// DeliverFrom is Deliver with the message read from r, for messages too
// large to hold in memory.
func (d *Dovecot) DeliverFrom(user string, r io.Reader) {
	d.t.Helper()
	if err := d.DeliverTo(user, "", r); err != nil {
		d.t.Fatalf("dovecot deliver: %v", err)
	}
}

// DeliverTo drops the message read from r into user's maildir, in folder
// (a Maildir++ folder, created if need be; "" is the inbox), as a local
// delivery agent would. Unlike Deliver it returns its error, so that it
// can be called from any goroutine.
//
// The file's name carries its size (S=) and its size with CRLF line ends
// (W=, what IMAP reports as RFC822.SIZE), as Dovecot's own delivery (LDA,
// LMTP) names the files it saves: without them Dovecot reads the whole
// message to count its lines the first time a client asks for its size,
// 5 ms for a 2 MB message.
func (d *Dovecot) DeliverTo(user, folder string, r io.Reader) error {
	mdir := filepath.Join(d.MaildirBase, user)
	if err := makeMaildir(mdir); err != nil {
		return err
	}
	if folder != "" {
		if strings.ContainsAny(folder, "/.") {
			return fmt.Errorf("folder %q: not a plain name", folder)
		}
		mdir = filepath.Join(mdir, "."+folder)
		if err := makeMaildir(mdir); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000,
		os.Getpid(), deliverSeq.Add(1), host)
	tmp := filepath.Join(mdir, "tmp", name)
	lc := &lineCounter{}
	if err := writeOwned(tmp, io.TeeReader(r, lc)); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(mdir, "new", fmt.Sprintf("%s,S=%d,W=%d", name, lc.n, lc.n+lc.bareLF)))
}

// lineCounter counts the bytes written to it and the line feeds among
// them that no carriage return precedes.
type lineCounter struct {
	n, bareLF int64
	lastCR    bool
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.bareLF += int64(bytes.Count(p, []byte("\n")) - bytes.Count(p, []byte("\r\n")))
	if c.lastCR && p[0] == '\n' {
		c.bareLF--
	}
	c.lastCR = p[len(p)-1] == '\r'
	c.n += int64(len(p))
	return len(p), nil
}

func writeOwned(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(MailUID, MailGID); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// makeMaildir creates the maildir root/{cur,new,tmp} owned by mail: a
// user's, or a Maildir++ folder in one.
func makeMaildir(root string) error {
	for _, p := range []string{root, filepath.Join(root, "cur"), filepath.Join(root, "new"), filepath.Join(root, "tmp")} {
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("maildir %s: %w", p, err)
		}
		if err := os.Chown(p, MailUID, MailGID); err != nil {
			return fmt.Errorf("maildir %s: %w", p, err)
		}
	}
	return nil
}

// makeTraversable adds search (x) permission for group and others on path and
// on each of its ancestors inside the system temp dir, so that a daemon
// running as another user can reach path.
func makeTraversable(path string) error {
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return err
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for strings.HasPrefix(p, tmp+string(filepath.Separator)) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if mode := fi.Mode().Perm(); mode&0o011 != 0o011 {
			if err := os.Chmod(p, mode|0o011); err != nil {
				return err
			}
		}
		p = filepath.Dir(p)
	}
	return nil
}
