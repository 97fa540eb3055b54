package mailin_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout/smtptest"
	"secondopinion/internal/testenv"
)

func TestNewOptions(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	tests := []struct {
		name    string
		opts    mailin.Options
		wantErr error
	}{
		{"plain to loopback v4", mailin.Options{Addr: "127.0.0.1:143", Security: mailin.SecurityPlain, Username: "u"}, nil},
		{"plain to loopback v6", mailin.Options{Addr: "[::1]:143", Security: mailin.SecurityPlain, Username: "u"}, nil},
		{"plain to localhost", mailin.Options{Addr: "localhost:143", Security: mailin.SecurityPlain, Username: "u"}, nil},
		{"plain to a remote host", mailin.Options{Addr: "imap.example.org:143", Security: mailin.SecurityPlain, Username: "u"}, mailin.ErrPlainNotLoopback},
		{"plain to a remote address", mailin.Options{Addr: "192.0.2.1:143", Security: mailin.SecurityPlain, Username: "u"}, mailin.ErrPlainNotLoopback},
		{"tls by default", mailin.Options{Addr: "imap.example.org:993", Username: "u"}, nil},
		{"starttls", mailin.Options{Addr: "imap.example.org:143", Security: mailin.SecurityStartTLS, Username: "u"}, nil},
		{"unknown security", mailin.Options{Addr: "imap.example.org:993", Security: "ssl3", Username: "u"}, mailin.ErrBadOptions},
		{"no port", mailin.Options{Addr: "imap.example.org", Username: "u"}, mailin.ErrBadOptions},
		{"no username", mailin.Options{Addr: "imap.example.org:993"}, mailin.ErrBadOptions},
		{"processed is the inbox", mailin.Options{Addr: "imap.example.org:993", Username: "u", ProcessedMailbox: "INBOX"}, mailin.ErrBadOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mailin.New(spool, &tt.opts)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("New: err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestIngest: mail already waiting and mail arriving while the ingester
// runs is stored once each and ends up marked, in every marking mode.
func TestIngest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		caps      imap.CapSet
		processed string
	}{
		{"flag seen", nil, ""},
		{"move", nil, "Verwerkt"},
		{"copy and expunge without MOVE", imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, "Verwerkt"},
		{"copy and expunge without UIDPLUS", imap.CapSet{imap.CapIMAP4rev1: {}}, "Verwerkt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startMemIMAP(t, memOptions{caps: tt.caps})
			spool := newFileSpool(t)
			notified, passes := newCounter(), newCounter()
			var lagMu sync.Mutex
			var lags []time.Duration
			in := newIngester(t, spool, mailin.Options{
				Addr: srv.addr, ProcessedMailbox: tt.processed,
				// go-imap's memory server may not report a message appended
				// just before IDLE begins (no EXISTS); an IDLE that ends
				// after PollInterval and selects again is the safety net, as
				// with any server. Short here, so such a run takes a second
				// instead of timing out.
				PollInterval: time.Second,
				Notify:       notified.inc,
				ObservePass:  func(time.Time) { passes.inc() },
				ObserveLag: func(d time.Duration) {
					lagMu.Lock()
					lags = append(lags, d)
					lagMu.Unlock()
				},
			})
			msgIDs := ids(4, "ingest")
			srv.deliver(t, testMessage(msgIDs[0]))
			srv.deliver(t, testMessage(msgIDs[1]))
			r := start(t, in)
			ctx := waitCtx(t)
			if _, err := spool.waitFor(ctx, hasNew(msgIDs[:2]...)); err != nil {
				t.Fatalf("waiting mail not stored: %v", err)
			}
			srv.deliver(t, testMessage(msgIDs[2]))
			srv.deliver(t, testMessage(msgIDs[3]))
			notified.waitFor(t, ctx, 4)
			waitMarked(t, srv.addr, tt.processed, 4)
			// A pass ends once what it found is stored and marked.
			passes.waitFor(t, ctx, 1)
			r.stop(t)

			recs := spool.snapshot()
			if len(recs) != 4 {
				t.Errorf("spool got %d Store calls, want 4", len(recs))
			}
			for id, n := range uniqueIDs(recs) {
				if n != 1 {
					t.Errorf("%s stored %d times", id, n)
				}
			}
			for _, r := range recs {
				if r.Raw.Mailbox != "INBOX" || r.Raw.UID == 0 || r.Raw.UIDValidity == 0 || r.Raw.Size == 0 || r.Raw.Oversize {
					t.Errorf("unexpected Raw %+v", r.Raw)
				}
				if fi, err := os.Stat(r.Path); err != nil || fi.Size() != r.Raw.Size {
					t.Errorf("stored file for %s: %v, size %d, want %d", r.MessageID, err, fi.Size(), r.Raw.Size)
				}
			}
			if got := notified.get(); got != 4 {
				t.Errorf("Notify called %d times, want 4", got)
			}
			lagMu.Lock()
			if len(lags) != 4 {
				t.Errorf("ObserveLag called %d times, want 4", len(lags))
			}
			lagMu.Unlock()

			checkMarked(t, srv.addr, tt.processed, 4)
		})
	}
}

// TestIngestSecurity: implicit TLS and STARTTLS connect and verify the
// server certificate.
func TestIngestSecurity(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := smtptest.SelfSignedTLS(t)
	tests := []struct {
		name     string
		security mailin.Security
		implicit bool
	}{
		{"implicit tls", mailin.SecurityTLS, true},
		{"starttls", mailin.SecurityStartTLS, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startMemIMAP(t, memOptions{tls: serverTLS, implicitT: tt.implicit})
			spool := newFileSpool(t)
			in := newIngester(t, spool, mailin.Options{Addr: srv.addr, Security: tt.security, TLSConfig: clientTLS})
			id := tt.name + "@example.test"
			srv.deliver(t, testMessage(id))
			start(t, in)
			if _, err := spool.waitFor(waitCtx(t), hasNew(id)); err != nil {
				t.Fatalf("not stored over %s: %v", tt.security, err)
			}
		})
	}
}

