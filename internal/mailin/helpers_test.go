package mailin_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"secondopinion/internal/mailin"
	"secondopinion/internal/testenv"
)

const (
	testUser = "svc"
	testPass = "secret"
)

// memIMAP is an in-process go-imap server with one user.
type memIMAP struct {
	addr string
	user *imapmemserver.User
}

type memOptions struct {
	caps      imap.CapSet
	tls       *tls.Config // STARTTLS offered when set
	implicitT bool        // serve implicit TLS with tls
	// session, if set, wraps each server session (to make it misbehave).
	session func(imapserver.Session) imapserver.Session
}

func startMemIMAP(t testing.TB, o memOptions) *memIMAP {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(testUser, testPass)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	caps := o.caps
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapUIDPlus: {}}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			if o.session != nil {
				return o.session(mem.NewSession()), nil, nil
			}
			return mem.NewSession(), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		TLSConfig:    o.tls,
		Logger:       discardLogger{},
	})
	var ln net.Listener
	var err error
	if o.implicitT {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", o.tls)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &memIMAP{addr: ln.Addr().String(), user: u}
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

func (m *memIMAP) deliver(t testing.TB, raw []byte) {
	t.Helper()
	if _, err := m.user.Append("INBOX", bytes.NewReader(raw), &imap.AppendOptions{Time: time.Now()}); err != nil {
		t.Fatalf("append: %v", err)
	}
}

// testMessage is a small message with the given Message-ID.
func testMessage(id string) []byte {
	return []byte("From: Werknemer <w@example.test>\r\nTo: svc@example.test\r\n" +
		"Subject: Re: [SO-2026-0042] keuze\r\nMessage-ID: <" + id + ">\r\n" +
		"Date: Mon, 02 Feb 2026 10:00:00 +0100\r\n\r\nDe tweede graag.\r\n")
}

// mailboxMessage is what a user of the mailbox sees of one message.
type mailboxMessage struct {
	MessageID string
	Seen      bool
}

// checkMarked checks that the n ingested messages were marked on the
// server: moved to processed, or, without a processed mailbox, left in
// INBOX flagged \Seen.
func checkMarked(t testing.TB, addr, processed string, n int) {
	t.Helper()
	inbox := mailboxContents(t, addr, "INBOX")
	if processed == "" {
		if len(inbox) != n {
			t.Fatalf("INBOX has %d messages, want %d (flagged)", len(inbox), n)
		}
		for _, m := range inbox {
			if !m.Seen {
				t.Errorf("%s not flagged \\Seen", m.MessageID)
			}
		}
		return
	}
	if len(inbox) != 0 {
		t.Errorf("INBOX still has %v", inbox)
	}
	if got := mailboxContents(t, addr, processed); len(got) != n {
		t.Errorf("%s has %d messages, want %d", processed, len(got), n)
	}
}

// mailboxContents lists a mailbox over IMAP, as a mail client would.
func mailboxContents(t testing.TB, addr, mailbox string) []mailboxMessage {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: sel.NumMessages}}, &imap.FetchOptions{Envelope: true, Flags: true}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var out []mailboxMessage
	for _, m := range msgs {
		mm := mailboxMessage{MessageID: m.Envelope.MessageID}
		for _, f := range m.Flags {
			if f == imap.FlagSeen {
				mm.Seen = true
			}
		}
		out = append(out, mm)
	}
	return out
}

// counter counts Notify calls (each is a message newly stored).
type counter struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func newCounter() *counter { return &counter{changed: make(chan struct{})} }

func (c *counter) inc() {
	c.mu.Lock()
	c.n++
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// waitFor blocks until the count reaches n.
func (c *counter) waitFor(t testing.TB, ctx context.Context, n int) {
	t.Helper()
	for {
		c.mu.Lock()
		got, ch := c.n, c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d messages stored and marked, want %d: %v", got, n, ctx.Err())
		case <-ch:
		}
	}
}

// running is an Ingester running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start runs in until stop (or the test's end).
func start(t testing.TB, in *mailin.Ingester) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- in.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
}

func newIngester(t testing.TB, spool mailin.Spool, o mailin.Options) *mailin.Ingester {
	t.Helper()
	if o.Security == "" {
		o.Security = mailin.SecurityPlain
	}
	o.Username, o.Password = testUser, testPass
	if o.Backoff == (mailin.Backoff{}) {
		o.Backoff = mailin.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	in, err := mailin.New(spool, &o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return in
}

func waitCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ids(n int, prefix string) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%d@example.test", prefix, i))
	}
	return out
}

// debugLogger logs everything, at debug level, into l.
func debugLogger(l *testenv.LogBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitMarked waits (bounded) until n messages are marked: the ingester
// marks a batch after it has stored (and notified) each of its messages,
// so a test that saw the last Notify waits here before it stops the
// ingester. The caller checks the outcome (checkMarked).
func waitMarked(t testing.TB, addr, processed string, n int) {
	t.Helper()
	if processed != "" {
		waitMailbox(t, addr, processed, n)
		waitMailbox(t, addr, "INBOX", 0) // without MOVE the copy comes before the expunge
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		seen := 0
		for _, m := range mailboxContents(t, addr, "INBOX") {
			if m.Seen {
				seen++
			}
		}
		if seen >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
