package mailworld_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"secondopinion/internal/mailworld"
)

func newWorld(t *testing.T, opts *mailworld.Options) *mailworld.World {
	t.Helper()
	w, err := mailworld.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	for addr, pw := range map[string]string{
		"so@secondopinion.test":  "so-pw",
		"jan@werknemer.test":     "jan-pw",
		"arts@bedrijfsarts.test": "arts-pw",
	} {
		if err := w.AddUser(addr, pw); err != nil {
			t.Fatalf("AddUser: %v", err)
		}
	}
	return w
}

func message(subject string) []byte {
	return []byte("From: Jan <jan@werknemer.test>\r\nTo: so@secondopinion.test\r\n" +
		"Subject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@werknemer.test>\r\n\r\nGraag de tweede.\r\n")
}

// send delivers one message over SMTP with STARTTLS, the way the daemon
// and scripted participants do.
func send(t *testing.T, w *mailworld.World, from string, to []string, raw []byte) error {
	t.Helper()
	return sendAuth(t, w, nil, from, to, raw)
}

func sendAuth(t *testing.T, w *mailworld.World, auth sasl.Client, from string, to []string, raw []byte) error {
	t.Helper()
	c, err := smtp.DialStartTLS(w.SMTPAddr(), w.ClientTLSConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.SendMail(from, to, bytes.NewReader(raw)); err != nil {
		return err
	}
	return c.Quit()
}

// imapInbox lists the INBOX subjects of a user over IMAP.
func imapInbox(t *testing.T, w *mailworld.World, user, pass string) []string {
	t.Helper()
	subjects, _ := imapFolder(t, w, user, pass, "INBOX")
	return subjects
}

// imapLogin logs a user in over IMAP; the client is closed at cleanup.
func imapLogin(t *testing.T, w *mailworld.World, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(w.IMAPAddr(), nil)
	if err != nil {
		t.Fatalf("dial imap: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("imap login %s: %v", user, err)
	}
	return c
}

// imapFolder lists the subjects and full bytes of the messages in one of a
// user's folders, as an IMAP client sees them.
func imapFolder(t *testing.T, w *mailworld.World, user, pass, folder string) (subjects []string, raws [][]byte) {
	t.Helper()
	c := imapLogin(t, w, user, pass)
	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", folder, err)
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: sel.NumMessages}}, &imap.FetchOptions{
		Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for _, m := range msgs {
		subjects = append(subjects, m.Envelope.Subject)
		for _, b := range m.BodySection {
			raws = append(raws, b.Bytes)
		}
	}
	return subjects, raws
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		to       []string
		mailbox  string
		wantTo   string
		mailboxN int // messages expected in that mailbox
	}{
		{"plain address", []string{"so@secondopinion.test"}, "so@secondopinion.test", "so@secondopinion.test", 1},
		{"plus address", []string{"so+K7QX.2.emp.c0ffee@secondopinion.test"}, "so@secondopinion.test", "so+K7QX.2.emp.c0ffee@secondopinion.test", 1},
		{"other case", []string{"SO@SecondOpinion.test"}, "so@secondopinion.test", "SO@SecondOpinion.test", 1},
		{"two aliases of one mailbox, delivered once", []string{"so+a@secondopinion.test", "so+b@secondopinion.test"}, "so@secondopinion.test", "so+a@secondopinion.test", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, nil)
			raw := message(tt.name)
			if err := send(t, w, "jan@werknemer.test", tt.to, raw); err != nil {
				t.Fatalf("send: %v", err)
			}
			got := w.Inbox(tt.mailbox)
			if len(got) != tt.mailboxN {
				t.Fatalf("Inbox(%s) has %d messages, want %d", tt.mailbox, len(got), tt.mailboxN)
			}
			d := got[0]
			if d.To != tt.wantTo || d.From != "jan@werknemer.test" || d.Mailbox != tt.mailbox {
				t.Errorf("delivered envelope %q -> %q (mailbox %q), want %q -> %q (%q)", d.From, d.To, d.Mailbox, "jan@werknemer.test", tt.wantTo, tt.mailbox)
			}
			if !bytes.HasSuffix(d.Raw, raw) || !bytes.Contains(d.Raw, []byte("Delivered-To: "+tt.wantTo+"\r\n")) {
				t.Errorf("stored message lacks the original bytes or Delivered-To:\n%s", d.Raw)
			}
			if subjects := imapInbox(t, w, "so@secondopinion.test", "so-pw"); len(subjects) != tt.mailboxN || subjects[0] != tt.name {
				t.Errorf("IMAP INBOX = %q, want [%q]", subjects, tt.name)
			}
			if other := w.Inbox("jan@werknemer.test"); len(other) != 0 {
				t.Errorf("another user's mailbox got %d messages", len(other))
			}
		})
	}
}

