package mailout

// This file holds the SMTP client (RFC 5321) that Transport drives. It is
// ours rather than github.com/emersion/go-smtp's client for two reasons:
//
//   - CHUNKING (RFC 3030): go-smtp's client sends only DATA, through a
//     dot-stuffing writer that handles the message byte by byte, and the
//     server side then un-stuffs it byte by byte again. With BDAT the
//     message goes out in large chunks as it is, and both ends copy
//     buffers. Outgoing mail here is mostly PGP/MIME with medical files of
//     several megabytes, so that is most of the SMTP cost.
//   - The uncertain outcome: once the last BDAT chunk or the final dot has
//     gone out, a missing reply (connection lost, timeout, shutdown) means
//     the server may or may not have taken the message (RFC 5321 section
//     6.1 on duplicate deliveries). The caller must tell that apart from a
//     failure before the end of the data, which is certainly not a
//     delivery, and only a client that knows where it stands on the wire
//     can say which one it was.
//
// The client keeps the rest small: EHLO (HELO as a fallback), STARTTLS
// (RFC 3207), AUTH PLAIN (RFC 4954, RFC 4616), SIZE (RFC 1870), and replies
// with enhanced status codes (RFC 2034, RFC 3463). Commands go one at a
// time; on loopback or a LAN the round trips cost little next to the
// message.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
)

// chunkSize is the size of one BDAT chunk and of the buffer the body is
// read through.
const chunkSize = 1 << 20

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// errProtocol marks a reply the client cannot understand.
var errProtocol = errors.New("SMTP protocol error")

// reply is one (possibly multi-line) server reply.
type reply struct {
	Code     int
	Enhanced string // RFC 3463 status code, e.g. "5.1.1"; "" when absent
	Lines    []string
}

// Text is the reply's text on one line, enhanced codes removed.
func (r *reply) Text() string { return strings.Join(r.Lines, " ") }

// err turns a failure reply into a DeliveryError: 5xx is permanent,
// anything else temporary.
func (r *reply) err(rcpt string) *DeliveryError {
	return &DeliveryError{
		Permanent: r.Code >= 500 && r.Code < 600,
		Code:      r.Code,
		Enhanced:  r.Enhanced,
		Recipient: rcpt,
		Msg:       r.Text(),
	}
}

// Limits on what a reply may be, so that a misbehaving server cannot make
// the client read without end.
const (
	maxReplyLine  = 4096 // RFC 5321 4.5.3.1.5 asks for 512
	maxReplyLines = 200
)

// readReply reads one reply (RFC 5321 section 4.2): lines "ddd-text" then
// a last line "ddd text" (or just "ddd"), all with the same code. An
// enhanced status code at the start of a line's text (RFC 2034, RFC 3463)
// is taken from the first line and removed from every line. It never
// panics; anything malformed is an error wrapping errProtocol.
func readReply(br *bufio.Reader) (*reply, error) {
	var r reply
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return nil, fmt.Errorf("%w: reply longer than %d lines", errProtocol, maxReplyLines)
		}
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: reply line longer than %d bytes", errProtocol, br.Size())
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read reply: %w", err)
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
			return nil, fmt.Errorf("%w: malformed reply %q", errProtocol, truncate(line))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if n > 0 && code != r.Code {
			return nil, fmt.Errorf("%w: reply code %d within reply %d", errProtocol, code, r.Code)
		}
		r.Code = code
		more := false
		var text []byte
		if len(line) > 3 {
			switch line[3] {
			case '-':
				more = true
			case ' ':
			default:
				return nil, fmt.Errorf("%w: malformed reply %q", errProtocol, truncate(line))
			}
			text = line[4:]
		}
		if enh, rest, ok := cutEnhanced(text, line[0]); ok {
			if r.Enhanced == "" && n == 0 {
				r.Enhanced = enh
			}
			text = rest
		}
		r.Lines = append(r.Lines, printable(text))
		if !more {
			return &r, nil
		}
	}
}

