package mailout

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"secondopinion/internal/mailout/smtptest"
)

const testMsg = "From: so@example.test\r\nTo: a@example.net\r\nSubject: test\r\nMessage-ID: <t1@example.test>\r\n\r\nHallo.\r\n"

// remoteConn makes a loopback connection look like one to a remote
// server, to test the rules that apply off loopback.
type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 587} }

func (c remoteConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

func dialRemote(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

func TestDeliverReplies(t *testing.T) {
	tests := []struct {
		name      string
		rcpts     []string
		replies   map[string]smtptest.Reply
		data      *smtptest.Reply
		wantErr   bool
		permanent bool
		code      int
		enhanced  string
	}{
		{name: "accepted", rcpts: []string{"a@example.net", "b@example.net"}},
		{name: "rcpt 451", rcpts: []string{"a@example.net"}, replies: map[string]smtptest.Reply{"a@example.net": {Code: 451, Enhanced: [3]int{4, 3, 0}}}, wantErr: true, code: 451, enhanced: "4.3.0"},
		{name: "rcpt 550", rcpts: []string{"a@example.net"}, replies: map[string]smtptest.Reply{"a@example.net": {Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "no such user"}}, wantErr: true, permanent: true, code: 550, enhanced: "5.1.1"},
		{name: "one of two refused sends to none", rcpts: []string{"a@example.net", "b@example.net"}, replies: map[string]smtptest.Reply{"b@example.net": {Code: 550, Enhanced: [3]int{5, 1, 1}}}, wantErr: true, permanent: true, code: 550},
		{name: "temporary outranks permanent", rcpts: []string{"a@example.net", "b@example.net"}, replies: map[string]smtptest.Reply{"a@example.net": {Code: 550}, "b@example.net": {Code: 452, Enhanced: [3]int{4, 2, 2}}}, wantErr: true, code: 452},
		{name: "data 554", rcpts: []string{"a@example.net"}, data: &smtptest.Reply{Code: 554, Enhanced: [3]int{5, 6, 0}}, wantErr: true, permanent: true, code: 554},
		{name: "data 452", rcpts: []string{"a@example.net"}, data: &smtptest.Reply{Code: 452}, wantErr: true, code: 452},
	}
	for _, tt := range tests {
		for _, mode := range []string{"BDAT", "DATA"} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				srv := smtptest.NewServer(t, smtptest.Options{})
				for r, rep := range tt.replies {
					srv.SetRcptReply(r, rep)
				}
				srv.SetDataReply(tt.data)
				tr := &Transport{Addr: srv.Addr, Timeout: 10 * time.Second, noChunking: mode == "DATA"}
				err := tr.Deliver(context.Background(), "so@example.test", tt.rcpts, strings.NewReader(testMsg))
				msgs := srv.Messages()
				if !tt.wantErr {
					if err != nil {
						t.Fatalf("Deliver: %v", err)
					}
					if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, []byte(testMsg)) || len(msgs[0].To) != len(tt.rcpts) {
						t.Fatalf("server got %+v", msgs)
					}
					if !strings.Contains(srv.Transcript(), "\n"+mode) {
						t.Errorf("transcript lacks %s:\n%s", mode, srv.Transcript())
					}
					return
				}
				var de *DeliveryError
				if !errors.As(err, &de) {
					t.Fatalf("err = %v, want *DeliveryError", err)
				}
				if IsPermanent(err) != tt.permanent || de.Code != tt.code || (tt.enhanced != "" && de.Enhanced != tt.enhanced) {
					t.Errorf("err = %+v, want permanent=%v code=%d enhanced=%q", de, tt.permanent, tt.code, tt.enhanced)
				}
				if IsUncertain(err) {
					t.Errorf("err = %v is uncertain; the server replied", err)
				}
				if len(msgs) != 0 {
					t.Errorf("server accepted %d messages despite the failure", len(msgs))
				}
			})
		}
	}
}

