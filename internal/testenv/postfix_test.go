package testenv

import (
	"bytes"
	"fmt"
	"net/smtp"
	"strings"
	"sync"
	"testing"
	"time"
)

func sendPlain(addr, from, to string, msg []byte) error {
	return smtp.SendMail(addr, nil, from, []string{to}, msg)
}

// Two instances at once: each delivers into its own maildirs, and a
// stopped instance refuses connections until started again.
func TestPostfixTwoInstances(t *testing.T) {
	var (
		wg sync.WaitGroup
		ps [2]*Postfix
	)
	for i := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps[i] = StartPostfix(t, PostfixOptions{Mailboxes: []string{"svc", "ana"}})
		}()
	}
	wg.Wait()
	if t.Failed() || t.Skipped() {
		return
	}
	if ps[0].Addr == ps[1].Addr {
		t.Fatalf("both instances on %s", ps[0].Addr)
	}
	for i, p := range ps {
		id := fmt.Sprintf("<inst%d@example.test>", i)
		msg := []byte("From: a@other.test\r\nTo: svc@example.test\r\nMessage-ID: " + id + "\r\nSubject: t\r\n\r\nhello\r\n")
		if err := sendPlain(p.Addr, "a@other.test", "svc+tag@example.test", msg); err != nil {
			t.Fatalf("instance %d: send: %v", i, err)
		}
		got, err := p.WaitMessages("svc", 1, 10*time.Second)
		if err != nil {
			t.Fatalf("instance %d: %v\n%s", i, err, p.Log())
		}
		if len(got) != 1 || !bytes.Contains(got[0], []byte("Message-ID: "+id)) {
			t.Fatalf("instance %d: maildir holds %d messages, want exactly the one with %s", i, len(got), id)
		}
	}

	p := ps[0]
	err := sendPlain(p.Addr, "a@other.test", "nobody@example.test", []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.Contains(err.Error(), "5.1.1") {
		t.Errorf("unknown mailbox: err = %v, want 550 5.1.1", err)
	}

	p.SetTempFail(true)
	err = sendPlain(p.Addr, "a@other.test", "svc@example.test", []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "451") {
		t.Errorf("temp fail: err = %v, want 451", err)
	}
	p.SetTempFail(false)

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := sendPlain(p.Addr, "a@other.test", "svc@example.test", []byte("Subject: x\r\n\r\nx\r\n")); err == nil {
		t.Error("stopped instance accepted mail")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sendPlain(p.Addr, "a@other.test", "ana@example.test", []byte("Subject: again\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if _, err := p.WaitMessages("ana", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