// TestIngestUntrustedCertificate: a certificate the client does not trust
// ends the session before login; nothing is read.
func TestIngestUntrustedCertificate(t *testing.T) {
	t.Parallel()
	serverTLS, _ := smtptest.SelfSignedTLS(t)
	srv := startMemIMAP(t, memOptions{tls: serverTLS, implicitT: true})
	srv.deliver(t, testMessage("untrusted@example.test"))
	var logs testenv.LogBuffer
	spool := newFileSpool(t)
	in := newIngester(t, spool, mailin.Options{Addr: srv.addr, Security: mailin.SecurityTLS, Logger: debugLogger(&logs)})
	r := start(t, in)
	if !logs.WaitFor(waitCtx(t), "certificate") {
		t.Fatalf("log does not name the certificate problem:\n%s", logs.String())
	}
	r.stop(t)
	if got := spool.snapshot(); len(got) != 0 {
		t.Errorf("message read over an untrusted TLS connection: %+v", got)
	}
}

// TestDialSilentServer: a server that accepts the connection and never
// greets holds Dial only until its ctx ends (go-imap alone would wait
// 30 s for the greeting), for each kind of security.
func TestDialSilentServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn // open, silent, until the listener is closed
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	for _, sec := range []mailin.Security{mailin.SecurityTLS, mailin.SecurityStartTLS, mailin.SecurityPlain} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		begin := time.Now()
		c, err := mailin.Dial(ctx, ln.Addr().String(), sec, nil)
		cancel()
		if took := time.Since(begin); took > 10*time.Second {
			t.Errorf("%s: Dial returned after %v, not when its ctx ended", sec, took)
		}
		if err == nil {
			c.Close()
			t.Fatalf("%s: Dial to a server that never greets succeeded", sec)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Dial error %v, want the end of its ctx", sec, err)
		}
	}
}

// TestIngestCrashBetweenStoreAndMark: the process dies after the spool has
// the message and before it is marked. The next run finds it unmarked, the
// spool says duplicate, and only then is it marked: processed once.
func TestIngestCrashBetweenStoreAndMark(t *testing.T) {
	t.Parallel()
	srv := startMemIMAP(t, memOptions{})
	spool := newFileSpool(t)
	id := "crash@example.test"
	srv.deliver(t, testMessage(id))
	crashBetweenStoreAndMark(t, srv.addr, spool)
}

