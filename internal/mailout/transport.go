package mailout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
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
}

// DeliveryError is a failed delivery, classified. Permanent failures (a
// 5xx reply, a message that can never be sent) are not retried;
// everything else (4xx replies, network errors, timeouts, TLS trouble) is.
type DeliveryError struct {
	Permanent bool
	Code      int    // SMTP reply code, 0 when there was no reply
	Enhanced  string // enhanced status code (RFC 3463), e.g. "5.1.1"
	Recipient string // the refused recipient, when the failure is one RCPT
	Msg       string // the server's text or a description of the failure
	Err       error  // the underlying error, if any
}

func (e *DeliveryError) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s delivery failure", kind)
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

// classify turns any error from the SMTP exchange into a DeliveryError.
func classify(err error, rcpt string) *DeliveryError {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		d := &DeliveryError{
			Permanent: se.Code >= 500 && se.Code < 600,
			Code:      se.Code,
			Recipient: rcpt,
			Msg:       strings.ReplaceAll(se.Message, "\n", " "),
			Err:       err,
		}
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			d.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return d
	}
	return &DeliveryError{Recipient: rcpt, Msg: err.Error(), Err: err}
}

// Deliver sends one message to the recipients in one SMTP transaction.
// All recipients must be accepted before any data is sent: when one is
// refused the transaction is abandoned and the error says why (permanent
// only if no refusal was temporary), so a retry never delivers twice to
// those that were accepted. The body is sent as it is; if reading it
// fails, the connection is dropped before the final dot, so a truncated
// message is never delivered.
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
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c, loopback, err := t.connect(ctx)
	if err != nil {
		return classify(err, "")
	}
	quitting := false
	defer func() {
		if !quitting {
			c.Close()
		}
	}()
	// Closing the connection interrupts whatever the client waits for.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	wrap := func(err error, rcpt string) error {
		if ctx.Err() != nil {
			return &DeliveryError{Recipient: rcpt, Msg: "delivery interrupted: " + context.Cause(ctx).Error(), Err: ctx.Err()}
		}
		return classify(err, rcpt)
	}

	_, isTLS := c.TLSConnectionState()
	if !isTLS && !loopback && !t.AllowInsecure {
		return &DeliveryError{Msg: fmt.Sprintf("server %s offers no TLS", t.Addr), Err: ErrInsecure}
	}
	if t.Username != "" {
		if !isTLS && !loopback {
			return &DeliveryError{Msg: "credentials would be sent in clear", Err: ErrInsecure}
		}
		if err := c.Auth(sasl.NewPlainClient("", t.Username, t.Password)); err != nil {
			return wrap(err, "")
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return wrap(err, "")
	}
	var refused *DeliveryError
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			d := classify(err, rcpt)
			if ctx.Err() != nil || d.Code == 0 {
				return wrap(err, rcpt)
			}
			// A temporary refusal outranks a permanent one: the message
			// is retried, and a recipient refused for good fails again.
			if refused == nil || (refused.Permanent && !d.Permanent) {
				refused = d
			}
		}
	}
	if refused != nil {
		c.Reset()
		c.Quit()
		return refused
	}
	wc, err := c.Data()
	if err != nil {
		return wrap(err, "")
	}
	if _, err := io.Copy(wc, body); err != nil {
		// Not wc.Close: that would end the data with the final dot.
		c.Close()
		if ctx.Err() != nil {
			return wrap(err, "")
		}
		return &DeliveryError{Msg: "sending data: " + err.Error(), Err: err}
	}
	if err := wc.Close(); err != nil {
		return wrap(err, "")
	}
	// The message is accepted. Say so at once, so the outbox records the
	// delivery before anything else can go wrong: a crash between the
	// server's 250 and that record sends the message again (with the same
	// Message-ID), and the reply to QUIT is not worth widening that window.
	// QUIT goes in the background, bounded by the command timeouts already
	// set; a failing QUIT changes nothing.
	quitting = true
	go func() {
		c.Quit()
		c.Close()
	}()
	return nil
}

// connect dials, greets and, per Security, starts TLS. It reports whether
// the peer is on a loopback address (judged from the connected socket,
// not from the name in Addr).
func (t *Transport) connect(ctx context.Context) (*smtp.Client, bool, error) {
	host, _, _ := net.SplitHostPort(t.Addr)
	tlsConfig := t.TLSConfig
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	if tlsConfig.ServerName == "" {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = host
	}
	hello := t.HelloName
	if hello == "" {
		hello = "localhost"
	}
	conn, loopback, err := t.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	// Until the client exists, closing the socket interrupts the greeting
	// and handshakes when the context ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var c *smtp.Client
	switch t.Security {
	case SecurityTLS:
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, false, fmt.Errorf("TLS handshake: %w", err)
		}
		c = t.newClient(ctx, tc)
	case SecurityPlain:
		c = t.newClient(ctx, conn)
	case SecurityStartTLS, "":
		// go-smtp greets with EHLO localhost before STARTTLS; HelloName
		// is used for the EHLO inside TLS.
		c, err = smtp.NewClientStartTLS(conn, tlsConfig)
		if err != nil {
			conn.Close()
			if !strings.Contains(err.Error(), "doesn't support STARTTLS") {
				return nil, false, fmt.Errorf("STARTTLS: %w", err)
			}
			if !loopback && !t.AllowInsecure {
				return nil, false, &DeliveryError{Msg: fmt.Sprintf("server %s does not offer STARTTLS", t.Addr), Err: ErrInsecure}
			}
			// Allowed without TLS: start over in plain text.
			plain, _, err := t.dial(ctx)
			if err != nil {
				return nil, false, err
			}
			stopPlain := context.AfterFunc(ctx, func() { plain.Close() })
			defer stopPlain()
			c = t.newClient(ctx, plain)
		} else {
			setTimeouts(ctx, c)
		}
	default:
		conn.Close()
		return nil, false, &DeliveryError{Permanent: true, Msg: fmt.Sprintf("unknown security mode %q", t.Security)}
	}
	if err := c.Hello(hello); err != nil {
		c.Close()
		return nil, false, err
	}
	return c, loopback, nil
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

func (t *Transport) newClient(ctx context.Context, conn net.Conn) *smtp.Client {
	c := smtp.NewClient(conn)
	setTimeouts(ctx, c)
	return c
}

func setTimeouts(ctx context.Context, c *smtp.Client) {
	c.CommandTimeout = time.Until(deadlineOr(ctx, time.Minute))
	c.SubmissionTimeout = c.CommandTimeout
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}
