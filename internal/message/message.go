// Package message owns the reading of inbound mail: it turns a raw message
// (RFC 5322, MIME RFC 2045-2049) into what the procedure needs to know —
// who sent it, which case and question it belongs to, the new text the
// sender wrote, the answer in that text to the one question we asked, its
// attachments (name, type, size, SHA-256), and whether it is an automatic
// reply (RFC 3834) or a delivery report (RFC 3464) that must never be taken
// for an answer.
//
// Parsing streams: attachment bodies are hashed (and handed to
// Options.OnAttachment) as they are read, never held in memory, and every
// structural limit (parts, nesting, text size, header size) ends the parse
// with an error that wraps ErrTooComplex or ErrTextTooLong rather than
// letting a hostile message exhaust the daemon. The API never panics.
//
// Reply extraction (ExtractReply) and answer extraction (ParseAnswer) are
// ours: they know the Dutch and English mail clients our users have and
// the questions the procedure asks (DESIGN.md, "Mail conventions": one
// question per mail, its answers spelled out). An answer that is ambiguous
// or contradictory is never guessed; it comes back as KindUnclear with the
// reason, so the sender can be asked again.
package message

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Sentinel errors. A limit error means the message was not understood and
// must be quarantined with the error as its reason.
var (
	// ErrTooComplex: more parts, deeper nesting or a larger header than
	// Options allow.
	ErrTooComplex = errors.New("message too complex")
	// ErrTextTooLong: more body text than Options.MaxTextBytes.
	ErrTextTooLong = errors.New("message text too long")
)

// Default limits, used where Options leaves a field zero.
const (
	DefaultMaxParts       = 1000
	DefaultMaxDepth       = 10
	DefaultMaxTextBytes   = 4 << 20
	DefaultMaxHeaderBytes = 256 << 10
)

// Options bound the work Parse does. The zero value means the defaults.
type Options struct {
	MaxParts       int   // MIME entities in total, the message itself included
	MaxDepth       int   // nesting of multiparts and message/rfc822 parts
	MaxTextBytes   int64 // decoded text and HTML parts together
	MaxHeaderBytes int64 // the top-level header block

	// OnAttachment, if set, is called for each attachment with its name and
	// type filled in and a reader of its decoded body. Parse computes Size
	// and SHA256 from what flows through body (whatever the callback leaves
	// unread is read after it returns), so they are set on a once the
	// callback has returned. An error from OnAttachment ends the parse.
	OnAttachment func(a *Attachment, body io.Reader) error

	// NoCiphertextHash leaves SHA256 empty for the parts of a
	// multipart/encrypted (RFC 1847; Size is still set). A reader that
	// decrypts the message and parses what is inside has no use for the
	// ciphertext's hash, which for a 1 MB medical file cost 1 ms.
	NoCiphertextHash bool
}