// TestIngestRefusedMark: the processed folder is deleted (by someone
// tidying the mailbox) while the ingester runs, so the server refuses the
// next move. The marks are sent without waiting for their answer; the
// refusal still ends the session with a line that says so, the folder is
// made again at the reconnect, and the message, stored once, ends up
// there.
func TestIngestRefusedMark(t *testing.T) {
	t.Parallel()
	srv := startMemIMAP(t, memOptions{})
	spool := newFileSpool(t)
	var logs testenv.LogBuffer
	in := newIngester(t, spool, mailin.Options{Addr: srv.addr, ProcessedMailbox: "Verwerkt", Logger: debugLogger(&logs),
		PollInterval: time.Second}) // see TestIngest
	first, second := "first@example.test", "second@example.test"
	srv.deliver(t, testMessage(first))
	r := start(t, in)
	if _, err := spool.waitFor(waitCtx(t), hasNew(first)); err != nil {
		t.Fatal(err)
	}
	waitMailbox(t, srv.addr, "Verwerkt", 1)

	if err := srv.user.Delete("Verwerkt"); err != nil {
		t.Fatal(err)
	}
	srv.deliver(t, testMessage(second))
	// Fetched again after the reconnect, which made the folder again.
	if _, err := spool.waitFor(waitCtx(t), func(r []record) bool { return len(r) == 3 }); err != nil {
		t.Fatal(err)
	}
	got := waitMailbox(t, srv.addr, "Verwerkt", 1)
	r.stop(t)
	if got[0].MessageID != second {
		t.Errorf("Verwerkt holds %s, want %s", got[0].MessageID, second)
	}
	if inbox := mailboxContents(t, srv.addr, "INBOX"); len(inbox) != 0 {
		t.Errorf("INBOX still holds %v", inbox)
	}
	recs := spool.snapshot()
	if n := uniqueIDs(recs); n[first] != 1 || n[second] != 1 {
		t.Errorf("new stores per id = %v, want one each", n)
	}
	if len(recs) != 3 || !recs[2].Stored.Duplicate {
		t.Errorf("spool got %d Store calls (%+v), want 3: the refused one fetched again as a duplicate", len(recs), recs)
	}
	if !strings.Contains(logs.String(), "move to Verwerkt") {
		t.Errorf("the refused move is not logged:\n%s", logs.String())
	}
}

// TestIngestServerKeepsMovedMail: a server that answers a move with OK and
// still shows the message in the inbox. The message is stored once; it is
// fetched again about once per poll interval, not in a tight loop against
// the server.
func TestIngestServerKeepsMovedMail(t *testing.T) {
	t.Parallel()
	srv := startMemIMAP(t, memOptions{session: func(s imapserver.Session) imapserver.Session { return keepingMove{s} }})
	spool := newFileSpool(t)
	const poll = 100 * time.Millisecond
	in := newIngester(t, spool, mailin.Options{Addr: srv.addr, ProcessedMailbox: "Verwerkt", PollInterval: poll})
	id := "kept@example.test"
	srv.deliver(t, testMessage(id))
	r := start(t, in)
	if _, err := spool.waitFor(waitCtx(t), hasNew(id)); err != nil {
		t.Fatal(err)
	}
	const watch = time.Second
	time.Sleep(watch)
	r.stop(t)
	recs := spool.snapshot()
	if n := uniqueIDs(recs)[id]; n != 1 {
		t.Errorf("stored as new %d times, want 1", n)
	}
	// About watch/poll fetches; a loop that does not wait makes hundreds.
	if max := 3 * int(watch/poll); len(recs) > max {
		t.Errorf("fetched %d times in %v, want at most %d (about one per poll interval, %v)", len(recs), watch, max, poll)
	}
}

// keepingMove is a server session whose MOVE copies the messages and
// leaves them where they are.
type keepingMove struct{ imapserver.Session }

