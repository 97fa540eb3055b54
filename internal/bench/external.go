package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout"
	"secondopinion/internal/mailworld"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/registry"
	"secondopinion/internal/rig"
)

// External is a daemon in a process of its own — `secondopinion serve
// --config FILE`, from a built binary — against an in-process mail world
// that lives in the caller's process, so that mail survives the daemon
// being killed and restarted. It writes what serve needs: a configuration,
// the registry (the demo registry), the keys dir with the service key and
// the physicians' public keys, the token key and the IMAP password.
type External struct {
	Dir    string // config, keys, data, daemon.log
	Bin    string
	Config string // the configuration file
	World  *mailworld.World
	Box    *Postbox
	Driver *Driver
	Cast   Cast

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	log      *os.File
	Starts   int
	peakRSS  int64
	cpu      time.Duration // user+system time of the daemon's finished runs
	Registry *registry.Registry

	imap       *IMAPServer
	appender   *appender     // delivery to imap by APPEND, if it has no agent
	deliverErr error         // the first failed delivery to imap
	failed     chan struct{} // closed at the first failed delivery
}

// ServiceAddr is the external daemon's service address.
const ServiceAddr = "so@" + rig.ServiceDomain

// Given are the mail servers a daemon in a process of its own uses in
// place of the mail world's; nil ones are the mail world's.
type Given struct {
	IMAP *IMAPServer
	SMTP *SMTPServer
}

