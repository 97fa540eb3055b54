// Package mailout owns everything that leaves the service by mail: the
// texts (text/template files per language), the composition of a complete
// RFC 5322 / MIME message at the moment a decision commits, and the outbox
// worker that delivers those bytes over SMTP.
//
// Composition follows RFC 5322 (header fields), RFC 2045–2047 (MIME,
// quoted-printable, encoded words for user data in headers), RFC 2231
// (non-ASCII file names) and RFC 3834 (Auto-Submitted on reminders and
// notices). Header values built from user data can never add a header
// field: control characters are removed before encoding.
//
// Delivery (Transport) speaks SMTP (RFC 5321) with STARTTLS (RFC 3207)
// required except on loopback or when explicitly allowed, and AUTH PLAIN
// (RFC 4616) only over TLS or loopback. Every failure is classified as
// permanent (5xx) or temporary (4xx, network, timeout) in a DeliveryError;
// the Worker's retry logic reads only that.
//
// Medical content never passes through Compose in clear text: the caller
// routes it through internal/pgpmime (RFC 3156), and there is no
// plaintext fallback (NTA 7516).
package mailout

import (
	"bufio"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidMail is returned (wrapped) by Compose when a Mail lacks a
// required field or holds an address or header name that cannot be
// written safely.
var ErrInvalidMail = errors.New("mailout: invalid mail")

// Address is a mailbox with an optional display name.
type Address struct {
	Name  string
	Email string
}

// Attachment is a file part of a multipart/mixed message, written base64.
type Attachment struct {
	Filename    string
	ContentType string // default application/octet-stream
	// Open returns the bytes; it is called once per Compose and closed.
	Open func() (io.ReadCloser, error)
}

// HeaderField is an extra header field. Name must be an RFC 5322 field
// name; Value is sanitised and encoded like the subject.
type HeaderField struct {
	Name  string
	Value string
}

// Mail is everything needed to compose one message. MessageID,
// InReplyTo and References are written between angle brackets; they may
// be given with or without them.
type Mail struct {
	From          Address
	To            []Address
	ReplyTo       string // e.g. the question's local+TOKEN@domain address
	Subject       string
	MessageID     string // see NewMessageID
	Date          time.Time
	InReplyTo     string
	References    []string
	AutoSubmitted bool   // RFC 3834 "auto-generated": reminders and notices
	Lang          string // Content-Language, e.g. "nl"
	Text          string // the text/plain body
	Attachments   []Attachment
	ExtraHeaders  []HeaderField
}

// NewMessageID derives a Message-ID (without angle brackets) from a seed
// that names the mail uniquely and stably, e.g. the case reference and
// the effect's sequence number, so that composing the same effect again
// yields the same ID and receivers can recognise a repeat.
func NewMessageID(domain string, seed []byte) string {
	sum := sha256.Sum256(seed)
	id := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:20]))
	return "so." + id + "@" + domain
}

