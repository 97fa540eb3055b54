// Package smtptest runs an in-process SMTP server (github.com/emersion/go-smtp)
// for tests of code that sends mail: per-recipient replies (250, 4xx, 5xx),
// optional STARTTLS or implicit TLS with a throw-away certificate, optional
// AUTH PLAIN, the accepted messages, and a transcript of every session in
// clear text (after TLS is unwrapped) so a test can assert what did and did
// not cross the wire. It also wraps client connections to record the bytes
// a client sends to a real server (Postfix).
package smtptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"secondopinion/internal/mailworld"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a Server. The zero value is a plain server on
// 127.0.0.1 that accepts everything.
type Options struct {
	// STARTTLS offers STARTTLS with a self-signed certificate for
	// 127.0.0.1 and localhost; ImplicitTLS speaks TLS from the first byte.
	STARTTLS    bool
	ImplicitTLS bool
	// Users enables AUTH PLAIN and requires it before MAIL.
	Users map[string]string
	// AllowInsecureAuth permits AUTH without TLS.
	AllowInsecureAuth bool
	// Listen is the address to listen on; default 127.0.0.1:0.
	Listen string
}

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Reply is a scripted SMTP reply.
type Reply struct {
	Code     int
	Enhanced [3]int // zero: none
	Text     string
}

// Server is a running test server.
type Server struct {
	Addr string
	// ClientTLS trusts the server's certificate (nil without TLS).
	ClientTLS *tls.Config

	srv           *smtp.Server
	mu            sync.Mutex
	messages      []Message
	transcript    bytes.Buffer
	rcpt          map[string]Reply
	data          *Reply
	sessions      int
	hold          bool // hold the next DATA
	held, release chan struct{}
}

// NewServer starts a server and stops it with t.Cleanup.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{rcpt: map[string]Reply{}}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		return &session{s: s, users: opts.Users}, nil
	})
	srv := smtp.NewServer(be)
	srv.Domain = "smtptest.example"
	srv.AllowInsecureAuth = opts.AllowInsecureAuth
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.Debug = lockedWriter{s}
	srv.ErrorLog = nopLogger{}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	var l net.Listener
	var err error
	if opts.STARTTLS || opts.ImplicitTLS {
		serverTLS, clientTLS := SelfSignedTLS(t)
		s.ClientTLS = clientTLS
		srv.TLSConfig = serverTLS
		if opts.ImplicitTLS {
			l, err = tls.Listen("tcp", listen, serverTLS)
		} else {
			l, err = net.Listen("tcp", listen)
		}
	} else {
		l, err = net.Listen("tcp", listen)
	}
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.Addr = l.Addr().String()
	s.srv = srv
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		s.Unblock()
		// Closing the listener ourselves ends Serve even when Close runs
		// before Serve has registered it.
		l.Close()
		srv.Close()
		<-done
	})
	return s
}

// SetRcptReply scripts the reply to RCPT TO for one address
// (case-insensitive); a zero Reply restores 250.
func (s *Server) SetRcptReply(rcpt string, r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Code == 0 {
		delete(s.rcpt, strings.ToLower(rcpt))
		return
	}
	s.rcpt[strings.ToLower(rcpt)] = r
}

// SetDataReply scripts the reply after the final dot; nil restores 250.
func (s *Server) SetDataReply(r *Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = r
}

// Block makes the next DATA wait, after reading the whole message and
// before replying, until Unblock, and then refuse it with 421. The
// returned channel is closed when a DATA is held. Tests use it to cut a
// connection in the middle of a transaction.
func (s *Server) Block() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = true
	s.held = make(chan struct{})
	s.release = make(chan struct{})
	return s.held
}

// Unblock releases a DATA held by Block.
func (s *Server) Unblock() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = false
	if s.release != nil {
		close(s.release)
		s.release = nil
	}
}

// Messages returns the accepted messages in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Transcript returns everything both sides said in every session so far,
// in clear text (inside TLS).
func (s *Server) Transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transcript.String()
}

// Sessions counts the sessions opened so far.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

type lockedWriter struct{ s *Server }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.transcript.Write(p)
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type session struct {
	s      *Server
	users  map[string]string
	authed bool
	from   string
	to     []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.users == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if want, ok := ss.users[username]; !ok || want != password {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.users != nil && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	r, ok := ss.s.rcpt[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if ok {
		return r.err()
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	hold, held, release := ss.s.hold, ss.s.held, ss.s.release
	ss.s.hold = false
	ss.s.mu.Unlock()
	if hold {
		close(held)
		<-release
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "shutting down"}
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.data != nil {
		return ss.s.data.err()
	}
	ss.s.messages = append(ss.s.messages, Message{From: ss.from, To: append([]string(nil), ss.to...), Data: b})
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
}

func (ss *session) Logout() error { return nil }

func (r Reply) err() error {
	ec := smtp.EnhancedCode(r.Enhanced)
	if r.Enhanced == [3]int{} {
		ec = smtp.NoEnhancedCode
	}
	text := r.Text
	if text == "" {
		text = fmt.Sprintf("scripted reply %d", r.Code)
	}
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: ec, Message: text}
}

// SelfSignedTLS returns a server config with a fresh ECDSA certificate for
// 127.0.0.1, ::1 and localhost, and a client config that trusts only it.
func SelfSignedTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	server, client, err := mailworld.SelfSignedTLS(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// Recorder collects the bytes a client writes and reads on connections it
// wraps. Use Dial as a Transport's dial function to record sessions with
// a real server.
type Recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Dial dials like net.Dialer and records the connection.
func (r *Recorder) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: c, r: r}, nil
}

// String returns everything recorded so far, both directions, in order.
func (r *Recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

type recConn struct {
	net.Conn
	r *Recorder
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.r.mu.Lock()
	c.r.buf.Write(p[:n])
	c.r.mu.Unlock()
	return n, err
}

// SyscallConn lets a client peek at the socket under the recording (the
// mailout client does, to tell whether the server has hung up).
func (c *recConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("smtptest: not a socket")
	}
	return sc.SyscallConn()
}

func (c *recConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.r.mu.Lock()
	c.r.buf.Write(p[:n])
	c.r.mu.Unlock()
	return n, err
}
