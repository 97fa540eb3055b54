package mailout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Security modes of a Transport.
const (
	SecurityStartTLS = "starttls" // plain connect, then STARTTLS (default)
	SecurityTLS      = "tls"      // implicit TLS (port 465)
	SecurityPlain    = "plain"    // no TLS: loopback or AllowInsecure only
)

// ErrInsecure is wrapped in the DeliveryError returned when a delivery
// would have to go without TLS (or send a password in clear) to a server
// that is not on loopback and AllowInsecure is not set.
var ErrInsecure = errors.New("mailout: refusing to send without TLS")

// Transport delivers composed messages to one SMTP server (the
// organisation's submission server or smarthost). The zero value of each
// optional field is a sensible default.
//
// It speaks SMTP (RFC 5321) with its own small client (smtpclient.go)
// rather than go-smtp's: the message goes out with BDAT when the server
// offers CHUNKING (RFC 3030), in large chunks instead of byte by byte, and
// a delivery whose end went out without a reply is reported as uncertain
// (IsUncertain) rather than as an ordinary temporary failure. Replies
// carry RFC 3463 enhanced status codes into DeliveryError; AUTH PLAIN
// follows RFC 4954.
type Transport struct {
	Addr string // host:port
	// Security is SecurityStartTLS (default), SecurityTLS or SecurityPlain.
	Security string
	// AllowInsecure permits a connection without TLS to a server that is
	// not on loopback. Credentials are still never sent in clear there.
	AllowInsecure bool
	// Username and Password enable AUTH PLAIN, only over TLS or loopback.
	Username, Password string
	// HelloName is the EHLO name; default "localhost".
	HelloName string
	// Timeout bounds a whole delivery; default 2 minutes.
	Timeout time.Duration
	// TLSConfig for STARTTLS or implicit TLS; nil verifies the server's
	// certificate against the system roots for the host in Addr.
	TLSConfig *tls.Config
	// Dial opens the TCP connection; nil uses net.Dialer. Tests wrap the
	// connection to record the SMTP transcript.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// IdleTimeout is how long a connection is kept for the next mail after
	// one went out; default DefaultIdleTimeout; negative: a connection per
	// mail, ended with QUIT.
	IdleTimeout time.Duration
	// MaxIdle is how many connections are kept; default DefaultParallel
	// (the outbox's lanes).
	MaxIdle int

	mu     sync.Mutex
	idle   []*session // kept connections, the most recently used last
	closed bool

	// noChunking makes the client use DATA even when the server offers
	// CHUNKING, so tests can run the DATA path against servers that
	// always offer it.
	noChunking bool
}

// DeliveryError is a failed delivery, classified. Permanent failures (a
// 5xx reply, a message that can never be sent) are not retried;
// everything else (4xx replies, network errors, timeouts, TLS trouble) is,
// except an uncertain outcome.
type DeliveryError struct {
	Permanent bool
	// Uncertain: the whole message went out (the last BDAT chunk or the
	// final dot) but no reply to it came (connection lost, timeout,
	// shutdown). The server may have accepted the message, so a blind
	// retry may deliver it twice. Every other DeliveryError means the
	// message was certainly not accepted.
	Uncertain bool
	Code      int    // SMTP reply code, 0 when there was no reply
	Enhanced  string // enhanced status code (RFC 3463), e.g. "5.1.1"
	Recipient string // the refused recipient, when the failure is one RCPT
	Msg       string // the server's text or a description of the failure
	Err       error  // the underlying error, if any
}

func (e *DeliveryError) Error() string {
	kind := "temporary delivery failure"
	switch {
	case e.Uncertain:
		kind = "delivery outcome unknown (message sent, no reply)"
	case e.Permanent:
		kind = "permanent delivery failure"
	}
	var b strings.Builder
	b.WriteString(kind)
	if e.Recipient != "" {
		fmt.Fprintf(&b, " for <%s>", e.Recipient)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, ": %d", e.Code)
		if e.Enhanced != "" {
			fmt.Fprintf(&b, " %s", e.Enhanced)
		}
	}
	if e.Msg != "" {
		fmt.Fprintf(&b, ": %s", e.Msg)
	}
	return b.String()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a DeliveryError marked permanent.
