package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// PostfixOptions configures a private Postfix instance for a test.
type PostfixOptions struct {
	// MaildirBase is the directory under which each mailbox is the maildir
	// BASE/<local part>/ (the layout a Dovecot test instance reads too).
	// Empty means a fresh temporary directory.
	MaildirBase string
	// Domain is the only domain the instance accepts mail for; default
	// example.test.
	Domain string
	// Mailboxes are the local parts that exist. Any other address in Domain
	// is refused with 550 5.1.1. Plus addressing (user+tag@domain) delivers
	// to user's maildir.
	Mailboxes []string
	// Addresses maps further addresses, in any domain, to a mailbox (a
	// local part as in Mailboxes, its maildir BASE/<mailbox>/), or to a
	// Maildir++ folder of one ("mailbox/.Folder", as Dovecot reads it). Their
	// domains are accepted too, as virtual mailbox domains; any other
	// address in them is refused with 550 5.1.1.
	Addresses map[string]string
	// MessageSizeLimit in bytes; 0 means 100 MiB.
	MessageSizeLimit int64
	// Relayhost, if set (host:port), is where mail for every other domain
	// goes, over SMTP without TLS; without it such mail bounces.
	Relayhost string
	// TLS, if set, has the listener offer STARTTLS with this certificate.
	TLS *TLSFiles
}

// Postfix is a private Postfix instance (postfix -c DIR) listening on one
// loopback port only, delivering into maildirs as the mail user (uid 8).
// It shares nothing with the machine's default instance, so several test
// packages can each run their own at once.
type Postfix struct {
	// Addr is the SMTP listener, 127.0.0.1:PORT.
	Addr string
	// Domain is the accepted mail domain.
	Domain string
	// MaildirBase holds one maildir per mailbox.
	MaildirBase string

	dir       string // instance root: conf/, q/, data/, maillog
	confDir   string
	mailboxes []string
	tempFail  atomic.Bool
	policy    net.Listener
}

// StartPostfix starts a private Postfix instance and registers its stop
// and removal with t.Cleanup. It skips (or fails under CI) when Postfix is
// missing or the test does not run as root, which Postfix's master needs.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	Require(t, "postfix", "postconf")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("a private Postfix instance needs root")
		}
		t.Skip("a private Postfix instance needs root")
	}
	if opts.Domain == "" {
		opts.Domain = "example.test"
	}
	if opts.MessageSizeLimit == 0 {
		opts.MessageSizeLimit = 100 << 20
	}
	if opts.MaildirBase == "" {
		opts.MaildirBase = filepath.Join(t.TempDir(), "maildirs")
	}
	// A short root directory keeps the UNIX socket paths of the queue
	// directory under the 108-byte limit whatever the test's name.
	dir, err := os.MkdirTemp("", "pfx")
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	p := &Postfix{
		Domain:      opts.Domain,
		MaildirBase: opts.MaildirBase,
		dir:         dir,
		confDir:     filepath.Join(dir, "conf"),
		mailboxes:   append([]string(nil), opts.Mailboxes...),
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("postfix stop: %v", err)
		}
		os.RemoveAll(dir)
	})
	p.policy, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("postfix policy listener: %v", err)
	}
	go p.servePolicy(p.policy)
	t.Cleanup(func() { p.policy.Close() })
	if err := p.prepare(opts); err != nil {
		t.Fatalf("postfix: %v", err)
	}
	// The port was free a moment ago; another test may take it first, so
	// try a few.
	for try := 0; ; try++ {
		p.Addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		if err = p.writeConfig(opts); err != nil {
			t.Fatalf("postfix: %v", err)
		}
		if err = p.Start(); err == nil {
			return p
		}
		if try == 2 {
			t.Fatalf("postfix start: %v\n%s", err, p.Log())
		}
	}
}

