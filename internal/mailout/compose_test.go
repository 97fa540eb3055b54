package mailout

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testDate = time.Date(2026, 3, 2, 9, 30, 0, 0, time.FixedZone("CET", 3600))

func openBytes(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func sampleMail() Mail {
	return Mail{
		From:          Address{Name: "Second opinion secretariaat", Email: "so@example.test"},
		To:            []Address{{Name: "Jeroen de Vries-Ölçer", Email: "jeroen@example.net"}},
		ReplyTo:       "so+Q1.abcdef@example.test",
		Subject:       "[SO-2026-0042] Herinnering: kies vóór 4 maart een arts",
		MessageID:     NewMessageID("example.test", []byte("SO-2026-0042/7")),
		Date:          testDate,
		AutoSubmitted: true,
		Lang:          "nl",
		Text:          "Beste Jeroen,\n\nWilt u vóór 4 maart een arts kiezen? Antwoord met 1 of 2.\nEen regel die heel lang is, langer dan zesenzeventig tekens, zodat quoted-printable hem zacht moet afbreken.\n",
	}
}

func TestComposeGolden(t *testing.T) {
	pdf := bytes.Repeat([]byte("%PDF-1.7 machtiging \x00\x01\x02\xff"), 20)
	tests := []struct {
		name string
		mail func() Mail
	}{
		{"reminder", sampleMail},
		{"reply-with-references", func() Mail {
			m := sampleMail()
			m.AutoSubmitted = false
			m.Subject = "Re: [SO-2026-0042] Vraagstelling"
			m.InReplyTo = "<abc@mail.example.net>"
			m.References = []string{"so.first@example.test", "<abc@mail.example.net>"}
			m.Lang = "en"
			m.Text = "Dear colleague,\r\nplease confirm the question.\r\n"
			return m
		}},
		{"form-attachment", func() Mail {
			m := sampleMail()
			m.Attachments = []Attachment{{Filename: "machtiging SO-2026-0042 (ongetekend).pdf", ContentType: "application/pdf", Open: openBytes(pdf)}}
			return m
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			if err := Compose(&got, tt.mail()); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", tt.name+".eml")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("composed message differs from %s (run with -update after checking):\n%s", golden, got.Bytes())
			}
			var again bytes.Buffer
			Compose(&again, tt.mail())
			if !bytes.Equal(got.Bytes(), again.Bytes()) {
				t.Error("composing the same mail twice gave different bytes")
			}
			checkWellFormed(t, got.Bytes())
		})
	}
}

// checkWellFormed asserts RFC 5322 line rules: CRLF only, no line over
// 998 octets, header lines within 78 where foldable, 7-bit.
func checkWellFormed(t *testing.T, msg []byte) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) ||
		bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\r")) {
		t.Error("bare CR or LF in message")
	}
	inHeader := true
	for _, line := range strings.Split(string(msg), "\r\n") {
		if line == "" {
			inHeader = false
		}
		if inHeader && len(line) > 78 {
			t.Errorf("header line over 78 characters: %q", line)
		}
		if len(line) > 998 {
			t.Errorf("line over 998 characters")
		}
		for i := 0; i < len(line); i++ {
			if line[i] > 0x7e || (line[i] < 0x20 && line[i] != '\t') {
				t.Fatalf("non-7-bit byte %#x in %q", line[i], line)
			}
		}
	}
}

// A mail client sees the text and the attachment exactly as given.
func TestComposeRoundTrip(t *testing.T) {
	pdf := make([]byte, 10000)
	for i := range pdf {
		pdf[i] = byte(i * 7)
	}
	m := sampleMail()
	m.Attachments = []Attachment{{Filename: "formulier-ø.pdf", ContentType: "application/pdf", Open: openBytes(pdf)}}
	var buf bytes.Buffer
	if err := Compose(&buf, m); err != nil {
		t.Fatal(err)
	}
	mr, err := gomail.CreateReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	subj, err := mr.Header.Subject()
	if err != nil || subj != m.Subject {
		t.Errorf("Subject = %q, %v; want %q", subj, err, m.Subject)
	}
	to, err := mr.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != m.To[0].Name || to[0].Address != m.To[0].Email {
		t.Errorf("To = %v, %v", to, err)
	}
	if got := mr.Header.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", got)
	}
	var text string
	var att []byte
	var attName string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p.Body)
		switch h := p.Header.(type) {
		case *gomail.InlineHeader:
			text = string(b)
		case *gomail.AttachmentHeader:
			att = b
			attName, _ = h.Filename()
		}
	}
	if text = strings.ReplaceAll(text, "\r\n", "\n"); text != m.Text {
		t.Errorf("text = %q, want %q", text, m.Text)
	}
	if !bytes.Equal(att, pdf) || attName != "formulier-ø.pdf" {
		t.Errorf("attachment %q: %d bytes equal=%v", attName, len(att), bytes.Equal(att, pdf))
	}
}

