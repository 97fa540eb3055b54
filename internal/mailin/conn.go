package mailin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"secondopinion/internal/loopback"
)

// dialTimeout bounds connecting and the TLS handshake.
const dialTimeout = 30 * time.Second

// DefaultAnswerTimeout is how long the ingester waits for a server that
// owes it an answer and sends nothing at all, before it drops the
// connection and reconnects.
const DefaultAnswerTimeout = 2 * time.Minute

// conn is one IMAP connection of the ingester. Every wait for the server's
// answer goes through wait, waitFor or next, which drop the connection when
// the server sends not a byte for the answer limit: go-imap bounds the
// reading of a response once it has begun, but not the wait for its first
// byte, so a server process that hangs, or a connection a firewall dropped
// without a reset, would hold the ingester (and the mail behind it) for
// good. Waiting in IDLE or between polls is not a wait for an answer.
type conn struct {
	*imapclient.Client
	raw   *clockConn
	limit time.Duration
	// silent is set when the limit dropped the connection.
	silent atomic.Bool
	// marking, if set, waits for the answer to the marks sent last.
	marking func() error
}

// settle waits for the answer to the marks sent last, if any.
func (c *conn) settle() error {
	f := c.marking
	if f == nil {
		return nil
	}
	c.marking = nil
	return c.wait(f)
}

// clockConn notes when bytes last came from the server.
type clockConn struct {
	net.Conn
	last atomic.Int64 // UnixNano
}

func (c *clockConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// watch arms the answer limit until the returned func is called: the
// connection is closed once neither the arming nor any byte from the
// server is more recent than the limit.
func (c *conn) watch() (disarm func()) {
	if c.limit <= 0 {
		return func() {}
	}
	start := time.Now().UnixNano()
	var (
		mu   sync.Mutex
		done bool
		t    *time.Timer
	)
	mu.Lock()
	t = time.AfterFunc(c.limit, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		quiet := time.Duration(time.Now().UnixNano() - max(start, c.raw.last.Load()))
		if quiet < c.limit {
			t.Reset(c.limit - quiet)
			return
		}
		c.silent.Store(true)
		c.raw.Close()
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		done = true
		t.Stop()
		mu.Unlock()
	}
}

// wait runs f, a wait for the server's answer, under the answer limit.
func (c *conn) wait(f func() error) error {
	defer c.watch()()
	return c.explain(f())
}

// waitFor is wait for an answer that carries a value.
func waitFor[T any](c *conn, f func() (T, error)) (T, error) {
	defer c.watch()()
	v, err := f()
	return v, c.explain(err)
}

// next is wait for the next item of a streamed answer (nil at its end).
func next[T any](c *conn, f func() T) T {
	defer c.watch()()
	return f()
}

// explain says why err happened when the answer limit dropped the
// connection; the error from the closed connection alone would not.
func (c *conn) explain(err error) error {
	if err != nil && c.silent.Load() {
		return fmt.Errorf("%w for %s; dropped the connection (%v)", ErrServerSilent, c.limit, err)
	}
	return err
}

// ErrServerSilent is wrapped by the error of a session whose server sent
// nothing for the answer limit while it owed an answer.
var ErrServerSilent = errors.New("no answer from the IMAP server")

// Dial connects to the IMAP server at addr (host:port) with security
// (tls, starttls, or plain to a loopback host only) and waits for its
// greeting. opts.TLSConfig nil means the system roots. Connecting, the TLS
// handshake and the greeting together take at most 30 s, and ctx cancels
// them.
func Dial(ctx context.Context, addr string, security Security, opts *imapclient.Options) (*imapclient.Client, error) {
	c, err := dial(ctx, addr, security, opts, 0) // the caller waits for its answers itself
	if err != nil {
		return nil, err
	}
	return c.Client, nil
}

func dial(ctx context.Context, addr string, security Security, opts *imapclient.Options, limit time.Duration) (*conn, error) {
	host, security, err := checkServer(addr, security)
	if err != nil {
		return nil, err
	}
	var o imapclient.Options
	if opts != nil {
		o = *opts
	}
	var tc *tls.Config
	if security != SecurityPlain {
		tc = &tls.Config{}
		if o.TLSConfig != nil {
			tc = o.TLSConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
		o.TLSConfig = tc
	}

	ctx, cancel := context.WithTimeoutCause(ctx, dialTimeout, errDialTimeout)
	defer cancel()
	d := net.Dialer{}
	tcp, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &conn{raw: &clockConn{Conn: tcp}, limit: limit}
	// Until the greeting (and STARTTLS) are through, the end of ctx closes
	// the connection: go-imap bounds only the greeting.
	stop := context.AfterFunc(ctx, func() { tcp.Close() })
	err = c.open(ctx, security, &o)
	if !stop() {
		err = context.Cause(ctx)
	}
	if err != nil {
		tcp.Close()
		return nil, err
	}
	return c, nil
}

var errDialTimeout = fmt.Errorf("no TLS handshake or greeting within %s", dialTimeout)

// checkServer checks addr (host:port) and security: tls (the default for
// ""), starttls, or plain to a loopback host only. It returns the host and
// the security to use.
func checkServer(addr string, security Security) (string, Security, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%w: addr %q: %v", ErrBadOptions, addr, err)
	}
	switch security {
	case "":
		security = SecurityTLS
	case SecurityTLS, SecurityStartTLS:
	case SecurityPlain:
		if !loopback.Host(host) {
			return "", "", fmt.Errorf("%w (addr %q)", ErrPlainNotLoopback, addr)
		}
	default:
		return "", "", fmt.Errorf("%w: security %q (want tls, starttls or plain)", ErrBadOptions, security)
	}
	return host, security, nil
}

// open puts the IMAP client on the connection: TLS first, or STARTTLS
// after the greeting, and waits for the greeting.
func (c *conn) open(ctx context.Context, security Security, o *imapclient.Options) error {
	var err error
	switch security {
	case SecurityTLS:
		tc := o.TLSConfig.Clone()
		if tc.NextProtos == nil {
			tc.NextProtos = []string{"imap"}
		}
		t := tls.Client(c.raw, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return err
		}
		c.Client = imapclient.New(t, o)
	case SecurityStartTLS:
		if c.Client, err = imapclient.NewStartTLS(c.raw, o); err != nil {
			return err
		}
	default:
		c.Client = imapclient.New(c.raw, o)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	return nil
}