func (p *Postfix) prepare(opts PostfixOptions) error {
	if err := os.Chmod(p.dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{p.confDir, filepath.Join(p.dir, "q"), opts.MaildirBase} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := p.makeQueue(); err != nil {
		return err
	}
	if err := postfixTraversable(opts.MaildirBase); err != nil {
		return err
	}
	if err := os.Chown(opts.MaildirBase, MailUID, MailGID); err != nil {
		return err
	}
	if opts.Relayhost != "" {
		if _, _, err := net.SplitHostPort(opts.Relayhost); err != nil {
			return fmt.Errorf("relayhost: %w", err)
		}
	}
	var maps strings.Builder
	type entry struct{ addr, box string }
	var entries []entry
	for _, u := range opts.Mailboxes {
		entries = append(entries, entry{u + "@" + opts.Domain, u})
	}
	addrs := make([]string, 0, len(opts.Addresses))
	for a := range opts.Addresses {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		if i := strings.LastIndexByte(a, '@'); i <= 0 || i == len(a)-1 || strings.ContainsAny(a, " \t\r\n") {
			return fmt.Errorf("invalid address %q", a)
		}
		entries = append(entries, entry{strings.ToLower(a), opts.Addresses[a]})
	}
	made := map[string]bool{}
	for _, e := range entries {
		u := e.box
		// A mailbox, or a Maildir++ folder of one: "user/.Folder".
		user, folder, _ := strings.Cut(u, "/.")
		if user == "" || strings.ContainsAny(user, "/+@ \t\r\n") || strings.ContainsAny(folder, "/+@ \t\r\n") || strings.HasSuffix(u, "/.") {
			return fmt.Errorf("invalid mailbox local part %q", u)
		}
		fmt.Fprintf(&maps, "%s %s/\n", e.addr, u)
		if made[u] {
			continue
		}
		made[u] = true
		if folder != "" { // a Maildir++ folder lives in its user's maildir
			if err := makeMaildir(filepath.Join(opts.MaildirBase, user)); err != nil {
				return err
			}
		}
		if err := makeMaildir(filepath.Join(opts.MaildirBase, u)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(p.confDir, "mailboxes"), []byte(maps.String()), 0o644); err != nil {
		return err
	}
	return nil
}

// makeQueue creates the queue and data directories as "postfix check"
// would, so that Start can use Postfix's quick-start path and skip the
// installation check (seconds on a busy machine).
func (p *Postfix) makeQueue() error {
	pu, err := user.Lookup("postfix")
	if err != nil {
		return err
	}
	pg, err := user.LookupGroup("postdrop")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	dirs := []struct {
		name     string
		uid, gid int
		mode     os.FileMode
	}{
		{"data", uid, 0, 0o700},
		{"q/pid", 0, 0, 0o755},
		{"q/maildrop", uid, gid, 0o730},
		{"q/public", uid, gid, 0o710},
	}
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, struct {
			name     string
			uid, gid int
			mode     os.FileMode
		}{"q/" + d, uid, 0, 0o700})
	}
	for _, d := range dirs {
		path := filepath.Join(p.dir, d.name)
		if err := os.Mkdir(path, d.mode); err != nil {
			return err
		}
		if err := os.Chown(path, d.uid, d.gid); err != nil {
			return err
		}
		if err := os.Chmod(path, d.mode); err != nil {
			return err
		}
	}
	return nil
}

// postfixTraversable lets the mail user reach dir: every ancestor inside
// the temporary directory gets search permission for others (t.TempDir
// creates them 0700 for root).
func postfixTraversable(dir string) error {
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := filepath.Dir(abs); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
			return err
		}
	}
	return nil
}

func (p *Postfix) writeConfig(opts PostfixOptions) error {
	main := fmt.Sprintf(`# private test instance; generated by testenv.StartPostfix
compatibility_level = 3.6
queue_directory = %[1]s/q
data_directory = %[1]s/data
meta_directory = /etc/postfix
syslog_name = postfix-%[2]s
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = mx.%[3]s
mydomain = %[3]s
myorigin = %[3]s
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
%[11]ssmtp_tls_security_level = none
alias_maps =
alias_database =
relay_domains =
%[10]svirtual_mailbox_domains = %[9]s
virtual_mailbox_base = %[4]s
virtual_mailbox_maps = texthash:%[5]s/mailboxes
virtual_uid_maps = static:%[6]d
virtual_gid_maps = static:%[6]d
virtual_minimum_uid = %[6]d
virtual_mailbox_limit = 0
message_size_limit = %[7]d
recipient_delimiter = +
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
smtpd_recipient_restrictions = check_policy_service inet:%[8]s
biff = no
`, p.dir, filepath.Base(p.dir), opts.Domain, opts.MaildirBase, p.confDir, MailUID, opts.MessageSizeLimit, p.policy.Addr(), strings.Join(postfixDomains(opts), ", "), outbound(opts), smtpdTLS(opts))
	// Only the services a local virtual delivery needs; none chrooted,
	// one inet listener.
	master := p.Addr + ` inet n - n - - smtpd
pickup     unix n - n 60 1 pickup
cleanup    unix n - n - 0 cleanup
qmgr       unix n - n 300 1 qmgr
rewrite    unix - - n - - trivial-rewrite
bounce     unix - - n - 0 bounce
defer      unix - - n - 0 bounce
trace      unix - - n - 0 bounce
verify     unix - - n - 1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
showq      unix n - n - - showq
error      unix - - n - - error
retry      unix - - n - - error
discard    unix - - n - - discard
virtual    unix - n n - - virtual
smtp       unix - - n - - smtp
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
`
	if opts.TLS != nil {
		master += "tlsmgr     unix - - n 1000? 1 tlsmgr\n"
	}
	if err := os.WriteFile(filepath.Join(p.confDir, "main.cf"), []byte(main), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.confDir, "master.cf"), []byte(master), 0o644)
}

