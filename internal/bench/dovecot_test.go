package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"secondopinion/internal/testenv"
)

// The Dovecot run: the daemon (`secondopinion serve`, in a process of its
// own) reads the service's mailbox from a private Dovecot instance, which
// gets its mail through its maildir as from a local delivery agent; the
// notification probe measures Dovecot's own delay on a mailbox of its own
// meanwhile.
//
//	go test -run '^$' -bench Dovecot -benchtime 1x ./internal/bench \
//	    -dovecot.cases 60 -dovecot.concurrency 8
var (
	dovecotCases       = flag.Int("dovecot.cases", 40, "BenchmarkDovecot: complete cases")
	dovecotConcurrency = flag.Int("dovecot.concurrency", 8, "BenchmarkDovecot: cases in flight")
	dovecotAttachment  = flag.Int("dovecot.attachment", 1<<20, "BenchmarkDovecot: medical file bytes")
	dovecotLog         = flag.String("dovecot.log", "", "BenchmarkDovecot: keep the daemon's log in this file")
	dovecotPostfix     = flag.Bool("dovecot.postfix", false, "BenchmarkDovecot: the daemon submits to a private Postfix that relays all mail to the bench")
	dovecotAppend      = flag.Bool("dovecot.append", false, "BenchmarkDovecot: deliver by IMAP APPEND, as `bench --imap` does, instead of into the maildir")
)

// startDovecotBench starts a private Dovecot with the service's and the
// probe's mailbox, and builds the daemon.
func startDovecotBench(t testing.TB) (*IMAPServer, string) {
	t.Helper()
	const pass = "bench-dovecot"
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{ServiceAddr: pass}})
	name := "dovecot"
	if out, err := exec.Command("dovecot", "--version").Output(); err == nil {
		name += " " + strings.Fields(string(out))[0]
	}
	return &IMAPServer{Name: name, Addr: dc.Addr, Password: pass, Deliver: dc.DeliverTo, Probe: true}, testenv.BuildDaemon(t)
}

// TestRunThroughDovecot runs a few cases through a real Dovecot: every
// case completes with its mail read from Dovecot's mailbox, and the
// probe's figure is Dovecot's notification delay (it waits half a second
// after a change before it tells a client in IDLE).
func TestRunThroughDovecot(t *testing.T) {
	srv, bin := startDovecotBench(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon log:\n%s", b)
		}
	})
	res, err := Run(context.Background(), Options{Dir: dir, Cases: 4, Concurrency: 4, Attachment: 64 << 10,
		Daemon: bin, IMAP: srv, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Daemon != "external" || !strings.HasPrefix(res.IMAP, "dovecot") {
		t.Errorf("daemon %q on IMAP server %q", res.Daemon, res.IMAP)
	}
	if res.MailsIn != 4*Steps || res.Duplicates != 0 || res.Reactions != 4*(Steps-1) {
		t.Errorf("%d mails in (want %d), %d sent twice, %d reactions timed", res.MailsIn, 4*Steps, res.Duplicates, res.Reactions)
	}
	if res.IMAPNotify == nil || res.IMAPNotifySamples == 0 {
		t.Fatalf("no notification delay measured: %+v", res)
	}
	// Every reaction waits for one notification at least.
	if res.Reaction.P50 < res.IMAPNotify.P50/2 {
		t.Errorf("reaction p50 %.0f ms, below half of Dovecot's notification delay p50 %.0f ms", res.Reaction.P50, res.IMAPNotify.P50)
	}
	t.Logf("reaction %+v ms; Dovecot's notification delay %+v ms (%d samples)", res.Reaction, *res.IMAPNotify, res.IMAPNotifySamples)
}

// TestRunThroughIMAPAppend runs the bench against an IMAP server the way
// `bench --imap` does: the bench delivers the service's mail by APPEND, as
// any client may, with no access to the server's delivery agent. The
// mailbox is left empty (handled mail moves to its folder), so a second
// run on the same account works; a mailbox with mail in its inbox is
// refused before the daemon starts, and the mail stays where it is.
func TestRunThroughIMAPAppend(t *testing.T) {
	srv, bin := startDovecotBench(t)
	srv.Deliver = nil
	srv.Name = ""
	run := func(cases int) (*Result, error) {
		return Run(context.Background(), Options{Dir: t.TempDir(), Cases: cases, Concurrency: 2, Attachment: 64 << 10,
			Daemon: bin, IMAP: srv, Timeout: 2 * time.Minute})
	}
	for i, cases := range []int{2, 1} {
		res, err := run(cases)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if res.IMAP != srv.Addr || res.MailsIn != cases*Steps || res.Duplicates != 0 || res.IMAPNotifySamples == 0 {
			t.Errorf("run %d on %q: %d mails in (want %d), %d sent twice, %d notification samples",
				i+1, res.IMAP, res.MailsIn, cases*Steps, res.Duplicates, res.IMAPNotifySamples)
		}
	}
	a := newAppender(srv)
	defer a.close()
	stray := "From: someone@example.org\r\nTo: " + ServiceAddr + "\r\nSubject: not for the bench\r\n\r\nhello\r\n"
	if err := a.append("", strings.NewReader(stray)); err != nil {
		t.Fatal(err)
	}
	if _, err := run(1); err == nil || !strings.Contains(err.Error(), "holds 1 messages") {
		t.Fatalf("run on a mailbox with mail in its inbox: %v, want a refusal", err)
	}
	c, err := srv.login(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || *st.NumMessages != 1 {
		t.Errorf("inbox after the refusal: %+v, %v; want the one message left alone", st, err)
	}
}

// TestRunThroughPostfixAndDovecot runs the cases with the daemon on real
// servers on both sides: it reads its mailbox from Dovecot and submits
// its mail to Postfix, which relays all of it to the bench's SMTP server
// (the participants' mail, and the sent copies, which the bench files into
// Dovecot). Every case completes, nothing arrives twice, and the sent
// copies came through Postfix.
func TestRunThroughPostfixAndDovecot(t *testing.T) {
	srv, bin := startDovecotBench(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Relayhost: listen})
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("daemon log:\n%s\npostfix log:\n%s", b, pf.Log())
		}
	})
	res, err := Run(context.Background(), Options{Dir: dir, Cases: 3, Concurrency: 3, Attachment: 64 << 10,
		Daemon: bin, IMAP: srv, SMTP: &SMTPServer{Addr: pf.Addr, Listen: listen}, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.SMTP != pf.Addr || res.MailsIn != 3*Steps || res.Duplicates != 0 || res.Reactions != 3*(Steps-1) {
		t.Errorf("through %s: %d mails in (want %d), %d sent twice, %d reactions timed", res.SMTP, res.MailsIn, 3*Steps, res.Duplicates, res.Reactions)
	}
	if n := strings.Count(pf.Log(), "relay=127.0.0.1["); n < res.MailsOut {
		t.Errorf("Postfix relayed %d deliveries, want at least the %d mails the participants got", n, res.MailsOut)
	}
	t.Logf("reaction %+v ms; %d mails out through Postfix", res.Reaction, res.MailsOut)
}

// TestRunStopsAtFailedDelivery: a mail the given server does not take
// never reaches the daemon, so the run stops at once with the delivery's
// error instead of waiting for its timeout.
func TestRunStopsAtFailedDelivery(t *testing.T) {
	srv, bin := startDovecotBench(t)
	var n atomic.Int32
	deliver := srv.Deliver
	srv.Deliver = func(user, folder string, r io.Reader) error {
		if folder == "" && n.Add(1) == 3 {
			return errors.New("quota exceeded")
		}
		return deliver(user, folder, r)
	}
	_, err := Run(context.Background(), Options{Dir: t.TempDir(), Cases: 2, Concurrency: 2, Attachment: 16 << 10,
		Daemon: bin, IMAP: srv, Timeout: 10 * time.Minute})
	if err == nil || !strings.Contains(err.Error(), "quota exceeded") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run with a failed delivery: %v; want the delivery's error", err)
	}
}