// Compose writes m as a complete message with CRLF line endings: a
// quoted-printable UTF-8 text/plain body, or multipart/mixed with the
// text first and base64 attachments after it. The output depends only on
// m (the MIME boundary is derived from the Message-ID).
func Compose(w io.Writer, m Mail) error {
	bw := bufio.NewWriter(w)
	if err := WriteHeaders(bw, m); err != nil {
		return err
	}
	if len(m.Attachments) == 0 {
		writeTextPartHeader(bw)
		bw.WriteString("\r\n")
		if err := writeQP(bw, m.Text); err != nil {
			return err
		}
		return bw.Flush()
	}
	boundary := boundaryFor(m.MessageID)
	fmt.Fprintf(bw, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	bw.WriteString("This is a multi-part message in MIME format.\r\n")
	fmt.Fprintf(bw, "\r\n--%s\r\n", boundary)
	writeTextPartHeader(bw)
	bw.WriteString("\r\n")
	if err := writeQP(bw, m.Text); err != nil {
		return err
	}
	for i, a := range m.Attachments {
		fmt.Fprintf(bw, "\r\n--%s\r\n", boundary)
		if err := writeAttachment(bw, a); err != nil {
			return fmt.Errorf("attachment %d: %w", i, err)
		}
	}
	fmt.Fprintf(bw, "\r\n--%s--\r\n", boundary)
	return bw.Flush()
}

// WriteHeaders writes the message's RFC 5322 header fields and
// "MIME-Version: 1.0", but no Content-Type and no empty line, for callers
// that write their own body (the PGP/MIME writer). It validates m.
func WriteHeaders(w io.Writer, m Mail) error {
	if err := validate(m); err != nil {
		return err
	}
	var h strings.Builder
	writeField(&h, "Date", m.Date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	writeField(&h, "From", formatAddress(m.From))
	tos := make([]string, len(m.To))
	for i, a := range m.To {
		tos[i] = formatAddress(a)
	}
	writeField(&h, "To", strings.Join(tos, ", "))
	if m.ReplyTo != "" {
		writeField(&h, "Reply-To", formatAddress(Address{Email: m.ReplyTo}))
	}
	writeField(&h, "Subject", encodeText(m.Subject))
	writeField(&h, "Message-ID", angle(m.MessageID))
	if m.InReplyTo != "" {
		writeField(&h, "In-Reply-To", angle(m.InReplyTo))
	}
	if len(m.References) > 0 {
		refs := make([]string, len(m.References))
		for i, r := range m.References {
			refs[i] = angle(r)
		}
		writeField(&h, "References", strings.Join(refs, " "))
	}
	if m.AutoSubmitted {
		writeField(&h, "Auto-Submitted", "auto-generated")
		// Exchange's equivalent: no out-of-office replies to notices.
		writeField(&h, "X-Auto-Response-Suppress", "All")
	}
	if m.Lang != "" {
		writeField(&h, "Content-Language", m.Lang)
	}
	for _, f := range m.ExtraHeaders {
		writeField(&h, f.Name, encodeText(f.Value))
	}
	writeField(&h, "MIME-Version", "1.0")
	_, err := io.WriteString(w, h.String())
	return err
}

func validate(m Mail) error {
	if m.Date.IsZero() {
		return fmt.Errorf("%w: no Date", ErrInvalidMail)
	}
	if !validMsgID(m.MessageID) {
		return fmt.Errorf("%w: Message-ID %q", ErrInvalidMail, m.MessageID)
	}
	if m.InReplyTo != "" && !validMsgID(m.InReplyTo) {
		return fmt.Errorf("%w: In-Reply-To %q", ErrInvalidMail, m.InReplyTo)
	}
	for _, r := range m.References {
		if !validMsgID(r) {
			return fmt.Errorf("%w: References %q", ErrInvalidMail, r)
		}
	}
	if err := validEmail(m.From.Email); err != nil {
		return fmt.Errorf("%w: From: %v", ErrInvalidMail, err)
	}
	if len(m.To) == 0 {
		return fmt.Errorf("%w: no To", ErrInvalidMail)
	}
	for i, a := range m.To {
		if err := validEmail(a.Email); err != nil {
			return fmt.Errorf("%w: To[%d]: %v", ErrInvalidMail, i, err)
		}
	}
	if m.ReplyTo != "" {
		if err := validEmail(m.ReplyTo); err != nil {
			return fmt.Errorf("%w: Reply-To: %v", ErrInvalidMail, err)
		}
	}
	if m.Lang != "" && strings.Trim(m.Lang, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
		return fmt.Errorf("%w: language %q", ErrInvalidMail, m.Lang)
	}
	for _, f := range m.ExtraHeaders {
		if !validFieldName(f.Name) {
			return fmt.Errorf("%w: header field name %q", ErrInvalidMail, f.Name)
		}
	}
	return nil
}

// validEmail accepts a bare addr-spec only: no display name, no angle
// brackets, nothing that could end a header line or an SMTP command.
func validEmail(s string) error {
	if s == "" {
		return errors.New("empty address")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '<' || r == '>' }) {
		return fmt.Errorf("address %q holds a forbidden character", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("address %q is not an addr-spec", s)
	}
	return nil
}

func validMsgID(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || strings.ContainsRune("<>()[]\\,;:\"", r) {
			return false
		}
	}
	return true
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == ':' {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "date", "from", "to", "cc", "bcc", "reply-to", "subject", "message-id", "in-reply-to", "references",
		"mime-version", "content-type", "content-transfer-encoding", "sender", "return-path":
		return false // written by Compose itself, or never by us
	}
	return true
}

func angle(id string) string {
	return "<" + strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">") + ">"
}

