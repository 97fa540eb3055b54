package message

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"secondopinion/internal/testenv"
	"strings"
	"testing"
	"time"
)

// manyParts builds a multipart/mixed message with n text parts.
func manyParts(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n")
	for i := range n {
		fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

// nested builds a message with depth levels of message/rfc822 inside
// multipart/mixed.
func nested(depth int) []byte {
	inner := "From: x@example.com\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\nbinnenste\r\n"
	for i := range depth {
		b := fmt.Sprintf("n%d", i)
		inner = "From: x@example.com\r\nSubject: level\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + b + "\"\r\n\r\n--" + b +
			"\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--" + b + "--\r\n"
	}
	return []byte(inner)
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		opts Options
		want error
	}{
		{"10000 parts", manyParts(10000), Options{}, ErrTooComplex},
		{"999 parts fine", manyParts(999), Options{}, nil},
		{"deep message/rfc822 nesting", nested(200), Options{}, ErrTooComplex},
		{"shallow nesting fine", nested(3), Options{}, nil},
		{"text too long", []byte("Subject: x\r\n\r\n" + strings.Repeat("ja ", 1000)), Options{MaxTextBytes: 100}, ErrTextTooLong},
		{"header too long", []byte("Subject: " + strings.Repeat("x", 1000) + "\r\n\r\nja"), Options{MaxHeaderBytes: 100}, ErrTooComplex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			m, err := Parse(bytes.NewReader(tt.msg), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Parse took %v", d)
			}
			if err != nil && !strings.HasPrefix(tt.name, "header") && (m == nil || m.Subject == "") {
				t.Errorf("limit error without the header fields: %+v", m)
			}
		})
	}
}

