package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
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