func TestDeliverSecurity(t *testing.T) {
	users := map[string]string{"svc": "s3cret-pw"}
	tests := []struct {
		name      string
		opts      smtptest.Options
		tr        func(srv *smtptest.Server) *Transport
		wantErr   error // nil: delivered
		wantTLS   bool
		wantNoCmd string // must not appear in the transcript
	}{
		{
			name:    "loopback without TLS is allowed",
			tr:      func(srv *smtptest.Server) *Transport { return &Transport{Addr: srv.Addr} },
			wantTLS: false,
		},
		{
			name: "STARTTLS is used when offered, even on loopback",
			opts: smtptest.Options{STARTTLS: true},
			tr: func(srv *smtptest.Server) *Transport {
				return &Transport{Addr: srv.Addr, TLSConfig: srv.ClientTLS, HelloName: "so.example.test"}
			},
			wantTLS: true,
		},
		{
			name:      "remote without STARTTLS is refused",
			tr:        func(srv *smtptest.Server) *Transport { return &Transport{Addr: srv.Addr, Dial: dialRemote} },
			wantErr:   ErrInsecure,
			wantNoCmd: "MAIL FROM",
		},
		{
			name: "remote without STARTTLS when explicitly allowed",
			tr: func(srv *smtptest.Server) *Transport {
				return &Transport{Addr: srv.Addr, Dial: dialRemote, AllowInsecure: true}
			},
		},
		{
			name: "remote plain mode is refused",
			tr: func(srv *smtptest.Server) *Transport {
				return &Transport{Addr: srv.Addr, Dial: dialRemote, Security: SecurityPlain}
			},
			wantErr:   ErrInsecure,
			wantNoCmd: "MAIL FROM",
		},
		{
			name: "remote STARTTLS with AUTH",
			opts: smtptest.Options{STARTTLS: true, Users: users},
			tr: func(srv *smtptest.Server) *Transport {
				return &Transport{Addr: srv.Addr, Dial: dialRemote, TLSConfig: srv.ClientTLS, Username: "svc", Password: "s3cret-pw"}
			},
			wantTLS: true,
		},
		{
			name: "implicit TLS with AUTH",
			opts: smtptest.Options{ImplicitTLS: true, Users: users},
			tr: func(srv *smtptest.Server) *Transport {
				return &Transport{Addr: srv.Addr, Security: SecurityTLS, TLSConfig: srv.ClientTLS, Username: "svc", Password: "s3cret-pw"}
			},
			wantTLS: true,
		},
		{
			name: "never a password in clear off loopback, even when allowed",
			opts: smtptest.Options{Users: users, AllowInsecureAuth: true},
			tr: func(srv *smtptest.Server) *Transport {
				return &Transport{Addr: srv.Addr, Dial: dialRemote, AllowInsecure: true, Username: "svc", Password: "s3cret-pw"}
			},
			wantErr:   ErrInsecure,
			wantNoCmd: "\nAUTH",
		},
		{
			name: "untrusted certificate",
			opts: smtptest.Options{STARTTLS: true},
			tr:   func(srv *smtptest.Server) *Transport { return &Transport{Addr: srv.Addr} },
			// x509 error, temporary
			wantErr:   errAny,
			wantNoCmd: "MAIL FROM",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tt.opts)
			tr := tt.tr(srv)
			tr.Timeout = 10 * time.Second
			err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, strings.NewReader(testMsg))
			transcript := srv.Transcript()
			if tt.wantNoCmd != "" && strings.Contains(transcript, tt.wantNoCmd) {
				t.Errorf("transcript holds %q:\n%s", tt.wantNoCmd, transcript)
			}
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if IsPermanent(err) {
					t.Errorf("security failure %v is permanent; it should be retried", err)
				}
				if len(srv.Messages()) != 0 {
					t.Error("message accepted")
				}
				return
			}
			if err != nil {
				t.Fatalf("Deliver: %v\n%s", err, transcript)
			}
			if len(srv.Messages()) != 1 {
				t.Fatalf("server accepted %d messages", len(srv.Messages()))
			}
			if got := strings.Contains(transcript, "STARTTLS") || tt.opts.ImplicitTLS; got != tt.wantTLS {
				t.Errorf("TLS used = %v, want %v\n%s", got, tt.wantTLS, transcript)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestDeliverAuthFailureIsPermanent(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{STARTTLS: true, Users: map[string]string{"svc": "right"}})
	tr := &Transport{Addr: srv.Addr, TLSConfig: srv.ClientTLS, Username: "svc", Password: "wrong", Timeout: 10 * time.Second}
	err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, strings.NewReader(testMsg))
	var de *DeliveryError
	if !errors.As(err, &de) || de.Code != 535 || !de.Permanent {
		t.Fatalf("err = %v, want permanent 535", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Error("the password appears in the error")
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		return 0, errors.New("disk gone")
	}
	r.n = copy(p, "From: so@example.test\r\nSubject: half\r\n\r\nfirst half of the body\r\n")
	return r.n, nil
}