// BenchmarkDovecot reports the daemon's reaction through Dovecot next to
// Dovecot's own notification delay; the target is a reaction p99 no more
// than 100 ms above that delay.
func BenchmarkDovecot(b *testing.B) {
	srv, bin := startDovecotBench(b)
	if *dovecotAppend {
		srv.Deliver = nil
		srv.Name += " (APPEND)"
	}
	var relay *SMTPServer
	if *dovecotPostfix {
		listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
		pf := testenv.StartPostfix(b, testenv.PostfixOptions{Relayhost: listen})
		relay = &SMTPServer{Addr: pf.Addr, Listen: listen}
	}
	for b.Loop() {
		dir := b.TempDir()
		res, err := Run(context.Background(), Options{Dir: dir, Cases: *dovecotCases, Concurrency: *dovecotConcurrency,
			Attachment: *dovecotAttachment, Daemon: bin, IMAP: srv, SMTP: relay, Timeout: 10 * time.Minute})
		if *dovecotLog != "" {
			if log, rerr := os.ReadFile(filepath.Join(dir, "daemon.log")); rerr == nil {
				_ = os.WriteFile(*dovecotLog, log, 0o600)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.CasesPerSecond, "cases/s")
		b.ReportMetric(res.Reaction.P50, "reaction-p50-ms")
		b.ReportMetric(res.Reaction.P99, "reaction-p99-ms")
		b.ReportMetric(res.IMAPNotify.P50, "notify-p50-ms")
		b.ReportMetric(res.IMAPNotify.P99, "notify-p99-ms")
		b.ReportMetric(res.Reaction.P99-res.IMAPNotify.P99, "above-notify-p99-ms")
		b.Logf("%s: reaction %+v ms, by step %+v; notification delay %+v ms (%d samples); daemon %.0f ms CPU per case, peak RSS %.1f MB",
			res.IMAP, res.Reaction, res.ReactionByStep, *res.IMAPNotify, res.IMAPNotifySamples,
			1000*res.DaemonCPUSeconds/float64(res.Cases), res.PeakRSSMB)
	}
}