func (s keepingMove) Move(_ *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	_, err := s.Copy(numSet, dest)
	return err
}

// waitMailbox waits until a mailbox holds n messages. Marking happens right
// after the spool returns, so there is no event to wait on from outside;
// this polls briefly and is bounded.
func waitMailbox(t testing.TB, addr, mailbox string, n int) []mailboxMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := mailboxContents(t, addr, mailbox)
		if len(got) == n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("%s has %d messages, want %d", mailbox, len(got), n)
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIngestUIDValidityChange: the mailbox is recreated (new UIDVALIDITY,
// flags lost) while the ingester is away. Everything is fetched again, the
// spool recognises what it has, and all ends up marked.
func TestIngestUIDValidityChange(t *testing.T) {
	t.Parallel()
	srv := startMemIMAP(t, memOptions{})
	spool := newFileSpool(t)
	var logs testenv.LogBuffer
	in := newIngester(t, spool, mailin.Options{Addr: srv.addr, Logger: debugLogger(&logs)})
	old, fresh := "old@example.test", "fresh@example.test"
	srv.deliver(t, testMessage(old))
	r := start(t, in)
	if _, err := spool.waitFor(waitCtx(t), hasNew(old)); err != nil {
		t.Fatal(err)
	}
	r.stop(t)

	if err := srv.user.Delete("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := srv.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	srv.deliver(t, testMessage(old))
	srv.deliver(t, testMessage(fresh))

	start(t, in)
	recs, err := spool.waitFor(waitCtx(t), func(r []record) bool { return len(r) == 3 })
	if err != nil {
		t.Fatal(err)
	}
	if n := uniqueIDs(recs); n[old] != 1 || n[fresh] != 1 {
		t.Errorf("new stores per id = %v, want one each", n)
	}
	if !recs[1].Stored.Duplicate || recs[1].Raw.UIDValidity == recs[0].Raw.UIDValidity {
		t.Errorf("re-fetched %+v, want a duplicate under a new UIDVALIDITY", recs[1])
	}
	if !strings.Contains(logs.String(), "UIDVALIDITY changed") {
		t.Errorf("UIDVALIDITY change not logged:\n%s", logs.String())
	}
	for range 2 {
		inbox := waitMailbox(t, srv.addr, "INBOX", 2)
		if inbox[0].Seen && inbox[1].Seen {
			return
		}
	}
}

// TestIngestBatch: messages found together are fetched together and
// committed together (one fsync for a batch of replies), except that a
// reply found before a large message (a medical file) is committed, and
// handed to the engine, before that body streams in; the large message
// and the reply after it go together. All are marked.
func TestIngestBatch(t *testing.T) {
	t.Parallel()
	srv := startMemIMAP(t, memOptions{})
	spool := newFileSpool(t)
	in := newIngester(t, spool, mailin.Options{Addr: srv.addr, ProcessedMailbox: "Verwerkt"})
	large := append(testMessage("file@example.test"), bytes.Repeat([]byte("JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0\r\n"), 5000)...)
	srv.deliver(t, testMessage("a@example.test"))
	srv.deliver(t, testMessage("b@example.test"))
	srv.deliver(t, large)
	srv.deliver(t, testMessage("c@example.test"))
	start(t, in)
	if _, err := spool.waitFor(waitCtx(t), hasNew("a@example.test", "b@example.test", "file@example.test", "c@example.test")); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a@example.test", "b@example.test"}, {"file@example.test", "c@example.test"}}
	if got := spool.commitBatches(); !reflect.DeepEqual(got, want) {
		t.Errorf("committed %q, want %q", got, want)
	}
	waitMailbox(t, srv.addr, "Verwerkt", 4)
}

// TestIngestOversize: a message over MaxSize is stored whole, flagged
// Oversize, and marked like any other.
func TestIngestOversize(t *testing.T) {
	t.Parallel()
	srv := startMemIMAP(t, memOptions{})
	spool := newFileSpool(t)
	in := newIngester(t, spool, mailin.Options{Addr: srv.addr, MaxSize: 1000, ProcessedMailbox: "Verwerkt"})
	big := append(testMessage("big@example.test"), []byte(strings.Repeat("Bijlage regel.\r\n", 300))...)
	srv.deliver(t, testMessage("small@example.test"))
	srv.deliver(t, big)
	start(t, in)
	recs, err := spool.waitFor(waitCtx(t), hasNew("small@example.test", "big@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		wantOver := r.MessageID == "big@example.test"
		if r.Raw.Oversize != wantOver {
			t.Errorf("%s: Oversize = %v, want %v", r.MessageID, r.Raw.Oversize, wantOver)
		}
		fi, err := os.Stat(r.Path)
		if err != nil || fi.Size() != r.Raw.Size {
			t.Errorf("%s: stored %v bytes (err %v), want all %d", r.MessageID, fi.Size(), err, r.Raw.Size)
		}
	}
	waitMailbox(t, srv.addr, "Verwerkt", 2)
}

// TestIngestSpoolFailure: while the spool fails, the message is not marked
// (it stays for the next attempt); once the spool works it is stored once.
func TestIngestSpoolFailure(t *testing.T) {
	t.Parallel()
	srv := startMemIMAP(t, memOptions{})
	spool := newFileSpool(t)
	var logs testenv.LogBuffer
	var (
		mu       sync.Mutex
		failures int
		unmarked = true
	)
	spool.fail = func(record) error {
		mu.Lock()
		defer mu.Unlock()
		if failures < 2 {
			failures++
			// What a user of the mailbox sees while the store is down.
			for _, m := range mailboxContents(t, srv.addr, "INBOX") {
				unmarked = unmarked && !m.Seen
			}
			return errors.New("disk full")
		}
		return nil
	}
	in := newIngester(t, spool, mailin.Options{Addr: srv.addr, Logger: debugLogger(&logs)})
	srv.deliver(t, testMessage("retry@example.test"))
	start(t, in)
	recs, err := spool.waitFor(waitCtx(t), hasNew("retry@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if failures != 2 || len(recs) != 1 || !unmarked {
		t.Errorf("failures %d, stores %d, unmarked while failing %v; want 2, 1, true", failures, len(recs), unmarked)
	}
	if n := strings.Count(logs.String(), "reconnecting"); n < 2 {
		t.Errorf("%d reconnect lines logged, want one per failure:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "disk full") {
		t.Errorf("spool error not in the log:\n%s", logs.String())
	}
}

// crashBetweenStoreAndMark runs an ingester against the server at addr
// until the spool has stored the one message waiting there, kills it at
// that moment (before the mark), and checks that the next run finds the
// message unmarked, gets "duplicate" from the spool and only then marks it.
func crashBetweenStoreAndMark(t *testing.T, addr string, spool *fileSpool) {
	t.Helper()
	ctx, crash := context.WithCancel(context.Background())
	defer crash()
	spool.hook = func(record) { crash() }
	in := newIngester(t, spool, mailin.Options{Addr: addr, ProcessedMailbox: "Verwerkt"})
	if err := in.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if inbox := mailboxContents(t, addr, "INBOX"); len(inbox) != 1 {
		t.Fatalf("after the crash INBOX has %v, want the message still there", inbox)
	}

	spool.mu.Lock()
	spool.hook = nil
	spool.mu.Unlock()
	start(t, newIngester(t, spool, mailin.Options{Addr: addr, ProcessedMailbox: "Verwerkt"}))
	recs, err := spool.waitFor(waitCtx(t), func(r []record) bool { return len(r) == 2 })
	if err != nil {
		t.Fatalf("message not fetched again: %v", err)
	}
	if recs[0].Stored.Duplicate || !recs[1].Stored.Duplicate || recs[0].Stored.ID != recs[1].Stored.ID {
		t.Fatalf("stored = %+v then %+v, want new then duplicate of the same id", recs[0].Stored, recs[1].Stored)
	}
	waitMailbox(t, addr, "Verwerkt", 1)
	if inbox := mailboxContents(t, addr, "INBOX"); len(inbox) != 0 {
		t.Errorf("INBOX still has %v", inbox)
	}
}