func TestOnAttachmentStreams(t *testing.T) {
	payload := bytes.Repeat([]byte("medisch dossier "), 10000)
	msg := "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nZie bijlage\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"dossier.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(payload) + "\r\n--b--\r\n"
	sum := sha256.Sum256(payload)

	var got bytes.Buffer
	var seenName string
	m, err := Parse(strings.NewReader(msg), Options{OnAttachment: func(a *Attachment, body io.Reader) error {
		seenName = a.Name
		_, err := io.CopyN(&got, body, 100) // read only part; Parse reads the rest
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if seenName != "dossier.pdf" || got.String() != string(payload[:100]) {
		t.Errorf("callback saw name %q and %q", seenName, got.String())
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Size != int64(len(payload)) || m.Attachments[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("attachments = %+v, want size %d sha %x", m.Attachments, len(payload), sum)
	}

	boom := errors.New("disk full")
	_, err = Parse(strings.NewReader(msg), Options{OnAttachment: func(*Attachment, io.Reader) error { return boom }})
	if !errors.Is(err, boom) {
		t.Errorf("callback error not returned: %v", err)
	}
}

// NoCiphertextHash: the parts of a multipart/encrypted get their size
// but no hash; an attachment beside the encryption keeps its hash, and
// without the option every part is hashed.
func TestNoCiphertextHash(t *testing.T) {
	// The line break before a boundary belongs to the boundary.
	cipher := "-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0000\r\n-----END PGP MESSAGE-----"
	pdf := "%PDF-1.4 los"
	msg := "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n" +
		"--m\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n" +
		"--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n" +
		"--e\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n" + cipher + "\r\n--e--\r\n" +
		"--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"los.pdf\"\r\n\r\n" + pdf + "\r\n--m--\r\n"
	sha := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	for _, skip := range []bool{false, true} {
		m, err := Parse(strings.NewReader(msg), Options{NoCiphertextHash: skip})
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]Attachment{}
		for _, a := range m.Attachments {
			byName[a.Name] = a
		}
		enc, los := byName["encrypted.asc"], byName["los.pdf"]
		wantEnc := sha(cipher)
		if skip {
			wantEnc = ""
		}
		if !m.Encrypted || enc.Size != int64(len(cipher)) || enc.SHA256 != wantEnc {
			t.Errorf("NoCiphertextHash %v: encrypted %v, ciphertext %+v; want size %d and hash %q", skip, m.Encrypted, enc, len(cipher), wantEnc)
		}
		if los.SHA256 != sha(pdf) {
			t.Errorf("NoCiphertextHash %v: the attachment beside the encryption %+v, want hash %s", skip, los, sha(pdf))
		}
	}
}

func TestParseFields(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "corpus", "outlook-desktop-nl-choice.eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Parse(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageID != "AM0PR01MB1234.eurprd01.prod.outlook.com" || len(m.InReplyTo) != 1 || m.InReplyTo[0] != "q3.case42@so.example.nl" ||
		len(m.References) != 2 || m.References[0] != "q1.case42@so.example.nl" {
		t.Errorf("ids: %q %q %q", m.MessageID, m.InReplyTo, m.References)
	}
	if m.From != (Address{Address: "jan.jansen@example.com", Name: "Jan Jansen"}) {
		t.Errorf("From = %+v", m.From)
	}
	if r := m.Recipients(); len(r) != 1 || r[0] != "so+k5xq2bhn7vt4gmzeoa3wi@example.nl" {
		t.Errorf("Recipients = %q", r)
	}
	if !m.Date.Equal(time.Date(2026, 12, 1, 10, 12, 13, 0, time.UTC)) {
		t.Errorf("Date = %v", m.Date)
	}
	if !strings.Contains(m.Text, "Van: Second opinion") || m.HTML {
		t.Errorf("Text should be the full text/plain body, got %q (html %v)", m.Text, m.HTML)
	}
}

func TestAuthResult(t *testing.T) {
	h := func(fields ...string) HeaderValues {
		m, err := Parse(strings.NewReader(strings.Join(fields, "\r\n")+"\r\n\r\nx"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return &m.Header
	}
	tests := []struct {
		name   string
		h      HeaderValues
		pass   bool
		reason string
	}{
		{"dkim pass", h("From: Jan <jan@example.com>", "Authentication-Results: mx.example.nl; dkim=pass (2048-bit key; unprotected) header.d=example.com"), true, "dkim=pass header.d=example.com"},
		{"dkim pass for a parent domain", h("From: jan@mail.example.com", "Authentication-Results: mx.example.nl; dkim=pass header.d=example.com"), true, "dkim=pass header.d=example.com"},
		{"dkim pass for another domain", h("From: Jan <jan@example.com>", "Authentication-Results: mx.example.nl; dkim=pass header.d=evil.example"), false,
			`Authentication-Results from mx.example.nl: dkim=pass for "evil.example", not aligned with the From domain "example.com"`},
		{"dmarc pass", h("Authentication-Results: MX.example.nl 1; spf=fail; dkim=fail; dmarc=pass header.from=example.com"), true, "dmarc=pass header.from=example.com"},
		{"fail", h("Authentication-Results: mx.example.nl; dkim=fail; dmarc=fail"), false, "Authentication-Results from mx.example.nl: dkim=fail, dmarc=fail"},
		{"forged lower block ignored", h("Authentication-Results: mx.example.nl; dkim=none", "Authentication-Results: mx.example.nl; dkim=pass header.d=example.com"), false, "Authentication-Results from mx.example.nl: dkim=none"},
		{"other authserv-id ignored", h("Authentication-Results: mx.evil.example; dkim=pass", "Authentication-Results: mx.example.nl; dkim=fail"), false, "Authentication-Results from mx.example.nl: dkim=fail"},
		{"only other authserv-id", h("Authentication-Results: mx.evil.example; dkim=pass"), false, "no Authentication-Results from mx.example.nl"},
		{"missing", h("Subject: x"), false, "no Authentication-Results from mx.example.nl"},
		{"spf only", h("Authentication-Results: mx.example.nl; spf=pass smtp.mailfrom=example.com"), false, "Authentication-Results from mx.example.nl has no dkim or dmarc result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pass, reason := AuthResult(tt.h, "mx.example.nl")
			if pass != tt.pass || reason != tt.reason {
				t.Errorf("AuthResult = %v, %q; want %v, %q", pass, reason, tt.pass, tt.reason)
			}
		})
	}
}

func TestCaseRef(t *testing.T) {
	for in, want := range map[string]string{
		"Re: [SO-2026-0042] Keuze":  "SO-2026-0042",
		"re: [so-2026-12345] x":     "SO-2026-12345",
		"SO-2026-0042 zonder haken": "",
		"":                          "",
	} {
		if got := CaseRef(in); got != want {
			t.Errorf("CaseRef(%q) = %q, want %q", in, got, want)
		}
	}
}

// bigAttachment streams a message with an n-byte base64 attachment
// without holding it in memory.
func bigAttachment(n int64) io.Reader {
	head := "From: a@example.com\r\nSubject: groot\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nZie bijlage.\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"groot.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	line := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xAB, 0xCD, 0xEF}, 19)) + "\r\n" // 57 bytes per line
	lines := n / 57
	return io.MultiReader(strings.NewReader(head), testenv.RepeatReader(line, lines), strings.NewReader("--b--\r\n"))
}

func TestLargeAttachmentMemory(t *testing.T) {
	size := int64(50 << 20)
	if testing.Short() || raceEnabled {
		size = 8 << 20
	}
	var m *Message
	var err error
	peak := testenv.HeapRise(func() { m, err = Parse(bigAttachment(size), Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Size < size-57 {
		t.Fatalf("attachments = %+v", m.Attachments)
	}
	t.Logf("peak heap growth while parsing a %d MB attachment: %.1f MB", size>>20, float64(peak)/(1<<20))
	if peak > 32<<20 {
		t.Errorf("peak heap growth %d MB, want < 32 MB", peak>>20)
	}
}

func BenchmarkParse(b *testing.B) {
	msgs := map[string][]byte{}
	for _, name := range []string{"outlook-desktop-nl-choice", "gmail-nl-datetime", "iphone-nl-yesno-no", "outlook-web-nl-consent-html"} {
		data, err := os.ReadFile(filepath.Join("testdata", "corpus", name+".eml"))
		if err != nil {
			b.Fatal(err)
		}
		msgs[name] = data
	}
	kinds := map[string]Kind{"outlook-desktop-nl-choice": KindChoice, "gmail-nl-datetime": KindDateTime, "iphone-nl-yesno-no": KindYesNo, "outlook-web-nl-consent-html": KindConsent}
	q := QuestionContext{Options: corpusOptions, Now: testNow, Loc: testLoc}
	for name, data := range msgs {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				m, err := Parse(bytes.NewReader(data), Options{})
				if err != nil {
					b.Fatal(err)
				}
				if a := ParseAnswer(kinds[name], m.Reply, q); a.Kind == KindUnclear {
					b.Fatalf("unclear: %s", a.Why)
				}
			}
		})
	}
}

func BenchmarkParseLargeAttachment(b *testing.B) {
	const size = 50 << 20
	b.SetBytes(size)
	var peak uint64
	for b.Loop() {
		p := testenv.HeapRise(func() {
			if _, err := Parse(bigAttachment(size), Options{}); err != nil {
				b.Fatal(err)
			}
		})
		peak = max(peak, p)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}