// A body that cannot be read completely is never delivered truncated.
func TestDeliverBodyReadError(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := &Transport{Addr: srv.Addr, Timeout: 10 * time.Second}
	err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, &failingReader{})
	if err == nil || IsPermanent(err) || IsUncertain(err) {
		t.Fatalf("err = %v, want a temporary error", err)
	}
	time.Sleep(50 * time.Millisecond) // let the server notice the closed connection
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("server accepted %d truncated messages", n)
	}
}

// A server that has the whole message and then says nothing within the
// timeout leaves the outcome unknown; one that cannot be reached at all
// certainly did not take it.
func TestDeliverTimeoutAndRefused(t *testing.T) {
	for _, mode := range []string{"BDAT", "DATA"} {
		t.Run("no reply to the end of the message/"+mode, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{})
			held := srv.Block()
			tr := &Transport{Addr: srv.Addr, Timeout: 300 * time.Millisecond, noChunking: mode == "DATA"}
			start := time.Now()
			err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, strings.NewReader(testMsg))
			<-held
			if err == nil || IsPermanent(err) || time.Since(start) > 5*time.Second {
				t.Fatalf("err = %v after %v, want a temporary error soon after the timeout", err, time.Since(start))
			}
			if !IsUncertain(err) {
				t.Errorf("err = %v, want an uncertain outcome", err)
			}
		})
	}

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	tr := &Transport{Addr: addr, Timeout: 5 * time.Second}
	err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, strings.NewReader(testMsg))
	if err == nil || IsPermanent(err) || IsUncertain(err) {
		t.Fatalf("connection refused: err = %v, want temporary and certain", err)
	}
}

func TestDeliverRefusesBadAddresses(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := &Transport{Addr: srv.Addr}
	for _, to := range [][]string{nil, {"a@example.net\r\nRCPT TO:<evil@x.test>"}, {"<a@example.net>"}} {
		err := tr.Deliver(context.Background(), "so@example.test", to, strings.NewReader(testMsg))
		if !IsPermanent(err) {
			t.Errorf("to %q: err = %v, want permanent", to, err)
		}
	}
	if srv.Sessions() != 0 {
		t.Errorf("%d sessions opened for invalid envelopes", srv.Sessions())
	}
}

// Check, as check-config -servers uses it: it says how the session was
// secured; a refusal keeps ErrInsecure and is not called a delivery
// failure (no mail was sent); and a server that takes the connection and
// never greets fails within Timeout, even when the caller's context has no
// deadline.
func TestCheck(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{STARTTLS: true})
	how, err := (&Transport{Addr: srv.Addr, TLSConfig: srv.ClientTLS, Timeout: 10 * time.Second}).Check(context.Background())
	if err != nil || how != "TLS" {
		t.Errorf("STARTTLS server: %q, %v", how, err)
	}
	if len(srv.Messages()) != 0 {
		t.Errorf("Check sent mail")
	}

	plain := smtptest.NewServer(t, smtptest.Options{})
	_, err = (&Transport{Addr: plain.Addr, Dial: dialRemote, Timeout: 10 * time.Second}).Check(context.Background())
	if !errors.Is(err, ErrInsecure) || strings.Contains(err.Error(), "delivery") {
		t.Errorf("remote server without STARTTLS: %v, want ErrInsecure, worded without delivery", err)
	}

	_, err = (&Transport{Addr: srv.Addr, Security: "ssl"}).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), `unknown security mode "ssl"`) {
		t.Errorf("unknown security mode: %v", err)
	}

	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never greeting
		}
	}()
	start := time.Now()
	_, err = (&Transport{Addr: mute.Addr().String(), Timeout: 300 * time.Millisecond}).Check(context.Background())
	if err == nil {
		t.Errorf("a server that never greets: no error")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a server that never greets held Check for %v", took)
	}
}