// sanitize turns user data into one line of text: control characters
// (CR and LF above all) become spaces, runs of spaces one space, invalid
// UTF-8 the replacement character.
func sanitize(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// encodeText sanitises unstructured header text and encodes it as RFC
// 2047 encoded words when it is not plain printable ASCII.
func encodeText(s string) string {
	s = sanitize(s)
	if isPrintableASCII(s) && !strings.Contains(s, "=?") {
		return s
	}
	return encodeWords(s)
}

// encodeWords encodes s as a run of short RFC 2047 Q encoded words, so
// that each fits on a folded header line within 78 characters (the
// standard library makes words of up to 75, too long after "Subject: ").
func encodeWords(s string) string {
	const maxWord = 60
	var words []string
	var chunk strings.Builder
	for _, r := range s {
		next := chunk.String() + string(r)
		if chunk.Len() > 0 && len(mime.QEncoding.Encode("utf-8", next)) > maxWord {
			words = append(words, qword(chunk.String()))
			chunk.Reset()
		}
		chunk.WriteRune(r)
	}
	if chunk.Len() > 0 {
		words = append(words, qword(chunk.String()))
	}
	return strings.Join(words, " ")
}

// qword always encodes, even plain ASCII, so adjacent words join without
// the space between them.
func qword(s string) string {
	if w := mime.QEncoding.Encode("utf-8", s); w != s {
		return w
	}
	var b strings.Builder
	b.WriteString("=?utf-8?q?")
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
			b.WriteByte('_')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("!*+-/", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	b.WriteString("?=")
	return b.String()
}

func formatAddress(a Address) string {
	name := sanitize(a.Name)
	if name == "" {
		return a.Email
	}
	if isPrintableASCII(name) && !strings.Contains(name, "=?") {
		// net/mail quotes the name where RFC 5322 needs it.
		return (&mail.Address{Name: name, Address: a.Email}).String()
	}
	return encodeWords(name) + " <" + a.Email + ">"
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// writeField writes "Name: value" folded at spaces to stay within 78
// characters where the value allows it (RFC 5322 section 2.2.3).
func writeField(b *strings.Builder, name, value string) {
	b.WriteString(name + ":")
	col := len(name) + 1
	for i, word := range strings.Split(value, " ") {
		n := utf8.RuneCountInString(word)
		if i > 0 && col+1+n > 78 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteString(" " + word)
		col += 1 + n
	}
	b.WriteString("\r\n")
}

func writeTextPartHeader(w *bufio.Writer) {
	w.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	w.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
}

func writeQP(w io.Writer, text string) error {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	qp := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qp, text); err != nil {
		return err
	}
	return qp.Close()
}

func writeAttachment(w *bufio.Writer, a Attachment) error {
	ct := a.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || strings.HasPrefix(mt, "multipart/") {
		return fmt.Errorf("%w: content type %q", ErrInvalidMail, a.ContentType)
	}
	name := sanitize(a.Filename)
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, name)
	if name == "" {
		name = "attachment"
	}
	params["name"] = name
	w.WriteString("Content-Type: " + mime.FormatMediaType(mt, params) + "\r\n")
	w.WriteString("Content-Transfer-Encoding: base64\r\n")
	w.WriteString("Content-Disposition: " + mime.FormatMediaType("attachment", map[string]string{"filename": name}) + "\r\n\r\n")
	if a.Open == nil {
		return fmt.Errorf("%w: attachment %q has no content", ErrInvalidMail, name)
	}
	rc, err := a.Open()
	if err != nil {
		return fmt.Errorf("open %q: %w", name, err)
	}
	defer rc.Close()
	lw := &lineWrapper{w: w}
	enc := base64.NewEncoder(base64.StdEncoding, lw)
	if _, err := io.Copy(enc, rc); err != nil {
		return fmt.Errorf("read %q: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if lw.col > 0 {
		_, err = w.WriteString("\r\n")
	}
	return err
}

// lineWrapper breaks base64 output into 76-character lines (RFC 2045).
type lineWrapper struct {
	w   io.Writer
	col int
}

func (l *lineWrapper) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := min(76-l.col, len(p))
		if _, err := l.w.Write(p[:chunk]); err != nil {
			return n, err
		}
		n += chunk
		l.col += chunk
		p = p[chunk:]
		if l.col == 76 {
			if _, err := io.WriteString(l.w, "\r\n"); err != nil {
				return n, err
			}
			l.col = 0
		}
	}
	return n, nil
}

// boundaryFor derives the MIME boundary from the Message-ID. "=_" cannot
// occur in quoted-printable or base64 output, so the boundary never
// collides with a part's content.
func boundaryFor(messageID string) string {
	sum := sha256.Sum256([]byte("boundary:" + messageID))
	return "=_so_" + hex.EncodeToString(sum[:12])
}