// Any other error counts as temporary.
func IsPermanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent
}

// IsUncertain reports whether err is a DeliveryError whose outcome is
// unknown: the message was sent in full and the server's verdict never
// arrived. The caller must find out (or wait) rather than resend blindly.
func IsUncertain(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Uncertain
}

// interrupted is classify, except that a failure because ctx ended (the
// delivery's timeout, or shutdown) says so.
func interrupted(ctx context.Context, err error, rcpt string) *DeliveryError {
	if ctx.Err() != nil {
		return &DeliveryError{Recipient: rcpt, Msg: "delivery interrupted: " + context.Cause(ctx).Error(), Err: ctx.Err()}
	}
	return classify(err, rcpt)
}

// classify turns any error from the SMTP exchange into a DeliveryError;
// failure replies already are one.
func classify(err error, rcpt string) *DeliveryError {
	var de *DeliveryError
	if errors.As(err, &de) {
		if rcpt != "" && de.Recipient == "" {
			d := *de
			d.Recipient = rcpt
			return &d
		}
		return de
	}
	return &DeliveryError{Recipient: rcpt, Msg: err.Error(), Err: err}
}

// Deliver sends one message to the recipients in one SMTP transaction.
// All recipients must be accepted before any data is sent: when one is
// refused the transaction is abandoned and the error says why (permanent
// only if no refusal was temporary), so a retry never delivers twice to
// those that were accepted. The body is sent as it is, with BDAT when the
// server offers CHUNKING (RFC 3030), else with DATA; if reading it fails,
// the connection is dropped before the last chunk or the final dot, so a
// truncated message is never delivered. When the whole message went out
// and no reply came, the error is uncertain (IsUncertain).
//
// The connection is kept for the next mail (see IdleTimeout): a mail does
// not pay for connecting, EHLO, STARTTLS and AUTH again. When a kept
// connection turns out to be gone (or the server says 421) before any
// recipient was given, the mail goes over a new connection instead.
func (t *Transport) Deliver(ctx context.Context, from string, to []string, body io.Reader) error {
	if len(to) == 0 {
		return &DeliveryError{Permanent: true, Msg: "no recipients"}
	}
	for i, a := range append([]string{from}, to...) {
		if i == 0 && a == "" {
			continue // the null reverse-path
		}
		if err := validEmail(a); err != nil {
			return &DeliveryError{Permanent: true, Msg: err.Error(), Err: err}
		}
	}
	ctx, cancel, hello, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()

	if s := t.take(); s != nil {
		again, err := t.transact(ctx, s, true, from, to, body)
		if !again {
			return err
		}
	}
	s, err := t.open(ctx, hello)
	if err != nil {
		return err
	}
	_, err = t.transact(ctx, s, false, from, to, body)
	return err
}

// session is a connection that has said EHLO (and STARTTLS and AUTH, as
// configured) and may carry mail.
type session struct {
	c     *client
	raw   net.Conn
	since time.Time // when it was last put aside
}

// open connects and makes a session ready for MAIL.
func (t *Transport) open(ctx context.Context, hello string) (*session, error) {
	raw, loopback, err := t.dial(ctx)
	if err != nil {
		return nil, classify(err, "")
	}
	ok := false
	defer func() {
		if !ok {
			raw.Close()
		}
	}()
	// Closing the socket interrupts whatever the client waits for; the
	// deadline bounds each read and write.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	c, err := t.handshake(ctx, raw, loopback, hello)
	if err != nil {
		return nil, interrupted(ctx, err, "")
	}
	if !c.isTLS && !loopback && !t.AllowInsecure {
		return nil, &DeliveryError{Msg: fmt.Sprintf("server %s offers no TLS", t.Addr), Err: ErrInsecure}
	}
	if t.Username != "" {
		if !c.isTLS && !loopback {
			return nil, &DeliveryError{Msg: "credentials would be sent in clear", Err: ErrInsecure}
		}
		if err := c.auth(t.Username, t.Password); err != nil {
			return nil, interrupted(ctx, err, "")
		}
	}
	ok = true
	return &session{c: c, raw: raw}, nil
}