// cutEnhanced splits "x.y.z text" into the enhanced status code and the
// text, when the code's class matches the reply's (RFC 3463 section 2:
// class 2, 4 or 5; subject and detail of one to three digits).
func cutEnhanced(text []byte, class byte) (string, []byte, bool) {
	code, rest, _ := bytes.Cut(text, []byte(" "))
	parts := bytes.Split(code, []byte("."))
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0][0] != class {
		return "", nil, false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return "", nil, false
		}
		for _, c := range p {
			if !isDigit(c) {
				return "", nil, false
			}
		}
	}
	return string(code), rest, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// printable keeps a server's text fit for an error message and a log
// line: control characters become spaces.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(b))
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// client is one SMTP session on one connection.
type client struct {
	raw   net.Conn // as dialled; below TLS
	conn  net.Conn // raw, or TLS over raw
	br    *bufio.Reader
	bw    *bufio.Writer
	ext   map[string]string // EHLO keywords (upper case) and their parameters
	isTLS bool
}

func newClient(raw, conn net.Conn, isTLS bool) *client {
	return &client{
		raw:   raw,
		conn:  conn,
		br:    bufio.NewReaderSize(conn, maxReplyLine),
		bw:    bufio.NewWriterSize(conn, 64<<10),
		isTLS: isTLS,
	}
}

// cmd sends one command line and reads the reply. A reply other than
// 2xx/3xx is returned as a *DeliveryError; a reply with another code than
// want (when want is not 0) is a protocol error.
func (c *client) cmd(want int, line string) (*reply, error) {
	if err := c.send(line); err != nil {
		return nil, err
	}
	return c.expect(want)
}

func (c *client) send(line string) error {
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("send %s: %w", commandName(line), err)
	}
	return nil
}

func (c *client) expect(want int) (*reply, error) {
	r, err := readReply(c.br)
	if err != nil {
		return nil, err
	}
	if r.Code >= 400 {
		return r, r.err("")
	}
	if want != 0 && r.Code != want {
		return r, fmt.Errorf("%w: unexpected reply %d %s", errProtocol, r.Code, r.Text())
	}
	return r, nil
}

// commandName is the verb of a command line, for error messages that must
// not repeat arguments (AUTH carries credentials).
func commandName(line string) string {
	verb, _, _ := strings.Cut(line, " ")
	return verb
}

// greet reads the server's greeting (RFC 5321 section 4.3.1).
func (c *client) greet() error {
	if _, err := c.expect(220); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	return nil
}

