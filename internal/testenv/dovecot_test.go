package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// inboxSubjects logs in to addr and returns the subjects of user's INBOX.
func inboxSubjects(t *testing.T, addr, user, pass string) []string {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: sel.NumMessages}}, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var subjects []string
	for _, m := range msgs {
		subjects = append(subjects, m.Envelope.Subject)
	}
	return subjects
}

func TestDovecot(t *testing.T) {
	t.Parallel()
	// Two instances side by side, as separate packages' tests would run.
	for i := range 2 {
		t.Run(fmt.Sprintf("instance%d", i), func(t *testing.T) {
			t.Parallel()
			d := StartDovecot(t, DovecotOptions{Users: map[string]string{"svc": "secret", "other": "pw"}})
			d.Deliver("svc", []byte("From: a@example.test\r\nSubject: one\r\n\r\nbody\r\n"))
			if got := inboxSubjects(t, d.Addr, "svc", "secret"); len(got) != 1 || got[0] != "one" {
				t.Fatalf("svc INBOX = %q, want [one]", got)
			}
			if got := inboxSubjects(t, d.Addr, "other", "pw"); len(got) != 0 {
				t.Fatalf("other INBOX = %q, want empty", got)
			}

			// Mail delivered while the server is down is there after a restart.
			d.Stop()
			if c, err := imapclient.DialInsecure(d.Addr, nil); err == nil {
				c.Close()
				t.Fatal("server still accepts connections after Stop")
			}
			d.Deliver("svc", []byte("From: a@example.test\r\nSubject: two\r\n\r\nbody\r\n"))
			d.Start()
			if got := inboxSubjects(t, d.Addr, "svc", "secret"); len(got) != 2 || got[1] != "two" {
				t.Fatalf("svc INBOX after restart = %q, want [one two]", got)
			}
		})
	}
}

func TestDovecotWrongPassword(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{Users: map[string]string{"svc": "secret"}})
	c, err := imapclient.DialInsecure(d.Addr, &imapclient.Options{DebugWriter: io.Discard})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.Login("svc", "wrong").Wait(); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
}

// TestWaitGreetingOtherServer: a server on the port that greets as another
// instance is not taken for this one.
func TestWaitGreetingOtherServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeEach(t, ln, func(c net.Conn) { fmt.Fprintf(c, "* OK Dovecot ready (sotest-other)\r\n") })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = waitGreeting(ctx, ln.Addr().String(), "Dovecot ready (sotest-mine)", nil)
	if !errors.Is(err, errPortTaken) {
		t.Errorf("waitGreeting = %v, want %v", err, errPortTaken)
	}
	if err := waitGreeting(ctx, ln.Addr().String(), "Dovecot ready (sotest-other)", nil); err != nil {
		t.Errorf("waitGreeting for the server's own greeting = %v", err)
	}
}

// DeliverTo names a file with its sizes as Dovecot's own delivery does;
// Dovecot reports the W= size as RFC822.SIZE, so it must be the length of
// the message with CRLF line ends, whatever the message's line ends and
// however the reader splits them.
func TestDeliverToSizes(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{Users: map[string]string{"svc": "secret"}})
	msgs := []string{
		"From: a@example.test\r\nSubject: crlf\r\n\r\nbody\r\n",
		"From: a@example.test\nSubject: lf\n\nbody\nmore\n",
		"From: a@example.test\r\nSubject: mixed\n\r\nbody\r\r\n\n\r\n",
	}
	for _, m := range msgs {
		// One byte at a time: every CR and its LF arrive in writes of their own.
		if err := d.DeliverTo("svc", "", iotest.OneByteReader(strings.NewReader(m))); err != nil {
			t.Fatal(err)
		}
	}
	c, err := imapclient.DialInsecure(d.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("svc", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("fetched %d messages, want %d", len(got), len(msgs))
	}
	for i, m := range got {
		crlf := strings.ReplaceAll(strings.ReplaceAll(msgs[i], "\r\n", "\n"), "\n", "\r\n")
		var body []byte
		for _, b := range m.BodySection {
			body = b.Bytes
		}
		if m.RFC822Size != int64(len(crlf)) || string(body) != crlf {
			t.Errorf("message %d: RFC822.SIZE %d and body %q; want %d and %q", i+1, m.RFC822Size, body, len(crlf), crlf)
		}
	}
}