// transact runs one mail transaction on s, and keeps s for the next mail
// when it ends cleanly (accepted, or refused and reset). again says that
// a kept session failed before any recipient was given, so nothing was
// sent: the caller may try once more on a new connection.
func (t *Transport) transact(ctx context.Context, s *session, kept bool, from string, to []string, body io.Reader) (again bool, err error) {
	stop := context.AfterFunc(ctx, func() { s.raw.Close() })
	keep := false
	defer func() {
		if stop() && keep {
			t.put(s)
		} else {
			s.raw.Close()
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		s.raw.SetDeadline(dl)
	}
	c := s.c
	var refused, broken *DeliveryError
	err = c.envelope(from, bodySize(body), to, func(rcpt string, err error) bool {
		d := classify(err, rcpt)
		if ctx.Err() != nil || d.Code == 0 {
			broken = interrupted(ctx, err, rcpt)
			return true
		}
		// A temporary refusal outranks a permanent one: the message is
		// retried, and a recipient refused for good fails again.
		if refused == nil || (refused.Permanent && !d.Permanent) {
			refused = d
		}
		return false
	})
	if err != nil {
		var de *DeliveryError
		gone := !errors.As(err, &de) || de.Code == 421
		if kept && gone && ctx.Err() == nil {
			return true, err
		}
		return false, interrupted(ctx, err, "")
	}
	if broken != nil {
		return false, broken
	}
	if refused != nil {
		_, err := c.cmd(250, "RSET")
		keep = err == nil
		return false, refused
	}
	sent, err := c.sendBody(body, !t.noChunking)
	if err != nil {
		var be *bodyError
		switch {
		case errors.As(err, &be):
			return false, &DeliveryError{Msg: "sending data: " + be.Error(), Err: err}
		case sent:
			msg := "no reply to the end of the message: " + err.Error()
			if ctx.Err() != nil {
				msg = "delivery interrupted waiting for the reply to the end of the message: " + context.Cause(ctx).Error()
			}
			return false, &DeliveryError{Uncertain: true, Msg: msg, Err: err}
		}
		return false, interrupted(ctx, err, "")
	}
	// The message is accepted: say so at once, so the outbox records the
	// delivery before anything else can go wrong (a crash between the
	// server's 250 and that record sends the message again).
	keep = true
	return false, nil
}

// take returns a kept session that still looks usable, or nil. Sessions
// idle too long, closed by the server, or with words from it waiting (a
// 421 on its way out) are ended.
func (t *Transport) take() *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.idle) > 0 {
		s := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if time.Since(s.since) <= t.idleTimeout() && s.c.br.Buffered() == 0 && peerQuiet(s.raw) {
			return s
		}
		go quit(s)
	}
	return nil
}

// put keeps s for the next mail, or ends it when enough are kept.
func (t *Transport) put(s *session) {
	s.raw.SetDeadline(time.Time{})
	s.since = time.Now()
	t.mu.Lock()
	if !t.closed && t.idleTimeout() > 0 && len(t.idle) < t.maxIdle() {
		t.idle = append(t.idle, s)
		s = nil
	}
	t.mu.Unlock()
	if s != nil {
		go quit(s)
	}
}

// Check connects as Deliver does (EHLO, and STARTTLS and AUTH as
// configured) and ends with QUIT: no mail is sent. It returns how the
// session was secured, for the operator.
func (t *Transport) Check(ctx context.Context) (string, error) {
	ctx, cancel, hello, err := t.begin(ctx)
	if err != nil {
		return "", checkErr(err)
	}
	defer cancel()
	s, err := t.open(ctx, hello)
	if err != nil {
		return "", checkErr(err)
	}
	defer quit(s)
	how := "no TLS"
	if s.c.isTLS {
		how = "TLS"
	}
	if t.Username != "" {
		how += ", logged in as " + t.Username
	}
	return how, nil
}