// NewExternal prepares dir and starts the mail world; Start runs the
// daemon. With given servers the daemon reads and submits to those.
func NewExternal(dir, bin string, given Given) (_ *External, err error) {
	imap := given.IMAP
	x := &External{Dir: dir, Bin: bin, Box: NewPostbox(ServiceAddr), Registry: rig.DemoRegistry(), imap: imap,
		failed: make(chan struct{})}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	reg := x.Registry
	// The participants take their mail from the postbox: their domains are
	// relayed, and the world stores only the service's mail.
	relay := []string{"mail.example"}
	for _, p := range reg.Physicians {
		relay = append(relay, p.Email[strings.IndexByte(p.Email, '@')+1:])
	}
	for _, e := range reg.Employers {
		relay = append(relay, e.NoticeEmail[strings.IndexByte(e.NoticeEmail, '@')+1:])
	}
	imapAddr, imapSec, imapUser, imapPass, poll := "", mailin.SecurityPlain, ServiceAddr, "external-daemon", "1s"
	processed := "" // the mail world's: handled mail stays in the inbox, flagged \Seen
	smtpListen := ""
	if given.SMTP != nil {
		smtpListen = given.SMTP.Listen
	}
	if imap == nil {
		if x.World, err = mailworld.New(&mailworld.Options{Domains: []string{rig.ServiceDomain}, Relay: relay, OnAccept: x.Box.Accept,
			SMTPListen: smtpListen}); err != nil {
			return nil, err
		}
		for _, u := range []string{ServiceAddr, rig.AddrBackoffice} {
			if err := x.World.AddUser(u, imapPass); err != nil {
				return nil, err
			}
		}
		imapAddr = x.World.IMAPAddr()
	} else {
		// The service's domain is relayed too: its mail goes to the given
		// server. The daemon waits in IDLE as configured for real (the
		// default poll interval), so that only the server's notifications
		// bring it new mail.
		relay = append(relay, rig.ServiceDomain)
		if x.World, err = mailworld.New(&mailworld.Options{Relay: relay, OnAccept: x.accept, SMTPListen: smtpListen}); err != nil {
			return nil, err
		}
		imapAddr, imapSec, imapUser, imapPass, poll = imap.Addr, imap.security(), imap.user(), imap.Password, "1m"
		// Handled mail moves out of the inbox, as configured for real, so
		// that the next run finds it empty.
		processed = ProcessedFolder
		folders := []string{rig.SentCopyMailbox}
		if imap.Probe {
			folders = append(folders, ProbeFolder)
		}
		if err := imap.prepare(folders...); err != nil {
			return nil, err
		}
		if imap.Deliver == nil {
			x.appender = newAppender(imap)
		}
	}
	keysDir := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return nil, err
	}
	keys, err := pgpmime.OpenKeyring(keysDir)
	if err != nil {
		return nil, err
	}
	born := time.Now().Add(-time.Hour)
	svcArmored, err := pgpmime.GenerateServiceKey("Second opinion bedrijfsarts", ServiceAddr, born, nil)
	if err != nil {
		return nil, err
	}
	if _, err := keys.WriteServiceKey(svcArmored); err != nil {
		return nil, err
	}
	svc, err := pgpmime.ParseServiceKey(svcArmored, nil)
	if err != nil {
		return nil, err
	}
	people := map[string]*Person{}
	for _, p := range reg.Physicians {
		armored, err := pgpmime.GenerateServiceKey(p.Name, p.Email, born, nil)
		if err != nil {
			return nil, err
		}
		k, err := pgpmime.ParseServiceKey(armored, nil)
		if err != nil {
			return nil, err
		}
		pub, err := k.ArmoredPublic()
		if err != nil {
			return nil, err
		}
		if _, err := keys.Import(pub, time.Now()); err != nil {
			return nil, fmt.Errorf("import %s: %w", p.Email, err)
		}
		people[p.Email] = &Person{Name: p.Name, Addr: p.Email, Key: k}
	}
	x.Cast = Cast{Service: ServiceAddr, Original: people[rig.AddrOriginal], SO: map[string]*Person{}}
	for _, p := range reg.Physicians {
		if p.HasRole(registry.RoleSecondOpinion) {
			x.Cast.SO[p.Name] = people[p.Email]
		}
	}
	participantKeys, err := ParticipantKeyring(filepath.Join(dir, "participant-keys"), svc.Public(), time.Now())
	if err != nil {
		return nil, err
	}
	x.Driver = &Driver{SMTPAddr: x.World.SMTPAddr(), Service: svc.Public(), Keys: participantKeys, Box: x.Box, Now: time.Now,
		Tag: strconv.FormatInt(time.Now().UnixNano(), 36)}

	regYAML, err := yaml.Marshal(reg)
	if err != nil {
		return nil, err
	}
	secret := func(name string, b []byte) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, b, 0o600)
	}
	tokenFile, err := secret("token.key", []byte(strings.Repeat("external-token-key", 3)))
	if err != nil {
		return nil, err
	}
	passFile, err := secret("imap.password", []byte(imapPass))
	if err != nil {
		return nil, err
	}
	if _, err := secret("registry.yaml", regYAML); err != nil {
		return nil, err
	}
	imapHost, imapPort, err := net.SplitHostPort(imapAddr)
	if err != nil {
		return nil, err
	}
	smtpHost, smtpPort, err := net.SplitHostPort(x.World.SMTPAddr())
	if err != nil {
		return nil, err
	}
	smtpSec, smtpAuth := mailout.SecurityPlain, ""
	imapCA, smtpCA := "", "" // ca_file lines
	if imap != nil && imap.CAFile != "" {
		if imapCA, err = caFileLine(imap.CAFile); err != nil {
			return nil, err
		}
	}
	if s := given.SMTP; s != nil {
		if smtpHost, smtpPort, err = net.SplitHostPort(s.Addr); err != nil {
			return nil, err
		}
		smtpSec = s.security()
		if s.CAFile != "" {
			if smtpCA, err = caFileLine(s.CAFile); err != nil {
				return nil, err
			}
		}
		if s.User != "" {
			f, err := secret("smtp.password", []byte(s.Password))
			if err != nil {
				return nil, err
			}
			smtpAuth = fmt.Sprintf("\n  username: %s\n  password_file: %s", s.User, f)
		}
	}
	cfg := fmt.Sprintf(`service:
  local_part: so
  domain: %s
  display_name: Second opinion bedrijfsarts
  provider: Arbo Noord
  language: nl
  backoffice: %s
imap:
  host: %q
  port: %s
  security: %s%s
  username: %s
  password_file: %s
  poll_interval: %s
  processed_mailbox: %s
smtp:
  host: %q
  port: %s
  security: %s%s%s
  sent_copy:
    address: %s
    mailbox: %s
    wait: 3s
data_dir: data
keys_dir: keys
registry: registry.yaml
token_key_file: %s
policy:
  strict_auth: false
log:
  format: text
  level: info
http:
  listen: ""
`, rig.ServiceDomain, rig.AddrBackoffice, imapHost, imapPort, imapSec, imapCA, imapUser, passFile, poll, processed, smtpHost, smtpPort, smtpSec, smtpCA, smtpAuth,
		rig.SentCopyAddress("so"), rig.SentCopyMailbox, tokenFile)
	if x.Config, err = secret("secondopinion.yaml", []byte(cfg)); err != nil {
		return nil, err
	}
	if x.log, err = os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, err
	}
	return x, nil
}

// accept records an accepted mail in the postbox and hands the service's
// mail to the given IMAP server: the sent copies to their folder, the rest
// (replies come to +token addresses) to the inbox, as a delivery agent
// that files by +detail only into a folder that exists.
func (x *External) accept(from string, to []string, raw []byte) {
	x.Box.Accept(from, to, raw)
	for _, rcpt := range to {
		if mailbox(rcpt) != ServiceAddr {
			continue
		}
		folder := ""
		if strings.EqualFold(rcpt, rig.SentCopyAddress("so")) {
			folder = rig.SentCopyMailbox
		}
		head := "Delivered-To: " + rcpt + "\r\n"
		if err := x.imap.deliver(x.appender, folder, io.MultiReader(strings.NewReader(head), bytes.NewReader(raw))); err != nil {
			x.mu.Lock()
			if x.deliverErr == nil {
				x.deliverErr = fmt.Errorf("deliver to %s: %w", rcpt, err)
				close(x.failed)
			}
			x.mu.Unlock()
		}
	}
}