// User data in names, subjects and extra headers can never add a header
// field or a recipient.
func TestComposeHeaderInjection(t *testing.T) {
	const evil = "Jan\r\nBcc: evil@x.test\r\n\r\nbody"
	for _, variant := range []string{evil, "Jan\nBcc: evil@x.test", "Jan\rBcc: evil@x.test", "Jan\u2028Bcc: evil@x.test", "Jan\x00\x0bBcc: evil@x.test"} {
		m := sampleMail()
		m.To = []Address{{Name: variant, Email: "jan@example.net"}}
		m.From.Name = variant
		m.Subject = variant
		m.ExtraHeaders = []HeaderField{{Name: "X-SO-Case", Value: variant}}
		var buf bytes.Buffer
		if err := Compose(&buf, m); err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Header["Bcc"]) != 0 {
			t.Errorf("%q: Bcc header injected", variant)
		}
		if n := len(msg.Header["To"]); n != 1 {
			t.Errorf("%q: %d To headers", variant, n)
		}
		to, err := msg.Header.AddressList("To")
		if err != nil || len(to) != 1 || to[0].Address != "jan@example.net" {
			t.Errorf("%q: To = %v, %v", variant, to, err)
		}
		dec := new(mime.WordDecoder)
		subj, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
		if strings.ContainsAny(subj, "\r\n\x00\x0b\u2028") || !strings.Contains(subj, "Bcc: evil@x.test") {
			t.Errorf("%q: subject decodes to %q", variant, subj)
		}
		if got := len(msg.Header); got != 13 {
			t.Errorf("%q: %d header fields, want 13: %v", variant, got, msg.Header)
		}
	}
}

func TestComposeRefusesInvalid(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Mail)
	}{
		{"address with CRLF", func(m *Mail) { m.To[0].Email = "a@b.test\r\nBcc: evil@x.test" }},
		{"address with display part", func(m *Mail) { m.To[0].Email = "Evil <a@b.test>" }},
		{"reply-to with CRLF", func(m *Mail) { m.ReplyTo = "so@example.test\r\nX: y" }},
		{"no recipients", func(m *Mail) { m.To = nil }},
		{"no date", func(m *Mail) { m.Date = time.Time{} }},
		{"no message-id", func(m *Mail) { m.MessageID = "" }},
		{"message-id with space", func(m *Mail) { m.MessageID = "a b@c" }},
		{"references with CRLF", func(m *Mail) { m.References = []string{"a@b\r\nBcc: x@y"} }},
		{"extra header named Bcc", func(m *Mail) { m.ExtraHeaders = []HeaderField{{Name: "Bcc", Value: "x@y.test"}} }},
		{"extra header name with colon", func(m *Mail) { m.ExtraHeaders = []HeaderField{{Name: "X-A: b\r\nBcc", Value: "x"}} }},
		{"language with CRLF", func(m *Mail) { m.Lang = "nl\r\nBcc: x@y" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleMail()
			tt.modify(&m)
			var buf bytes.Buffer
			err := Compose(&buf, m)
			if !errors.Is(err, ErrInvalidMail) {
				t.Fatalf("err = %v, want ErrInvalidMail", err)
			}
			if bytes.Contains(buf.Bytes(), []byte("Bcc")) {
				t.Error("wrote a Bcc line before failing")
			}
		})
	}
}

func TestNewMessageID(t *testing.T) {
	a := NewMessageID("example.test", []byte("SO-2026-0042/7"))
	if a != NewMessageID("example.test", []byte("SO-2026-0042/7")) {
		t.Error("same seed, different Message-ID")
	}
	if a == NewMessageID("example.test", []byte("SO-2026-0042/8")) {
		t.Error("different seeds, same Message-ID")
	}
	if !strings.HasSuffix(a, "@example.test") || !validMsgID(a) {
		t.Errorf("Message-ID %q", a)
	}
}

func FuzzComposeHeaders(f *testing.F) {
	f.Add("Jan\r\nBcc: x@y", "Onderwerp\nX: y", "ø")
	f.Fuzz(func(t *testing.T, name, subject, extra string) {
		m := sampleMail()
		m.To[0].Name, m.Subject = name, subject
		m.ExtraHeaders = []HeaderField{{Name: "X-Extra", Value: extra}}
		var buf bytes.Buffer
		if err := Compose(&buf, m); err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(&buf)
		if err != nil {
			t.Fatalf("unparsable: %v", err)
		}
		if len(msg.Header) != 13 || len(msg.Header["To"]) != 1 {
			t.Fatalf("header fields: %v", msg.Header)
		}
	})
}
