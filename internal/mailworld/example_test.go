package mailworld_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"time"

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