// Failed is closed at the first failed delivery to the given IMAP server:
// the mail it held will never reach the daemon.
func (x *External) Failed() <-chan struct{} { return x.failed }

// DeliveryError is the first failed delivery to the given IMAP server.
func (x *External) DeliveryError() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.deliverErr
}

// Start runs the daemon (it must not be running).
func (x *External) Start() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cmd != nil {
		return errors.New("daemon already running")
	}
	cmd := exec.Command(x.Bin, "serve", "--config", x.Config)
	cmd.Dir = x.Dir
	cmd.Stdout, cmd.Stderr = x.log, x.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	x.Starts++
	fmt.Fprintf(x.log, "--- bench: daemon start %d, pid %d\n", x.Starts, cmd.Process.Pid)
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	x.cmd, x.exited = cmd, exited
	return nil
}

// Pid is the running daemon's process id (0: none).
func (x *External) Pid() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cmd == nil {
		return 0
	}
	return x.cmd.Process.Pid
}

// PeakRSS is the highest peak RSS of any of the daemon's runs so far (the
// running one included).
func (x *External) PeakRSS() int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.notePeakLocked()
	return x.peakRSS
}

func (x *External) notePeakLocked() {
	if x.cmd != nil {
		x.peakRSS = max(x.peakRSS, PeakRSSOf(x.cmd.Process.Pid))
	}
}

// CPU is the user+system CPU time of the daemon's finished runs.
func (x *External) CPU() time.Duration {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cpu
}

// Kill kills the daemon with SIGKILL and waits for it to be gone.
func (x *External) Kill() error { return x.signal(syscall.SIGKILL, "kill -9") }

// Stop stops the daemon with SIGTERM (it finishes its step) and waits.
func (x *External) Stop() error { return x.signal(syscall.SIGTERM, "stop") }

func (x *External) signal(sig syscall.Signal, what string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cmd == nil {
		return nil
	}
	x.notePeakLocked()
	fmt.Fprintf(x.log, "--- bench: %s pid %d\n", what, x.cmd.Process.Pid)
	if err := x.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-x.exited:
	case <-time.After(30 * time.Second):
		x.cmd.Process.Kill()
		<-x.exited
		x.cmd = nil
		return fmt.Errorf("daemon did not %s within 30 s", what)
	}
	state := x.cmd.ProcessState
	x.cmd = nil
	if state != nil {
		x.cpu += state.UserTime() + state.SystemTime()
	}
	if sig == syscall.SIGTERM && state != nil && !state.Success() {
		return fmt.Errorf("daemon exited with %v after SIGTERM (see %s)", state, filepath.Join(x.Dir, "daemon.log"))
	}
	return nil
}

// Running reports whether the daemon process is alive (it has not exited
// on its own).
func (x *External) Running() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cmd == nil {
		return false
	}
	select {
	case <-x.exited:
		return false
	default:
		return true
	}
}

// Close kills the daemon if it runs and stops the mail world.
func (x *External) Close() error {
	err := x.Kill()
	if x.World != nil {
		err = errors.Join(err, x.World.Close())
	}
	if x.appender != nil {
		x.appender.close()
	}
	if x.log != nil {
		x.log.Close()
	}
	return err
}

// DataDir is the daemon's data directory.
func (x *External) DataDir() string { return filepath.Join(x.Dir, "data") }

// Employees returns n employees, numbered from from, with addresses
// prefixNNNNNN@mail.example: a relayed domain, so they need no mailbox.
func Employees(prefix string, from, n int) []*Person {
	out := make([]*Person, 0, n)
	for i := from; i < from+n; i++ {
		out = append(out, &Person{Name: fmt.Sprintf("Werknemer %d", i), Addr: fmt.Sprintf("%s%06d@mail.example", prefix, i)})
	}
	return out
}

// logTail is the daemon log's last n lines.
func (x *External) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(x.Dir, "daemon.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// logProblems is the daemon log's last n warnings and errors: why a run
// went nowhere (a server that refused the daemon, say). The error of the
// run carries them, since the log goes with the temporary dir.
func (x *External) logProblems(n int) string {
	b, _ := os.ReadFile(filepath.Join(x.Dir, "daemon.log"))
	var out []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out[max(len(out)-n, 0):], "\n")
}

// WaitReady waits until the daemon has started (its log says "serving";
// it logs in to IMAP right after) or ctx ends.
func (x *External) WaitReady(ctx context.Context) error {
	for {
		if !x.Running() {
			return fmt.Errorf("daemon exited; the end of its log:\n%s", x.logTail(5))
		}
		b, _ := os.ReadFile(filepath.Join(x.Dir, "daemon.log"))
		if strings.Count(string(b), "msg=serving") >= x.Starts {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// caFileLine is the ca_file line of a server's section in the daemon's
// configuration, for the file at path (made absolute: the daemon runs in
// its own directory).
func caFileLine(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return "\n  ca_file: " + strconv.Quote(abs), nil
}