func TestRefusedRecipients(t *testing.T) {
	t.Parallel()
	w := newWorld(t, &mailworld.Options{Domains: []string{"other.test"}})
	tests := []struct {
		name     string
		to       string
		code     int
		enhanced smtp.EnhancedCode
	}{
		{"unknown user", "nobody@secondopinion.test", 550, smtp.EnhancedCode{5, 1, 1}},
		{"unknown user with a tag", "nobody+x@secondopinion.test", 550, smtp.EnhancedCode{5, 1, 1}},
		{"configured domain without that user", "x@other.test", 550, smtp.EnhancedCode{5, 1, 1}},
		{"foreign domain", "someone@example.org", 554, smtp.EnhancedCode{5, 7, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := send(t, w, "jan@werknemer.test", []string{tt.to}, message(tt.name))
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tt.code || se.EnhancedCode != tt.enhanced {
				t.Fatalf("send to %s: err = %v, want %d %v", tt.to, err, tt.code, tt.enhanced)
			}
		})
	}
	if got := w.Inbox("so@secondopinion.test"); len(got) != 0 {
		t.Errorf("refused mail was delivered: %d", len(got))
	}
}

// TestPartlyRefused: with one good and one unknown recipient in one
// transaction, the good one gets the message.
func TestPartlyRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	c, err := smtp.Dial(w.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("jan@werknemer.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody@secondopinion.test", nil); err == nil {
		t.Fatal("unknown recipient accepted")
	}
	if err := c.Rcpt("so@secondopinion.test", nil); err != nil {
		t.Fatal(err)
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	wc.Write(message("partly"))
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.Inbox("so@secondopinion.test"); len(got) != 1 {
		t.Fatalf("good recipient got %d messages, want 1", len(got))
	}
}

// TestOnAccept: the hook sees each accepted message once, as sent, after
// it is already in the recipient's IMAP INBOX.
func TestOnAccept(t *testing.T) {
	t.Parallel()
	type call struct {
		from    string
		to      []string
		raw     []byte
		inInbox int
	}
	var (
		mu    sync.Mutex
		calls []call
		w     *mailworld.World
	)
	w = newWorld(t, &mailworld.Options{OnAccept: func(from string, to []string, raw []byte) {
		n := len(w.Inbox("so@secondopinion.test"))
		mu.Lock()
		calls = append(calls, call{from, to, raw, n})
		mu.Unlock()
	}})
	raw := message("hook")
	if err := send(t, w, "", []string{"so+tok@secondopinion.test", "arts@bedrijfsarts.test"}, raw); err != nil {
		t.Fatal(err)
	}
	if err := send(t, w, "jan@werknemer.test", []string{"nobody@secondopinion.test"}, raw); err == nil {
		t.Fatal("unknown recipient accepted")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 {
		t.Fatalf("OnAccept called %d times, want 1", len(calls))
	}
	c := calls[0]
	if c.from != "" || strings.Join(c.to, ",") != "so+tok@secondopinion.test,arts@bedrijfsarts.test" || !bytes.Equal(c.raw, raw) || c.inInbox != 1 {
		t.Errorf("OnAccept(%q, %q, %d bytes) with %d in INBOX; want bounce sender, both recipients, the sent bytes, 1", c.from, c.to, len(c.raw), c.inInbox)
	}
}

// TestRelay: mail for a relay domain is accepted for any address and
// reaches OnAccept only; a user in that domain still gets it stored, and an
// unknown address in an ordinary domain is still refused.
func TestRelay(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		accepted [][]string
	)
	w := newWorld(t, &mailworld.Options{Relay: []string{"bedrijfsarts.test", "Elders.Test"},
		OnAccept: func(_ string, to []string, _ []byte) {
			mu.Lock()
			accepted = append(accepted, to)
			mu.Unlock()
		}})
	to := []string{"iemand@bedrijfsarts.test", "x+tag@elders.test", "arts@bedrijfsarts.test", "so@secondopinion.test"}
	if err := send(t, w, "jan@werknemer.test", to, message("relay")); err != nil {
		t.Fatalf("send to relay domains: %v", err)
	}
	if err := send(t, w, "jan@werknemer.test", []string{"nobody@secondopinion.test"}, message("refused")); err == nil {
		t.Fatal("unknown recipient in an ordinary domain accepted")
	}
	mu.Lock()
	if len(accepted) != 1 || strings.Join(accepted[0], ",") != strings.Join(to, ",") {
		t.Errorf("OnAccept got %q, want one call with %q", accepted, to)
	}
	mu.Unlock()
	for _, user := range []string{"arts@bedrijfsarts.test", "so@secondopinion.test"} {
		if got := w.Inbox(user); len(got) != 1 {
			t.Errorf("%s (a user) got %d messages, want 1", user, len(got))
		}
	}
	if got := imapInbox(t, w, "arts@bedrijfsarts.test", "arts-pw"); strings.Join(got, ",") != "relay" {
		t.Errorf("arts's IMAP INBOX: %q, want the relayed message", got)
	}
	for _, addr := range []string{"iemand@bedrijfsarts.test", "x@elders.test"} {
		if got := w.Inbox(addr); len(got) != 0 {
			t.Errorf("%s (no user) has %d stored messages, want none", addr, len(got))
		}
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := send(t, w, "jan@werknemer.test", []string{"so@secondopinion.test"}, message("eerste")); err != nil {
		t.Fatal(err)
	}
	// Already delivered mail counts.
	d, err := w.WaitFor(ctx, "so@secondopinion.test", nil)
	if err != nil || !bytes.Contains(d.Raw, []byte("Subject: eerste")) {
		t.Fatalf("WaitFor existing = %v, %v", d.To, err)
	}

	// A waiter started before delivery is woken by it; pred skips others.
	got := make(chan mailworld.Delivered, 1)
	errc := make(chan error, 1)
	go func() {
		d, err := w.WaitFor(ctx, "so+x@secondopinion.test", func(d mailworld.Delivered) bool {
			return bytes.Contains(d.Raw, []byte("Subject: derde"))
		})
		errc <- err
		got <- d
	}()
	for _, s := range []string{"tweede", "derde"} {
		if err := send(t, w, "jan@werknemer.test", []string{"so@secondopinion.test"}, message(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	if d := <-got; !bytes.Contains(d.Raw, []byte("Subject: derde")) {
		t.Errorf("WaitFor returned %q, want the third message", d.Raw)
	}

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := w.WaitFor(ctx, "arts@bedrijfsarts.test", nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if _, err := w.WaitFor(ctx, "nobody@secondopinion.test", nil); !errors.Is(err, mailworld.ErrUnknownUser) {
			t.Errorf("err = %v, want ErrUnknownUser", err)
		}
	})
}

func TestWaitForClosed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := w.WaitFor(context.Background(), "so@secondopinion.test", nil)
		errc <- err
	}()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, mailworld.ErrClosed) {
		t.Errorf("err = %v, want ErrClosed", err)
	}
}

func TestSMTPAuth(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	tests := []struct {
		name, user, pass string
		ok               bool
	}{
		{"right password", "so@secondopinion.test", "so-pw", true},
		{"wrong password", "so@secondopinion.test", "nope", false},
		{"unknown user", "nobody@secondopinion.test", "so-pw", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sendAuth(t, w, sasl.NewPlainClient("", tt.user, tt.pass),
				tt.user, []string{"jan@werknemer.test"}, message(tt.name))
			if (err == nil) != tt.ok {
				t.Errorf("send with AUTH: err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestAddUser(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	tests := []struct {
		name, address string
		ok            bool
	}{
		{"new user", "piet@werkgever.test", true},
		{"existing user", "so@secondopinion.test", false},
		{"existing user, other case", "SO@secondopinion.test", false},
		{"tagged address", "so+x@secondopinion.test", false},
		{"no domain", "so", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.AddUser(tt.address, "pw"); (err == nil) != tt.ok {
				t.Errorf("AddUser(%q) err = %v, want ok=%v", tt.address, err, tt.ok)
			}
		})
	}
	// The new user's domain now accepts mail.
	if err := send(t, w, "so@secondopinion.test", []string{"piet@werkgever.test"}, message("welkom")); err != nil {
		t.Fatalf("mail to new user: %v", err)
	}
}

func TestMessageTooLarge(t *testing.T) {
	t.Parallel()
	w := newWorld(t, &mailworld.Options{MaxMessageBytes: 1000})
	big := append(message("groot"), bytes.Repeat([]byte("Bijlage regel.\r\n"), 200)...)
	err := send(t, w, "jan@werknemer.test", []string{"so@secondopinion.test"}, big)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 {
		t.Fatalf("err = %v, want 552", err)
	}
	if got := w.Inbox("so@secondopinion.test"); len(got) != 0 {
		t.Errorf("too large message delivered")
	}
}

// TestCutOffInTheLastChunk: a sender that dies in the middle of its last
// BDAT chunk (the connection closes before the announced octets came) has
// nothing delivered, as with a real MTA; the next complete message is.
func TestCutOffInTheLastChunk(t *testing.T) {
	t.Parallel()
	var accepted atomic.Int32
	w := newWorld(t, &mailworld.Options{OnAccept: func(string, []string, []byte) { accepted.Add(1) }})
	conn, err := net.Dial("tcp", w.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	reply := func(want string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the reply: %v", err)
			}
			if !strings.HasPrefix(line, want) {
				t.Fatalf("reply %q, want %s", line, want)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	raw := message("afgebroken")
	reply("220")
	fmt.Fprintf(conn, "EHLO client.test\r\n")
	reply("250")
	fmt.Fprintf(conn, "MAIL FROM:<jan@werknemer.test>\r\n")
	reply("250")
	fmt.Fprintf(conn, "RCPT TO:<so@secondopinion.test>\r\n")
	reply("250")
	fmt.Fprintf(conn, "BDAT %d LAST\r\n", len(raw)+1000)
	conn.Write(raw) // 1000 octets short
	conn.Close()

	// A complete message after it, on a new connection: once it is in, the
	// cut-off one has long been dealt with.
	if err := send(t, w, "jan@werknemer.test", []string{"so@secondopinion.test"}, message("heel")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	got := w.Inbox("so@secondopinion.test")
	if len(got) != 1 || accepted.Load() != 1 {
		t.Fatalf("%d messages delivered (%d accepted), want only the complete one", len(got), accepted.Load())
	}
}

// TestIdleReportsMailFromBefore: mail delivered after a client's last
// command and before its IDLE is reported when the IDLE begins, as Dovecot
// does, not only at the client's next command.
func TestIdleReportsMailFromBefore(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	exists := make(chan uint32, 8)
	c, err := imapclient.DialInsecure(w.IMAPAddr(), &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					exists <- *data.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatalf("dial imap: %v", err)
	}
	defer c.Close()
	if err := c.Login("so@secondopinion.test", "so-pw").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select: %v", err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("noop: %v", err)
	}
	if err := send(t, w, "jan@werknemer.test", []string{"so@secondopinion.test"}, message("tussendoor")); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatalf("idle: %v", err)
	}
	select {
	case n := <-exists:
		if n != 1 {
			t.Errorf("EXISTS %d, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Error("no EXISTS within 5 s of IDLE for the message delivered before it")
	}
	if err := idle.Close(); err != nil {
		t.Fatalf("idle done: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("idle: %v", err)
	}
}