// checkErr words a DeliveryError of Check by what failed, without calling
// it a delivery failure (no mail was sent); it still unwraps to the
// DeliveryError, and so to ErrInsecure.
func checkErr(err error) error {
	var de *DeliveryError
	if errors.As(err, &de) && de.Msg != "" {
		return checkError{de}
	}
	return err
}

type checkError struct{ de *DeliveryError }

func (e checkError) Error() string { return e.de.Msg }
func (e checkError) Unwrap() error { return e.de }

// begin checks the settings Deliver and Check share, and bounds ctx by
// Timeout (2 minutes when zero): a server that takes the connection and
// never greets must not hold the caller for ever. It returns the name for
// EHLO.
func (t *Transport) begin(ctx context.Context) (context.Context, context.CancelFunc, string, error) {
	hello := t.HelloName
	if hello == "" {
		hello = "localhost"
	}
	if strings.ContainsFunc(hello, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, nil, "", &DeliveryError{Permanent: true, Msg: fmt.Sprintf("invalid HelloName %q", hello)}
	}
	switch t.Security {
	case SecurityStartTLS, SecurityTLS, SecurityPlain, "":
	default:
		return nil, nil, "", &DeliveryError{Permanent: true, Msg: fmt.Sprintf("unknown security mode %q", t.Security)}
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, cancel, hello, nil
}

// quit ends a session politely (QUIT), bounded by a short deadline.
func quit(s *session) {
	s.raw.SetDeadline(time.Now().Add(10 * time.Second))
	s.c.quit()
	s.raw.Close()
}

// Close ends the kept connections (QUIT). Deliver still works after it,
// one connection per mail.
func (t *Transport) Close() error {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range idle {
		wg.Go(func() { quit(s) })
	}
	wg.Wait()
	return nil
}

// DefaultIdleTimeout is how long a connection is kept for the next mail.
// Servers end an idle SMTP session after minutes (Postfix's smtpd_timeout
// is 300 s, less under stress), and a connection the server has closed is
// noticed before it is used.
const DefaultIdleTimeout = 20 * time.Second

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout == 0 {
		return DefaultIdleTimeout
	}
	return t.IdleTimeout
}

func (t *Transport) maxIdle() int {
	if t.MaxIdle > 0 {
		return t.MaxIdle
	}
	return DefaultParallel
}

// handshake reads the greeting, says EHLO and, per Security, starts TLS.
func (t *Transport) handshake(ctx context.Context, raw net.Conn, loopback bool, hello string) (*client, error) {
	host, _, _ := net.SplitHostPort(t.Addr)
	tlsConfig := t.TLSConfig
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	if tlsConfig.ServerName == "" {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = host
	}
	var c *client
	if t.Security == SecurityTLS {
		tc := tls.Client(raw, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = newClient(raw, tc, true)
	} else {
		c = newClient(raw, raw, false)
	}
	if err := c.greet(); err != nil {
		return nil, err
	}
	if err := c.hello(hello); err != nil {
		return nil, err
	}
	if t.Security == SecurityStartTLS || t.Security == "" {
		if !c.has("STARTTLS") {
			if !loopback && !t.AllowInsecure {
				return nil, &DeliveryError{Msg: fmt.Sprintf("server %s does not offer STARTTLS", t.Addr), Err: ErrInsecure}
			}
			return c, nil // allowed without TLS
		}
		if err := c.startTLS(ctx, tlsConfig, hello); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (t *Transport) dial(ctx context.Context) (net.Conn, bool, error) {
	dial := t.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, false, err
	}
	loopback := false
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		loopback = ta.IP.IsLoopback()
	}
	return conn, loopback, nil
}

// bodySize is the number of bytes left in body when that is cheap to
// know, for SIZE (RFC 1870); -1 otherwise. The outbox hands over files.
func bodySize(body io.Reader) int64 {
	switch b := body.(type) {
	case interface{ Len() int }: // bytes.Reader, strings.Reader, bytes.Buffer
		return int64(b.Len())
	case *os.File:
		fi, err := b.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		off, err := b.Seek(0, io.SeekCurrent)
		if err != nil || off > fi.Size() {
			return -1
		}
		return fi.Size() - off
	}
	return -1
}
