package mailin_test

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"secondopinion/internal/mailin"
)

// TestSentCopiesOnDovecot: the folder is created when missing,
// a copy filed there is found by its Message-ID, and only the IDs with a
// copy are reported, not one that is merely a substring of another, nor
// mail in the INBOX.
func TestSentCopiesOnDovecot(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, "")
	in := newIngester(t, newFileSpool(t), mailin.Options{Addr: d.Addr, SentMailbox: "Verzonden"})
	ctx := waitCtx(t)
	copies := in.SentCopies("svc+verzonden@example.test")
	if copies.Address() != "svc+verzonden@example.test" {
		t.Errorf("address %q", copies.Address())
	}

	got, err := copies.Find(ctx, []string{"<a@so.example.test>"})
	if err != nil || len(got) != 0 {
		t.Fatalf("empty folder: %v %v", got, err)
	}
	// As the mail server files a copy: into the folder, by another client.
	c, err := imapclient.DialInsecure(d.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a@so.example.test", "xb@so.example.test"} {
		cmd := c.Append("Verzonden", int64(len(testMessage(id))), &imap.AppendOptions{Time: time.Now()})
		cmd.Write(testMessage(id))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	d.Deliver(testUser, testMessage("c@so.example.test")) // INBOX, not a copy

	got, err = copies.Find(ctx, []string{"<a@so.example.test>", "<b@so.example.test>", "<c@so.example.test>"})
	if err != nil {
		t.Fatal(err)
	}
	if !got["<a@so.example.test>"] || got["<b@so.example.test>"] || got["<c@so.example.test>"] || len(got) != 1 {
		t.Errorf("found %v, want only <a@so.example.test>", got)
	}
}
