package mailin_test

import (
	"bytes"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"secondopinion/internal/mailin"
	"secondopinion/internal/mailworld"
)

// TestIngestFromMailworld: the demo's path. Mail sent over SMTP to a tagged
// reply address in the in-process world is read over IMAP (IMAP4rev2,
// STARTTLS) and stored with the tag intact.
func TestIngestFromMailworld(t *testing.T) {
	t.Parallel()
	w, err := mailworld.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.AddUser("so@secondopinion.test", "so-pw"); err != nil {
		t.Fatal(err)
	}
	spool := newFileSpool(t)
	notified := newCounter()
	o := mailin.Options{
		Addr: w.IMAPAddr(), Security: mailin.SecurityStartTLS, TLSConfig: w.ClientTLSConfig(),
		Username: "so@secondopinion.test", Password: "so-pw", ProcessedMailbox: "Verwerkt",
		Notify: notified.inc, Logger: slog.New(slog.DiscardHandler),
		PollInterval: time.Second, // as in TestIngest

	}
	in, err := mailin.New(spool, &o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, in)
	c, err := smtp.DialStartTLS(w.SMTPAddr(), w.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("jan@werknemer.test", []string{"so+K7QX@secondopinion.test"}, bytes.NewReader(testMessage("world@example.test"))); err != nil {
		t.Fatal(err)
	}
	notified.waitFor(t, waitCtx(t), 1)
	recs := spool.snapshot()
	if len(recs) != 1 || recs[0].MessageID != "world@example.test" {
		t.Fatalf("stored %+v, want the one message", recs)
	}
	raw, err := os.ReadFile(recs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("Delivered-To: so+K7QX@secondopinion.test\r\n")) {
		t.Errorf("stored message lacks the tagged Delivered-To:\n%s", raw)
	}
}
