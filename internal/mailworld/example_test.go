package mailworld_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"secondopinion/internal/mailworld"
)

// A scripted employee waits for the daemon's question in the world and
// could answer it; here the "daemon" is a plain SMTP client.
func ExampleWorld_WaitFor() {
	w, err := mailworld.New(&mailworld.Options{
		OnAccept: func(from string, to []string, raw []byte) {
			fmt.Printf("accepted %s -> %v\n", from, to)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	if err := w.AddUser("jan@werknemer.test", "jan-pw"); err != nil {
		log.Fatal(err)
	}

	msg := "From: so@secondopinion.test\r\nTo: jan@werknemer.test\r\nSubject: [SO-2026-0042] Uw keuze\r\n\r\nWelke arts kiest u?\r\n"
	c, err := smtp.Dial(w.SMTPAddr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("so+K7QX@secondopinion.test", []string{"jan+demo@werknemer.test"}, bytes.NewReader([]byte(msg))); err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := w.WaitFor(ctx, "jan@werknemer.test", func(d mailworld.Delivered) bool {
		return bytes.Contains(d.Raw, []byte("[SO-2026-0042]"))
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered to", d.Mailbox, "as", d.To)
	// Output:
	// accepted so+K7QX@secondopinion.test -> [jan+demo@werknemer.test]
	// delivered to jan@werknemer.test as jan+demo@werknemer.test
}

// The daemon files a copy of what it sends by creating a folder "sent" and
// sending to its own address with that detail: the copy lands there, not
// in INBOX, as with Dovecot's lmtp_save_to_detail_mailbox.
func ExampleWorld_Folder() {
	w, err := mailworld.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	if err := w.AddUser("so@secondopinion.test", "so-pw"); err != nil {
		log.Fatal(err)
	}
	c, err := imapclient.DialInsecure(w.IMAPAddr(), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("so@secondopinion.test", "so-pw").Wait(); err != nil {
		log.Fatal(err)
	}
	if err := c.Create("sent", nil).Wait(); err != nil {
		log.Fatal(err)
	}

	msg := "From: so@secondopinion.test\r\nTo: jan@werknemer.test\r\nSubject: [SO-2026-0042] Uw keuze\r\n\r\nWelke arts kiest u?\r\n"
	sc, err := smtp.Dial(w.SMTPAddr())
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	if err := sc.SendMail("so@secondopinion.test", []string{"so+sent@secondopinion.test"}, strings.NewReader(msg)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent:", len(w.Folder("so@secondopinion.test", "sent")), "INBOX:", len(w.Inbox("so@secondopinion.test")))
	// Output:
	// sent: 1 INBOX: 0
}