// hello sends EHLO and records the extensions; a server that refuses EHLO
// with 5xx gets HELO (RFC 5321 section 3.2) and no extensions.
func (c *client) hello(name string) error {
	c.ext = map[string]string{}
	r, err := c.cmd(250, "EHLO "+name)
	var de *DeliveryError
	if errors.As(err, &de) && de.Permanent {
		_, err = c.cmd(250, "HELO "+name)
		return err
	}
	if err != nil {
		return err
	}
	for _, l := range r.Lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

func (c *client) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// startTLS upgrades the connection (RFC 3207) and says EHLO again, as the
// server forgets what it learnt in clear.
func (c *client) startTLS(ctx context.Context, cfg *tls.Config, hello string) error {
	if _, err := c.cmd(220, "STARTTLS"); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if c.br.Buffered() > 0 {
		// Anything sent after the 220 in clear would be taken for an
		// answer inside TLS (the STARTTLS injection attack).
		return fmt.Errorf("STARTTLS: %w: data after the 220 reply", errProtocol)
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	*c = *newClient(c.raw, tc, true)
	return c.hello(hello)
}

// auth authenticates with SASL PLAIN (RFC 4954, RFC 4616), the initial
// response on the AUTH line. Errors never hold the credentials.
func (c *client) auth(username, password string) error {
	if !c.has("AUTH") {
		return &DeliveryError{Msg: "server offers no AUTH"}
	}
	sc := sasl.NewPlainClient("", username, password)
	mech, ir, err := sc.Start()
	if err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	line := "AUTH " + mech
	if ir != nil {
		line += " " + encodeSASL(ir)
	}
	for {
		r, err := c.cmd(0, line)
		if err != nil {
			return err
		}
		switch r.Code {
		case 235:
			return nil
		case 334:
			challenge, err := base64.StdEncoding.DecodeString(r.Text())
			if err != nil {
				c.cmd(0, "*")
				return fmt.Errorf("AUTH: %w: bad challenge", errProtocol)
			}
			resp, err := sc.Next(challenge)
			if err != nil {
				c.cmd(0, "*")
				return fmt.Errorf("AUTH: %w", err)
			}
			line = encodeSASL(resp)
		default:
			return fmt.Errorf("AUTH: %w: unexpected reply %d", errProtocol, r.Code)
		}
	}
}

func encodeSASL(b []byte) string {
	if len(b) == 0 {
		return "=" // RFC 4954 section 4: an empty response
	}
	return base64.StdEncoding.EncodeToString(b)
}

// maxPipelined is the most recipients whose RCPT commands are pipelined.
const maxPipelined = 100

// envelope sends MAIL FROM, with SIZE (RFC 1870) when the server takes it
// and size is known (>= 0) and BODY=8BITMIME (RFC 6152) when offered, and
// a RCPT TO per recipient. Over a server that offers PIPELINING (RFC 2920)
// they go out together, and the replies are read in order: one round trip
// instead of one per command. The data command is never sent with them:
// it waits for their replies, so that a refused recipient leaves the
// message unsent to all.
//
// mailErr is the failure of MAIL FROM (or of sending the envelope); then
// no RCPT reply is read and the connection must not be used again. Else
// rcptErr is called with each recipient's outcome, in order; when it says
// stop, the rest are not read and the connection must not be used again.
func (c *client) envelope(from string, size int64, to []string, rcptErr func(rcpt string, err error) (stop bool)) (mailErr error) {
	mail := "MAIL FROM:<" + from + ">"
	if c.has("SIZE") && size >= 0 {
		mail += " SIZE=" + strconv.FormatInt(size, 10)
	}
	if c.has("8BITMIME") {
		mail += " BODY=8BITMIME"
	}
	// A long list of recipients goes one by one: the client writes it all
	// before it reads a reply, and the server may stop reading while it
	// cannot write its replies.
	pipelined := c.has("PIPELINING") && len(to) <= maxPipelined
	if pipelined {
		c.bw.WriteString(mail + "\r\n")
		for _, rcpt := range to {
			c.bw.WriteString("RCPT TO:<" + rcpt + ">\r\n")
		}
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("send MAIL: %w", err)
		}
		_, mailErr = c.expect(250)
	} else {
		_, mailErr = c.cmd(250, mail)
	}
	if mailErr != nil {
		return mailErr
	}
	for _, rcpt := range to {
		var (
			r   *reply
			err error
		)
		if pipelined {
			r, err = c.expect(0)
		} else {
			r, err = c.cmd(0, "RCPT TO:<"+rcpt+">")
		}
		// 250 and 251 (RFC 5321 section 4.2.2) accept.
		if err == nil && r.Code != 250 && r.Code != 251 {
			err = fmt.Errorf("%w: unexpected reply %d to RCPT", errProtocol, r.Code)
		}
		if err != nil && rcptErr(rcpt, err) {
			return nil
		}
	}
	return nil
}

// bodyError is a failure to read the message from the caller.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "reading the message: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// sendBody sends the message with BDAT when the server offers CHUNKING,
// else with DATA, and reads the final reply. sent reports that the end of
// the message went out and then no reply could be read: the outcome is
// uncertain. When err is a *bodyError nothing final was sent and the
// connection must be dropped.
func (c *client) sendBody(body io.Reader, chunking bool) (sent bool, err error) {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	if chunking && c.has("CHUNKING") {
		return c.bdat(body, *bp)
	}
	return c.data(body, *bp)
}

// bdat sends the message as it is in chunks (RFC 3030), "BDAT n" and n
// bytes each, the last "BDAT n LAST", reading the reply to each. A chunk
// is only marked LAST once the reader has said EOF, so a reader that
// fails never completes a message.
func (c *client) bdat(body io.Reader, buf []byte) (bool, error) {
	for {
		n, rerr := io.ReadFull(body, buf)
		last := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if rerr != nil && !last {
			return false, &bodyError{rerr}
		}
		if last {
			if err := c.checkAlive(); err != nil {
				return false, err
			}
			fmt.Fprintf(c.bw, "BDAT %d LAST\r\n", n)
		} else {
			fmt.Fprintf(c.bw, "BDAT %d\r\n", n)
		}
		c.bw.Write(buf[:n])
		if err := c.bw.Flush(); err != nil {
			return false, fmt.Errorf("send BDAT: %w", err)
		}
		r, err := readReply(c.br)
		if err != nil {
			return last, err
		}
		if r.Code >= 400 {
			return false, r.err("")
		}
		if r.Code != 250 {
			return last, fmt.Errorf("%w: unexpected reply %d to BDAT", errProtocol, r.Code)
		}
		if last {
			return false, nil
		}
	}
}

// data sends the message with DATA (RFC 5321 section 4.1.1.4), dot-stuffed
// and with bare LF made CRLF, then the final dot.
func (c *client) data(body io.Reader, buf []byte) (bool, error) {
	if _, err := c.cmd(354, "DATA"); err != nil {
		return false, err
	}
	dw := dotWriter{w: c.bw, lineStart: true}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if err := dw.write(buf[:n]); err != nil {
				return false, fmt.Errorf("send data: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return false, &bodyError{rerr}
		}
	}
	if err := c.checkAlive(); err != nil {
		return false, err
	}
	dw.close()
	if err := c.bw.Flush(); err != nil {
		return false, fmt.Errorf("send data: %w", err)
	}
	r, err := readReply(c.br)
	if err != nil {
		return true, err
	}
	if r.Code >= 400 {
		return false, r.err("")
	}
	if r.Code != 250 {
		return true, fmt.Errorf("%w: unexpected reply %d to the end of data", errProtocol, r.Code)
	}
	return false, nil
}

// checkAlive runs just before the end of the message goes out: a server
// that has already hung up (stopped, crashed) would otherwise turn a
// certain failure into an uncertain one, as the client would only learn
// of it while waiting for the reply.
func (c *client) checkAlive() error {
	if c.br.Buffered() > 0 {
		return nil // the server spoke; its words are read as the reply
	}
	if peerClosed(c.raw) {
		return fmt.Errorf("server closed the connection: %w", io.ErrUnexpectedEOF)
	}
	return nil
}

// quit ends the session politely (RFC 5321 section 4.1.1.10).
func (c *client) quit() error {
	_, err := c.cmd(221, "QUIT")
	return err
}

// dotWriter writes message text for DATA: a '.' starting a line is
// doubled and a bare LF becomes CRLF (RFC 5321 section 4.5.2), working on
// whole buffers; only the places that change are split out.
type dotWriter struct {
	w         *bufio.Writer
	lineStart bool // the next byte starts a line
	cr        bool // the last byte written was '\r'
}

func (d *dotWriter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if d.lineStart && p[0] == '.' {
		d.w.WriteByte('.')
	}
	start := 0
	for i := 0; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		crBefore := d.cr
		if j > 0 {
			crBefore = p[j-1] == '\r'
		}
		dot := j+1 < len(p) && p[j+1] == '.'
		if !crBefore || dot {
			d.w.Write(p[start:j])
			if !crBefore {
				d.w.WriteByte('\r')
			}
			d.w.WriteByte('\n')
			if dot {
				d.w.WriteByte('.')
			}
			start = j + 1
		}
		i = j + 1
		if i == len(p) {
			break
		}
	}
	_, err := d.w.Write(p[start:])
	last := p[len(p)-1]
	d.lineStart = last == '\n'
	d.cr = last == '\r'
	return err
}

// close ends the last line if needed and writes the final dot.
func (d *dotWriter) close() {
	switch {
	case d.lineStart:
	case d.cr:
		d.w.WriteByte('\n')
	default:
		d.w.WriteString("\r\n")
	}
	d.w.WriteString(".\r\n")
}