// smtpdTLS is the main.cf lines for STARTTLS on the listener.
func smtpdTLS(opts PostfixOptions) string {
	if opts.TLS == nil {
		return "smtpd_tls_security_level = none\n"
	}
	return fmt.Sprintf("smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\nsmtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", opts.TLS.CertFile, opts.TLS.KeyFile)
}

// outbound is the main.cf lines for mail to other domains: to the
// relayhost, or refused.
func outbound(opts PostfixOptions) string {
	if opts.Relayhost == "" {
		return "default_transport = error\nrelay_transport = error\n"
	}
	host, port, _ := net.SplitHostPort(opts.Relayhost) // checked in prepare
	return fmt.Sprintf("default_transport = smtp\nrelay_transport = smtp\nrelayhost = [%s]:%s\n", host, port)
}

// postfixDomains lists the accepted domains: Domain, then those of the
// further addresses, each once.
func postfixDomains(opts PostfixOptions) []string {
	out := []string{opts.Domain}
	seen := map[string]bool{opts.Domain: true}
	var more []string
	for a := range opts.Addresses {
		d := strings.ToLower(a[strings.LastIndexByte(a, '@')+1:])
		if !seen[d] {
			seen[d] = true
			more = append(more, d)
		}
	}
	sort.Strings(more)
	return append(out, more...)
}

func (p *Postfix) postfix(args ...string) error {
	cmd := exec.Command("postfix", append([]string{"-c", p.confDir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("postfix %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Start starts the instance (again, after Stop). It returns once the
// master has bound the listener.
func (p *Postfix) Start() error {
	if err := os.WriteFile(filepath.Join(p.dir, "q", "quick-start"), nil, 0o644); err != nil {
		return err
	}
	return p.postfix("start")
}

// Stop stops the instance and waits until the master and every process it
// started are gone, killing them if they linger. Stopping a stopped
// instance is not an error.
func (p *Postfix) Stop() error {
	pid := p.masterPID()
	if pid == 0 {
		return nil
	}
	stopErr := p.postfix("stop")
	// Postfix's master runs in its own session; every daemon it forks
	// shares its process group.
	deadline := time.Now().Add(10 * time.Second)
	for postfixGroupAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(-pid, syscall.SIGKILL)
			time.Sleep(100 * time.Millisecond)
			if postfixGroupAlive(pid) {
				return fmt.Errorf("postfix process group %d survives SIGKILL", pid)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Remove(filepath.Join(p.dir, "q", "pid", "master.pid"))
	if stopErr != nil && postfixGroupAlive(pid) {
		return stopErr
	}
	return nil
}

func (p *Postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.dir, "q", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// postfixGroupAlive reports whether any process is in process group pgid.
func postfixGroupAlive(pgid int) bool {
	pids, err := groupProcesses(pgid, "")
	if err != nil {
		return syscall.Kill(pgid, 0) == nil
	}
	return len(pids) > 0
}

// SetTempFail makes every recipient get "451 4.3.0" (on), as from a busy
// receiving server, or be judged normally again (off). It takes effect at
// the next RCPT command, in open sessions too.
func (p *Postfix) SetTempFail(on bool) {
	p.tempFail.Store(on)
}

// servePolicy answers Postfix's policy delegation requests (one
// name=value per line, ended by an empty line) for check_policy_service:
// a temporary failure while tempFail is set, else no opinion.
func (p *Postfix) servePolicy(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			r := bufio.NewReader(conn)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.TrimRight(line, "\r\n") != "" {
					continue
				}
				action := "DUNNO"
				if p.tempFail.Load() {
					action = "451 4.3.0 temporarily unavailable (test)"
				}
				if _, err := fmt.Fprintf(conn, "action=%s\n\n", action); err != nil {
					return
				}
			}
		}()
	}
}

// Maildir returns the maildir of a mailbox.
func (p *Postfix) Maildir(user string) string {
	return filepath.Join(p.MaildirBase, user)
}

// Messages returns the messages delivered to a mailbox (new/ and cur/),
// oldest file name first.
func (p *Postfix) Messages(user string) ([][]byte, error) {
	var names []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(p.Maildir(user), sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, filepath.Join(sub, e.Name()))
			}
		}
	}
	sort.Slice(names, func(i, j int) bool { return filepath.Base(names[i]) < filepath.Base(names[j]) })
	msgs := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(p.Maildir(user), n))
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, b)
	}
	return msgs, nil
}

// WaitMessages waits until a mailbox holds at least n messages (Postfix
// delivers a few milliseconds after it accepted) and returns them all.
func (p *Postfix) WaitMessages(user string, n int, timeout time.Duration) ([][]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		msgs, err := p.Messages(user)
		if err != nil || len(msgs) >= n {
			return msgs, err
		}
		if time.Now().After(deadline) {
			return msgs, fmt.Errorf("mailbox %s holds %d messages after %v, want %d", user, len(msgs), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Log returns the instance's mail log, for failure messages.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}