func (o Options) withDefaults() Options {
	if o.MaxParts <= 0 {
		o.MaxParts = DefaultMaxParts
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxTextBytes <= 0 {
		o.MaxTextBytes = DefaultMaxTextBytes
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return o
}

// Address is a mailbox: the address in lower case and the display name.
type Address struct {
	Address string `json:"address"`
	Name    string `json:"name,omitempty"`
}

// Attachment describes one attachment. Its bytes are not kept; see
// Options.OnAttachment.
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"` // hex
	// Related is true for a part of a multipart/related: a resource of
	// an HTML body, such as the logo in a mail signature, not a file the
	// sender attached.
	Related bool `json:"related,omitempty"`
}

// Bounce is what a delivery report says failed (RFC 3464).
type Bounce struct {
	FailedRecipients []string // lower case
	Status           string   // e.g. "5.1.1"
	Diagnostic       string   // e.g. "smtp; 550 5.1.1 user unknown"
}

// Forward is a message forwarded inside this one, as a message/rfc822 part
// or inline below a "Forwarded message" line.
type Forward struct {
	From    Address
	Subject string
	Date    string // as written; inline forwards have localised dates
	Text    string
	Inline  bool
}

// Message is a parsed inbound message.
type Message struct {
	// Header is the top-level header, for anything not lifted out below
	// (Authentication-Results, Received, List-Id, …).
	Header gomail.Header

	MessageID  string   // without angle brackets
	InReplyTo  []string // without angle brackets
	References []string // without angle brackets, oldest first
	From       Address
	ReplyTo    []Address
	To         []Address
	Cc         []Address
	// DeliveredTo and XOriginalTo hold the envelope recipients the
	// receiving server recorded (lower case): where a plus-address survives
	// when the sender's client rewrote To.
	DeliveredTo []string
	XOriginalTo []string
	Subject     string
	Date        time.Time // zero if missing or unreadable

	// Text is the decoded body text: the best text/plain part, or the HTML
	// part turned into text when there is no plain one (then HTML is set).
	Text string
	HTML bool
	// Reply is ExtractReply(Text): what the sender wrote now.
	Reply string

	Attachments []Attachment
	Forwarded   []Forward

	// Encrypted: a multipart/encrypted part or an inline PGP message was
	// found. The caller decrypts (internal/pgpmime) and parses the inner
	// entity again. Signed: a multipart/signed part was found.
	Encrypted bool
	Signed    bool

	// AutoReply is set for automatic replies (RFC 3834, out-of-office,
	// bulk mail) and for delivery reports; AutoReplyReason says why.
	AutoReply       bool
	AutoReplyReason string
	// Bounce is set for a delivery report that names failed recipients.
	Bounce *Bounce

	// Problems lists irregularities that did not stop the parse (unknown
	// charset, broken base64, a multipart without its closing boundary).
	Problems []string
}

// Recipients returns every recipient address the message names (To, Cc,
// Delivered-To, X-Original-To), lower case, without duplicates: the caller
// looks among them for our plus-address.
func (m *Message) Recipients() []string {
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, l := range [][]Address{m.To, m.Cc} {
		for _, a := range l {
			add(a.Address)
		}
	}
	for _, l := range [][]string{m.DeliveredTo, m.XOriginalTo} {
		for _, a := range l {
			add(a)
		}
	}
	return out
}

// Parse reads a message from r. On a limit error (ErrTooComplex,
// ErrTextTooLong) or an attachment callback error it returns the error
// together with a Message holding what was read so far (at least the
// header fields), so the caller can quarantine it with a useful summary.
// Only an unreadable header returns a nil Message.
func Parse(r io.Reader, opts Options) (*Message, error) {
	p := &parser{opts: opts.withDefaults(), m: &Message{}}
	br := bufio.NewReaderSize(r, 16<<10)
	hdr, problems, rest, err := readHeader(br, p.opts.MaxHeaderBytes)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	p.m.Problems = append(p.m.Problems, problems...)
	p.m.Header = gomail.Header{Header: gomessage.Header{Header: hdr}}
	p.headerFields()
	p.autoReply()

	e, err := newEntity(p.m.Header.Header, rest)
	if err != nil {
		p.problem("%v", err)
	}
	b, err := p.entity(e, 0)
	p.m.Text = b.text
	p.m.HTML = b.html
	if err != nil {
		return p.m, err
	}
	if strings.Contains(p.m.Text, "-----BEGIN PGP MESSAGE-----") {
		p.m.Encrypted = true
	}
	if f, ok := inlineForward(p.m.Text); ok {
		p.m.Forwarded = append(p.m.Forwarded, f)
	}
	p.m.Reply = ExtractReply(p.m.Text)
	p.bounce()
	return p.m, nil
}

type parser struct {
	opts      Options
	m         *Message
	parts     int
	textBytes int64
	inReport  int // depth of enclosing multipart/report parts
	inRelated int // depth of enclosing multipart/related parts
	inCipher  int // depth of enclosing multipart/encrypted parts
	dsn       []byte
}

func (p *parser) problem(format string, args ...any) {
	if len(p.m.Problems) < 20 {
		p.m.Problems = append(p.m.Problems, fmt.Sprintf(format, args...))
	}
}

// headerRE matches a header field line: a name of printable ASCII without
// ':' or space (RFC 5322 section 2.2), then ':'.
var headerRE = regexp.MustCompile(`^[!-9;-~]+[ \t]*:`)

// readHeader reads the header block up to the empty line, repairing what
// go-message would refuse: an mbox "From " line or other junk before the
// first field is dropped, and a line that is not a field ends the header
// (a missing empty line is common in hand-made mail), its text becoming
// the start of the body.
func readHeader(br *bufio.Reader, max int64) (h textproto.Header, problems []string, rest io.Reader, err error) {
	var (
		buf   bytes.Buffer
		n     int64
		first = true
	)
	rest = br
	for {
		line, err := readLine(br, max-n)
		n += int64(len(line))
		if err != nil && !errors.Is(err, io.EOF) {
			return textproto.Header{}, nil, nil, err
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(trimmed) == 0 && len(line) > 0:
			// The empty line: end of header.
		case len(line) == 0:
			// EOF.
		case trimmed[0] == ' ' || trimmed[0] == '\t':
			if first {
				problems = append(problems, "header: continuation line before the first field dropped")
			} else {
				buf.Write(trimmed)
				buf.WriteString("\r\n")
			}
			if err == nil {
				continue
			}
		case headerRE.Match(trimmed):
			first = false
			buf.Write(trimmed)
			buf.WriteString("\r\n")
			if err == nil {
				continue
			}
		case first && bytes.HasPrefix(trimmed, []byte("From ")):
			problems = append(problems, "header: mbox From line dropped")
			continue
		default:
			problems = append(problems, "header: missing empty line before the body")
			// Put the line back in front of the body.
			rest = io.MultiReader(bytes.NewReader(line), br)
		}
		break
	}
	buf.WriteString("\r\n")
	h, err = textproto.ReadHeader(bufio.NewReader(&buf))
	if err != nil {
		return textproto.Header{}, nil, nil, err
	}
	return h, problems, rest, nil
}

// readLine reads one line, failing with ErrTooComplex past max bytes.
func readLine(br *bufio.Reader, max int64) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if int64(len(line)+len(frag)) > max {
			return nil, fmt.Errorf("%w: header larger than the limit", ErrTooComplex)
		}
		line = append(line, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

func (p *parser) headerFields() {
	h := &p.m.Header
	m := p.m
	if id, err := h.MessageID(); err == nil {
		m.MessageID = id
	} else {
		m.MessageID = strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>")
	}
	m.InReplyTo = msgIDs(h.Get("In-Reply-To"))
	m.References = msgIDs(h.Get("References"))
	if l := p.addresses("From"); len(l) > 0 {
		m.From = l[0]
	}
	m.ReplyTo = p.addresses("Reply-To")
	m.To = p.addresses("To")
	m.Cc = p.addresses("Cc")
	m.DeliveredTo = bareAddresses(h.Values("Delivered-To"))
	m.XOriginalTo = bareAddresses(h.Values("X-Original-To"))
	m.Subject = p.text("Subject")
	if v := h.Get("Date"); v != "" {
		if d, err := mail.ParseDate(v); err == nil {
			m.Date = d
		} else {
			p.problem("header: unreadable Date")
		}
	}
}

var msgIDRE = regexp.MustCompile(`<([^<>\s]+)>`)

// msgIDs reads a list of message identifiers leniently: angle-bracketed
// ids, or, when there are none, whitespace-separated words.
func msgIDs(v string) []string {
	var out []string
	for _, m := range msgIDRE.FindAllStringSubmatch(v, -1) {
		out = append(out, m[1])
	}
	if out == nil {
		for _, f := range strings.Fields(v) {
			if strings.Contains(f, "@") {
				out = append(out, f)
			}
		}
	}
	return out
}

var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// text decodes an unstructured header field (RFC 2047), also when it holds
// raw 8-bit Latin-1 bytes.
func (p *parser) text(key string) string {
	v := p.m.Header.Get(key)
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		v = d
	}
	return toUTF8(v)
}

var addrRE = regexp.MustCompile(`[A-Za-z0-9._%+\-=!#$&'*/?^{|}~]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)

func (p *parser) addresses(key string) []Address {
	v := p.m.Header.Get(key)
	if strings.TrimSpace(v) == "" {
		return nil
	}
	parser := mail.AddressParser{WordDecoder: &wordDecoder}
	l, err := parser.ParseList(v)
	if err == nil {
		out := make([]Address, 0, len(l))
		for _, a := range l {
			out = append(out, Address{Address: strings.ToLower(a.Address), Name: toUTF8(a.Name)})
		}
		return out
	}
	// Malformed (unquoted specials in the name, 8-bit bytes, …): keep the
	// addresses we can see, so the sender is still known.
	p.problem("header: malformed %s", key)
	var out []Address
	for _, a := range addrRE.FindAllString(v, -1) {
		out = append(out, Address{Address: strings.ToLower(a)})
	}
	return out
}

func bareAddresses(vs []string) []string {
	var out []string
	for _, v := range vs {
		v = strings.ToLower(strings.Trim(strings.TrimSpace(v), "<>"))
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// toUTF8 returns s if it is valid UTF-8, else reads it as Windows-1252
// (the superset of Latin-1 that unlabelled 8-bit mail nearly always is).
func toUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	r, err := charset.Reader("windows-1252", strings.NewReader(s))
	if err != nil {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return string(b)
}

// body is the text an entity contributes to the message body.
type body struct {
	text  string
	html  bool
	plain bool // came from a text/plain part
}

func (p *parser) entity(e *gomessage.Entity, depth int) (body, error) {
	p.parts++
	if p.parts > p.opts.MaxParts {
		return body{}, fmt.Errorf("%w: more than %d MIME parts", ErrTooComplex, p.opts.MaxParts)
	}
	if depth > p.opts.MaxDepth {
		return body{}, fmt.Errorf("%w: MIME nesting deeper than %d", ErrTooComplex, p.opts.MaxDepth)
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt == "" {
		mt, params = "text/plain", map[string]string{}
	}
	disp, dparams, _ := e.Header.ContentDisposition()
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if d, err := wordDecoder.DecodeHeader(name); err == nil {
		name = d
	}
	name = toUTF8(name)

	switch {
	case strings.HasPrefix(mt, "multipart/"):
		return p.multipart(e, mt, params, depth)
	case (mt == "message/rfc822" || mt == "message/global") && p.inReport == 0:
		return body{}, p.forwarded(e, depth)
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		b, err := io.ReadAll(io.LimitReader(e.Body, 256<<10))
		if err != nil {
			p.problem("delivery status: %v", err)
		}
		p.dsn = append(p.dsn, b...)
		_, err = io.Copy(io.Discard, e.Body)
		return body{}, err
	case (mt == "text/plain" || mt == "text/html") && disp != "attachment" && name == "":
		return p.textPart(e, mt, params)
	default:
		return body{}, p.attachment(e, name, mt)
	}
}

func (p *parser) multipart(e *gomessage.Entity, mt string, params map[string]string, depth int) (body, error) {
	sub := strings.TrimPrefix(mt, "multipart/")
	if sub == "encrypted" {
		p.m.Encrypted = true
	}
	if sub == "signed" {
		p.m.Signed = true
	}
	if sub == "report" {
		p.inReport++
		defer func() { p.inReport-- }()
	}
	if sub == "related" {
		p.inRelated++
		defer func() { p.inRelated-- }()
	}
	if sub == "encrypted" {
		p.inCipher++
		defer func() { p.inCipher-- }()
	}
	if params["boundary"] == "" {
		p.problem("multipart without boundary")
		_, err := io.Copy(io.Discard, e.Body)
		return body{}, err
	}
	mr := textproto.NewMultipartReader(e.Body, params["boundary"])
	var children []body
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A missing closing boundary or garbage: keep what we have.
			p.problem("%s: %v", mt, err)
			break
		}
		child, err := newEntity(gomessage.Header{Header: part.Header}, part)
		if err != nil {
			p.problem("%v", err)
		}
		b, err := p.entity(child, depth+1)
		if err != nil {
			return body{}, err
		}
		children = append(children, b)
		if sub == "encrypted" {
			children = nil // the ciphertext is no body text
		}
	}
	switch sub {
	case "alternative":
		for _, want := range []func(body) bool{
			func(b body) bool { return b.plain && strings.TrimSpace(b.text) != "" },
			func(b body) bool { return strings.TrimSpace(b.text) != "" },
		} {
			for _, b := range children {
				if want(b) {
					return b, nil
				}
			}
		}
		return body{}, nil
	case "signed", "report":
		if len(children) > 0 {
			return children[0], nil
		}
		return body{}, nil
	default:
		var out body
		var texts []string
		for _, b := range children {
			if strings.TrimSpace(b.text) == "" {
				continue
			}
			texts = append(texts, strings.TrimRight(b.text, "\n"))
			out.html = out.html || b.html
			out.plain = out.plain || b.plain
		}
		out.text = strings.Join(texts, "\n\n")
		return out, nil
	}
}

func (p *parser) textPart(e *gomessage.Entity, mt string, params map[string]string) (body, error) {
	left := p.opts.MaxTextBytes - p.textBytes
	b, err := io.ReadAll(io.LimitReader(e.Body, left+1))
	p.textBytes += int64(len(b))
	if int64(len(b)) > left {
		return body{}, fmt.Errorf("%w: more than %d bytes of text", ErrTextTooLong, p.opts.MaxTextBytes)
	}
	if err != nil {
		p.problem("%s: %v", mt, err)
	}
	s := string(b)
	if !utf8.ValidString(s) {
		if cs := strings.ToLower(params["charset"]); cs == "" || cs == "us-ascii" {
			s = toUTF8(s)
		} else {
			p.problem("%s: invalid %s text", mt, cs)
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if mt == "text/html" {
		return body{text: HTMLToText(s), html: true}, nil
	}
	if strings.EqualFold(params["format"], "flowed") {
		s = unflow(s, strings.EqualFold(params["delsp"], "yes"))
	}
	return body{text: s, plain: true}, nil
}

// unflow joins format=flowed lines (RFC 3676 section 4.2): a line ending in
// a space continues on the next line (unless it is a signature separator).
func unflow(s string, delsp bool) string {
	lines := strings.Split(s, "\n")
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		l = strings.TrimPrefix(l, " ") // space-stuffing
		if strings.HasSuffix(l, " ") && l != "-- " {
			if delsp {
				l = l[:len(l)-1]
			}
			cur.WriteString(l)
			continue
		}
		cur.WriteString(l)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return strings.Join(out, "\n")
}

// countingHash counts and hashes what is read through it (h nil: only
// counts).
type countingHash struct {
	r    io.Reader
	h    hashWriter
	n    int64
	rerr error
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func (c *countingHash) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.h != nil {
		c.h.Write(b[:n])
	}
	if err != nil && !errors.Is(err, io.EOF) {
		c.rerr = err
	}
	return n, err
}

func (p *parser) attachment(e *gomessage.Entity, name, mt string) error {
	a := &Attachment{Name: name, ContentType: mt, Related: p.inRelated > 0}
	c := &countingHash{r: e.Body}
	if p.inCipher == 0 || !p.opts.NoCiphertextHash {
		c.h = sha256.New()
	}
	if p.opts.OnAttachment != nil {
		if err := p.opts.OnAttachment(a, c); err != nil {
			return fmt.Errorf("attachment %q: %w", name, err)
		}
	}
	if _, err := io.Copy(io.Discard, c); err != nil && c.rerr == nil {
		c.rerr = err
	}
	if c.rerr != nil {
		p.problem("attachment %q: %v", name, c.rerr)
	}
	a.Size = c.n
	if c.h != nil {
		a.SHA256 = hex.EncodeToString(c.h.Sum(nil))
	}
	p.m.Attachments = append(p.m.Attachments, *a)
	return nil
}

func (p *parser) forwarded(e *gomessage.Entity, depth int) error {
	br := bufio.NewReader(e.Body)
	hdr, _, rest, err := readHeader(br, p.opts.MaxHeaderBytes)
	if err != nil {
		if errors.Is(err, ErrTooComplex) {
			return fmt.Errorf("forwarded message: %w", err)
		}
		p.problem("forwarded message: %v", err)
		_, err = io.Copy(io.Discard, br)
		return err
	}
	h := gomail.Header{Header: gomessage.Header{Header: hdr}}
	sub := &parser{m: &Message{Header: h}}
	sub.headerFields()
	inner, err := newEntity(h.Header, rest)
	if err != nil {
		p.problem("forwarded message: %v", err)
	}
	b, err := p.entity(inner, depth+1)
	if err != nil {
		return err
	}
	p.m.Forwarded = append(p.m.Forwarded, Forward{
		From:    sub.m.From,
		Subject: sub.m.Subject,
		Date:    h.Get("Date"),
		Text:    b.text,
	})
	return nil
}
