package mailout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-smtp"

	"secondopinion/internal/mailout/smtptest"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		code     int
		enhanced string
		text     string
		wantErr  bool
	}{
		{name: "one line", in: "250 OK\r\n", code: 250, text: "OK"},
		{name: "code only", in: "250\r\n", code: 250},
		{name: "bare LF", in: "354 go ahead\n", code: 354, text: "go ahead"},
		{name: "enhanced", in: "550 5.1.1 No such user\r\n", code: 550, enhanced: "5.1.1", text: "No such user"},
		{name: "multi-line with enhanced codes", in: "452-4.2.2 Mailbox full,\r\n452-4.2.2 try again\r\n452 4.2.2 later\r\n",
			code: 452, enhanced: "4.2.2", text: "Mailbox full, try again later"},
		{name: "enhanced class must match", in: "250 5.1.1 odd\r\n", code: 250, text: "5.1.1 odd"},
		{name: "not an enhanced code", in: "421 4.3 closing\r\n", code: 421, text: "4.3 closing"},
		{name: "three-digit detail", in: "554 5.7.100 policy\r\n", code: 554, enhanced: "5.7.100", text: "policy"},
		{name: "control characters are blanked", in: "550 no\x1b[31m\r\n", code: 550, text: "no [31m"},
		{name: "mixed codes", in: "250-a\r\n550 b\r\n", wantErr: true},
		{name: "no code", in: "hello\r\n", wantErr: true},
		{name: "1xx", in: "199 x\r\n", wantErr: true},
		{name: "bad separator", in: "250xOK\r\n", wantErr: true},
		{name: "cut short", in: "250-first\r\n", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "too long a line", in: "250 " + strings.Repeat("x", maxReplyLine) + "\r\n", wantErr: true},
		{name: "too many lines", in: strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readReply(bufio.NewReaderSize(strings.NewReader(tt.in), maxReplyLine))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("reply %+v, want an error", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tt.code || r.Enhanced != tt.enhanced || r.Text() != tt.text {
				t.Errorf("got %d %q %q, want %d %q %q", r.Code, r.Enhanced, r.Text(), tt.code, tt.enhanced, tt.text)
			}
		})
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 OK\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 x\r\n", "452-4.2.2 a\n452 b\n", "2", "599-\r\n599\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := readReply(bufio.NewReaderSize(bytes.NewReader(in), maxReplyLine))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 {
			t.Fatalf("accepted %+v", r)
		}
		if r.Enhanced != "" && r.Enhanced[0] != strconv.Itoa(r.Code)[0] {
			t.Fatalf("enhanced code %s with reply %d", r.Enhanced, r.Code)
		}
		if strings.ContainsAny(r.Text(), "\r\n") {
			t.Fatalf("text holds a line break: %q", r.Text())
		}
	})
}

// stuff runs p through a dotWriter in pieces of the given sizes (cycled),
// as reads from the body would hand it over.
func stuff(t testing.TB, p []byte, pieces ...int) []byte {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16)
	d := dotWriter{w: bw, lineStart: true}
	for i := 0; len(p) > 0; i++ {
		n := len(p)
		if len(pieces) > 0 {
			n = min(n, pieces[i%len(pieces)])
		}
		if err := d.write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	d.close()
	bw.Flush()
	return out.Bytes()
}

// unstuff is the server's side: lines up to the lone dot, a leading dot
// removed.
func unstuff(wire []byte) ([]byte, bool) {
	var out []byte
	for len(wire) > 0 {
		i := bytes.Index(wire, []byte("\r\n"))
		if i < 0 {
			return nil, false
		}
		line := wire[:i]
		wire = wire[i+2:]
		if string(line) == "." {
			return out, len(wire) == 0
		}
		line = bytes.TrimPrefix(line, []byte("."))
		out = append(append(out, line...), '\r', '\n')
	}
	return nil, false
}

// crlf is what DATA must carry for p: bare LF made CRLF and the last line
// ended.
func crlf(p []byte) []byte {
	var out []byte
	for i, c := range p {
		if c == '\n' && (i == 0 || p[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	switch {
	case len(out) == 0 || bytes.HasSuffix(out, []byte("\r\n")):
	case out[len(out)-1] == '\r':
		out = append(out, '\n')
	default:
		out = append(out, '\r', '\n')
	}
	return out
}

func TestDotWriter(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty", in: "", want: ".\r\n"},
		{name: "plain lines", in: "a\r\nb\r\n", want: "a\r\nb\r\n.\r\n"},
		{name: "leading dot", in: ".a\r\n", want: "..a\r\n.\r\n"},
		{name: "dots inside", in: "a\r\n.\r\n..b\r\nc.d\r\n", want: "a\r\n..\r\n...b\r\nc.d\r\n.\r\n"},
		{name: "bare LF", in: "a\nb\n", want: "a\r\nb\r\n.\r\n"},
		{name: "bare LF then dot", in: "a\n.b\n", want: "a\r\n..b\r\n.\r\n"},
		{name: "bare CR stays", in: "a\rb\r\n", want: "a\rb\r\n.\r\n"},
		{name: "no final line end", in: "a\r\nb", want: "a\r\nb\r\n.\r\n"},
		{name: "ends in CR", in: "a\r", want: "a\r\n.\r\n"},
		{name: "empty lines", in: "\n\n\r\n", want: "\r\n\r\n\r\n.\r\n"},
		{name: "lone dot without line end", in: ".", want: "..\r\n.\r\n"},
	}
	for _, tt := range tests {
		for _, pieces := range [][]int{nil, {1}, {2, 3}} {
			t.Run(fmt.Sprintf("%s/pieces%v", tt.name, pieces), func(t *testing.T) {
				if got := stuff(t, []byte(tt.in), pieces...); string(got) != tt.want {
					t.Errorf("got %q, want %q", got, tt.want)
				}
			})
		}
	}
}

func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("a\r\n.\r\n..b\nc"), uint8(1))
	f.Add([]byte("\r\n.\r\n"), uint8(3))
	f.Add([]byte(".\n.\r.\r\n\r"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, piece uint8) {
		wire := stuff(t, in, int(piece%9)+1)
		got, ok := unstuff(wire)
		if !ok {
			t.Fatalf("wire %q does not end in one lone dot", wire)
		}
		if want := crlf(in); !bytes.Equal(got, want) {
			t.Fatalf("round trip of %q: %q, want %q", in, got, want)
		}
		if bytes.Contains(bytes.ReplaceAll(wire, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("bare LF on the wire: %q", wire)
		}
	})
}

// bigMessage is a message with lines that start with a dot (one a lone
// dot, which would end DATA if not stuffed) and a 2 MB base64 body.
func bigMessage(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("From: so@example.test\r\nTo: a@example.net\r\nSubject: groot\r\nMessage-ID: <big@example.test>\r\n" +
		"Date: Sun, 22 Nov 2026 08:00:00 +0100\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n" +
		".eerste regel met een punt\r\n.\r\n..twee punten\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	bin := make([]byte, 3<<19)
	rand.NewChaCha8([32]byte{1}).Read(bin)
	enc := base64.StdEncoding.EncodeToString(bin)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b--\r\n")
	return b.Bytes()
}

// The bytes the server gets are exactly the bytes sent, over BDAT and over
// DATA, from memory and from a file (which also declares its SIZE).
func TestDeliverExactBytes(t *testing.T) {
	msg := bigMessage(t)
	path := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"BDAT", "DATA"} {
		for _, src := range []string{"memory", "file"} {
			t.Run(mode+"/"+src, func(t *testing.T) {
				srv := smtptest.NewServer(t, smtptest.Options{})
				tr := &Transport{Addr: srv.Addr, Timeout: 20 * time.Second, noChunking: mode == "DATA"}
				var body io.Reader = bytes.NewReader(msg)
				if src == "file" {
					f, err := os.Open(path)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					body = f
				}
				if err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, body); err != nil {
					t.Fatal(err)
				}
				msgs := srv.Messages()
				if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, msg) {
					t.Fatalf("server got %d messages, first differs from the %d bytes sent", len(msgs), len(msg))
				}
				tx := srv.Transcript()
				if want := fmt.Sprintf(" SIZE=%d", len(msg)); !strings.Contains(tx, want) {
					t.Errorf("MAIL FROM lacks %s", want)
				}
				if got := strings.Contains(tx, "BDAT "); got != (mode == "BDAT") {
					t.Errorf("BDAT used = %v in mode %s", got, mode)
				}
			})
		}
	}
}

// scriptConn is the server end of one connection in a scripted session,
// for what a real server will not do on cue: drop the line at a chosen
// moment, or answer in an unusual but valid way.
type scriptConn struct {
	conn net.Conn
	r    *bufio.Reader
	err  error // first failure; the script stops
}

func (s *scriptConn) say(lines ...string) {
	if s.err != nil {
		return
	}
	_, s.err = io.WriteString(s.conn, strings.Join(lines, "\r\n")+"\r\n")
}

// line reads one command line, without its CRLF.
func (s *scriptConn) line() string {
	if s.err != nil {
		return ""
	}
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.err = err
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads one command line and fails the script unless it starts
// with prefix.
func (s *scriptConn) expect(prefix string) string {
	l := s.line()
	if s.err == nil && !strings.HasPrefix(l, prefix) {
		s.err = fmt.Errorf("%w: got %q, want %s", errScript, l, prefix)
	}
	return l
}

// dataWire reads DATA's text as it is on the wire, through the final dot.
func (s *scriptConn) dataWire() []byte {
	var b []byte
	for s.err == nil {
		l, err := s.r.ReadBytes('\n')
		b = append(b, l...)
		if err != nil {
			s.err = err
		}
		if string(l) == ".\r\n" && (len(b) == 3 || bytes.HasSuffix(b[:len(b)-3], []byte("\r\n"))) {
			break
		}
	}
	return b
}

// chunk reads the BDAT command (already read as cmd) and its bytes.
func (s *scriptConn) chunk(cmd string) (data []byte, last bool) {
	f := strings.Fields(cmd)
	if s.err != nil || len(f) < 2 || f[0] != "BDAT" {
		if s.err == nil {
			s.err = fmt.Errorf("%w: not a BDAT command: %q", errScript, cmd)
		}
		return nil, false
	}
	n, _ := strconv.Atoi(f[1])
	data = make([]byte, n)
	if _, err := io.ReadFull(s.r, data); err != nil {
		s.err = err
	}
	return data, len(f) == 3 && f[2] == "LAST"
}

// envelope plays greeting, EHLO with the given extensions, MAIL and RCPT,
// and returns the MAIL command.
func (s *scriptConn) envelope(ext ...string) string {
	s.say("220 script.example ESMTP")
	s.expect("EHLO ")
	lines := []string{"250-script.example"}
	for _, e := range ext {
		lines = append(lines, "250-"+e)
	}
	lines[len(lines)-1] = "250 " + lines[len(lines)-1][4:]
	s.say(lines...)
	mail := s.expect("MAIL FROM:")
	s.say("250 2.1.0 OK")
	s.expect("RCPT TO:")
	s.say("250 2.1.5 OK")
	return mail
}

// errScript marks a script step that did not get what it expected.
var errScript = errors.New("script")

// scripted runs script against one connection on a fresh listener. It
// returns the address and a channel closed when the script has ended; the
// test fails if the client did not say what the script expected.
func scripted(t *testing.T, script func(s *scriptConn)) (string, <-chan struct{}) {
	t.Helper()
	return scriptedConns(t, script)
}

func addr(l net.Listener) string { return l.Addr().String() }

// scriptedConns is scripted for several connections, accepted one after
// the other, each played by its own script; the channel is closed when the
// last has ended.
func scriptedConns(t *testing.T, scripts ...func(s *scriptConn)) (string, <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errs := make([]error, len(scripts))
	go func() {
		defer close(done)
		for i, script := range scripts {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			s := &scriptConn{conn: conn, r: bufio.NewReader(conn)}
			script(s)
			conn.Close()
			errs[i] = s.err
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for i, err := range errs {
			if errors.Is(err, errScript) {
				t.Errorf("connection %d: %v", i+1, err)
			}
		}
	})
	return addr(l), done
}

// deliverMail plays one accepted mail transaction on a session that has
// said EHLO.
func deliverMail(s *scriptConn) {
	s.expect("MAIL FROM:")
	s.say("250 2.1.0 OK")
	s.expect("RCPT TO:")
	s.say("250 2.1.5 OK")
	s.expect("DATA")
	s.say("354 go ahead")
	s.dataWire()
	s.say("250 2.0.0 queued")
}

func greet(s *scriptConn) {
	s.say("220 script.example ESMTP")
	s.expect("EHLO ")
	s.say("250 script.example")
}

// The connection is kept for the next mail: three mails, one connection,
// one greeting and EHLO; QUIT when the transport is closed. The script
// accepts one connection only: a second would leave a mail hanging.
func TestDeliverKeepsTheConnection(t *testing.T) {
	a, _ := scriptedConns(t, func(s *scriptConn) {
		greet(s)
		for range 3 {
			deliverMail(s)
		}
		s.expect("QUIT")
		s.say("221 bye")
	})
	tr := &Transport{Addr: a, Timeout: 10 * time.Second}
	for i := range 3 {
		if err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, strings.NewReader(testMsg)); err != nil {
			t.Fatalf("mail %d: %v", i+1, err)
		}
	}
	tr.Close()
}

// A kept connection the server has ended is not used: closed while idle,
// ended with a 421 while idle, or answering the next MAIL with 421. Each
// time the mail goes over a new connection, once.
func TestDeliverAfterTheServerEndedTheConnection(t *testing.T) {
	tests := []struct {
		name string
		end  func(s *scriptConn) // after the first mail
	}{
		{"closed", func(s *scriptConn) {}},
		{"421 while idle", func(s *scriptConn) { s.say("421 4.4.2 idle too long, closing") }},
		{"421 to MAIL", func(s *scriptConn) {
			s.expect("MAIL FROM:")
			s.say("421 4.3.2 shutting down")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ended := make(chan struct{})
			a, _ := scriptedConns(t,
				func(s *scriptConn) {
					greet(s)
					deliverMail(s)
					tt.end(s)
					close(ended)
				},
				func(s *scriptConn) {
					greet(s)
					deliverMail(s)
					s.expect("QUIT")
					s.say("221 bye")
				})
			tr := &Transport{Addr: a, Timeout: 10 * time.Second}
			if err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, strings.NewReader(testMsg)); err != nil {
				t.Fatalf("first mail: %v", err)
			}
			if tt.name != "421 to MAIL" {
				<-ended
				time.Sleep(20 * time.Millisecond) // the close or the 421 reaches the client's socket
			}
			if err := tr.Deliver(context.Background(), "so@example.test", []string{"b@example.net"}, strings.NewReader(testMsg)); err != nil {
				t.Fatalf("second mail: %v", err)
			}
			tr.Close()
		})
	}
}

// Over DATA (no CHUNKING offered) the wire carries the message stuffed
// and with CRLF line ends; SIZE is declared when the server takes it.
func TestDeliverDataWire(t *testing.T) {
	body := "From: so@example.test\r\n\r\n.punt\r\nkale LF\n.\r\n..twee\nslot zonder regeleinde"
	want := "From: so@example.test\r\n\r\n..punt\r\nkale LF\r\n..\r\n...twee\r\nslot zonder regeleinde\r\n.\r\n"
	var gotMail string
	var gotWire []byte
	a, done := scripted(t, func(s *scriptConn) {
		gotMail = s.envelope("8BITMIME", "SIZE 10000000", "PIPELINING")
		s.expect("DATA")
		s.say("354 go ahead")
		gotWire = s.dataWire()
		s.say("250-2.0.0 queued as 1", "250 2.0.0 really")
		s.expect("QUIT")
		s.say("221 bye")
	})
	tr := &Transport{Addr: a, Timeout: 10 * time.Second}
	if err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, iotest.HalfReader(strings.NewReader(body))); err != nil {
		t.Fatal(err)
	}
	tr.Close() // the kept connection ends with QUIT
	<-done
	if string(gotWire) != want {
		t.Errorf("wire %q\nwant %q", gotWire, want)
	}
	// HalfReader hides the length: no SIZE then.
	if gotMail != "MAIL FROM:<so@example.test> BODY=8BITMIME" {
		t.Errorf("MAIL command %q", gotMail)
	}
}

// Over a server that offers PIPELINING the envelope goes out in one
// write and its replies are read in order; the data waits for them, so a
// refused recipient stops the mail for all (RSET, no BDAT), and the
// connection stays in step for the next mail.
func TestDeliverPipelinesTheEnvelope(t *testing.T) {
	var body []byte
	a, done := scripted(t, func(s *scriptConn) {
		s.say("220 script.example ESMTP")
		s.expect("EHLO ")
		s.say("250-script.example", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250 CHUNKING")
		// Every command of the envelope comes before any reply: a client
		// that waits for the reply to MAIL sends nothing more.
		s.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for _, want := range []string{"MAIL FROM:<so@example.test>", "RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>"} {
			if l := s.line(); s.err == nil && l != want {
				s.err = fmt.Errorf("%w: got %q, want %q", errScript, l, want)
			} else if s.err != nil && !errors.Is(s.err, errScript) {
				s.err = fmt.Errorf("%w: %q did not come before the replies: %v", errScript, want, s.err)
			}
		}
		s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		s.say("250 2.1.0 OK", "550 5.1.1 <a@example.net>: no such user", "250 2.1.5 OK")
		s.expect("RSET")
		s.say("250 2.0.0 OK")
		s.expect("MAIL FROM:<so@example.test>")
		s.expect("RCPT TO:<b@example.net>")
		s.say("250 2.1.0 OK", "250 2.1.5 OK")
		var last bool
		for !last && s.err == nil {
			var data []byte
			data, last = s.chunk(s.expect("BDAT "))
			body = append(body, data...)
		}
		s.say("250 2.0.0 queued")
		s.expect("QUIT")
		s.say("221 bye")
	})
	tr := &Transport{Addr: a, Timeout: 10 * time.Second}
	err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net", "b@example.net"}, strings.NewReader(testMsg))
	var de *DeliveryError
	if !errors.As(err, &de) || !de.Permanent || de.Recipient != "a@example.net" || de.Code != 550 {
		t.Fatalf("first mail: err = %v, want a@example.net refused for good", err)
	}
	if err := tr.Deliver(context.Background(), "so@example.test", []string{"b@example.net"}, strings.NewReader(testMsg)); err != nil {
		t.Fatalf("second mail, on the same connection: %v", err)
	}
	tr.Close()
	<-done
	if string(body) != testMsg {
		t.Errorf("the second mail arrived as %q", body)
	}
}

// A server that refuses EHLO gets HELO, and no extensions are used.
func TestDeliverHeloFallback(t *testing.T) {
	got := make(chan string, 1)
	a, _ := scripted(t, func(s *scriptConn) {
		s.say("220 old.example")
		s.expect("EHLO ")
		s.say("502 5.5.2 what?")
		s.expect("HELO so.example.test")
		s.say("250 old.example")
		mail := s.expect("MAIL FROM:")
		s.say("250 ok")
		s.expect("RCPT TO:")
		s.say("250 ok")
		s.expect("DATA")
		s.say("354 go")
		s.dataWire()
		s.say("250 ok")
		got <- mail
	})
	tr := &Transport{Addr: a, HelloName: "so.example.test", Timeout: 10 * time.Second}
	if err := tr.Deliver(context.Background(), "", []string{"a@example.net"}, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "MAIL FROM:<>" {
		t.Errorf("MAIL command %q, want the null reverse-path and no parameters", m)
	}
}

// Multi-line refusals keep their enhanced code and all their text.
func TestDeliverMultiLineRefusal(t *testing.T) {
	a, _ := scripted(t, func(s *scriptConn) {
		s.say("220 script.example")
		s.expect("EHLO ")
		s.say("250-script.example", "250 ENHANCEDSTATUSCODES")
		s.expect("MAIL FROM:")
		s.say("250 ok")
		s.expect("RCPT TO:")
		s.say("550-5.7.1 Recipient refused:", "550-5.7.1 see https://example.net/why", "550 5.7.1 for details")
		s.expect("RSET")
		s.say("250 ok")
		s.expect("QUIT")
		s.say("221 bye")
	})
	tr := &Transport{Addr: a, Timeout: 10 * time.Second}
	err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, strings.NewReader(testMsg))
	tr.Close() // reset, the connection was kept; it ends with QUIT
	var de *DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v", err)
	}
	want := DeliveryError{Permanent: true, Code: 550, Enhanced: "5.7.1", Recipient: "a@example.net", Msg: "Recipient refused: see https://example.net/why for details"}
	if *de != want {
		t.Errorf("got %+v\nwant %+v", *de, want)
	}
}

// blockingBody hands out data, then blocks on the next read until
// release is closed, then reports EOF.
type blockingBody struct {
	data    []byte
	release chan struct{}
}

func (b *blockingBody) Read(p []byte) (int, error) {
	if len(b.data) > 0 {
		n := copy(p, b.data)
		b.data = b.data[n:]
		return n, nil
	}
	<-b.release
	return 0, io.EOF
}

// Whether the server may have the message decides between an uncertain
// and a certain failure: only when the last chunk or the final dot went
// out and no reply came is the outcome unknown.
func TestDeliverUncertainOutcome(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef\r\n"), (chunkSize*3/2)/18) // one and a half chunks
	tests := []struct {
		name      string
		body      func(serverGone chan struct{}) io.Reader
		script    func(s *scriptConn, serverGone chan struct{})
		cancel    bool // cancel the context once the server has the message
		uncertain bool
		code      int
	}{
		{
			name: "BDAT LAST read, then the connection drops",
			script: func(s *scriptConn, _ chan struct{}) {
				s.envelope("CHUNKING")
				s.chunk(s.line())
			},
			uncertain: true,
		},
		{
			name: "final dot read, then the connection drops",
			script: func(s *scriptConn, _ chan struct{}) {
				s.envelope()
				s.expect("DATA")
				s.say("354 go")
				s.dataWire()
			},
			uncertain: true,
		},
		{
			name: "BDAT LAST read, then shutdown while waiting for the reply",
			script: func(s *scriptConn, gone chan struct{}) {
				s.envelope("CHUNKING")
				s.chunk(s.line())
				close(gone)
				s.line() // until the client hangs up
			},
			cancel:    true,
			uncertain: true,
		},
		{
			name: "garbage instead of the final reply",
			script: func(s *scriptConn, _ chan struct{}) {
				s.envelope("CHUNKING")
				s.chunk(s.line())
				s.say("hello?")
			},
			uncertain: true,
		},
		{
			name: "first chunk read, then the connection drops",
			body: func(chan struct{}) io.Reader { return bytes.NewReader(big) },
			script: func(s *scriptConn, _ chan struct{}) {
				s.envelope("CHUNKING")
				if _, last := s.chunk(s.line()); last {
					s.err = fmt.Errorf("%w: first chunk marked LAST", errScript)
				}
			},
		},
		{
			name: "server hangs up before the end of the data",
			body: func(gone chan struct{}) io.Reader {
				return &blockingBody{data: []byte("Subject: x\r\n\r\nhalf"), release: gone}
			},
			script: func(s *scriptConn, gone chan struct{}) {
				s.envelope()
				s.expect("DATA")
				s.say("354 go")
				s.conn.Close()
				time.Sleep(20 * time.Millisecond) // let the FIN arrive
				close(gone)
			},
		},
		{
			name: "server hangs up before the last chunk",
			body: func(gone chan struct{}) io.Reader {
				return &blockingBody{data: []byte("Subject: x\r\n\r\nhalf"), release: gone}
			},
			script: func(s *scriptConn, gone chan struct{}) {
				s.envelope("CHUNKING")
				s.conn.Close()
				time.Sleep(20 * time.Millisecond)
				close(gone)
			},
		},
		{
			name: "no reply to RCPT",
			script: func(s *scriptConn, _ chan struct{}) {
				s.say("220 script.example")
				s.expect("EHLO")
				s.say("250 script.example")
				s.expect("MAIL")
				s.say("250 ok")
				s.expect("RCPT")
			},
		},
		{
			name: "final reply 451",
			script: func(s *scriptConn, _ chan struct{}) {
				s.envelope("CHUNKING")
				s.chunk(s.line())
				s.say("451 4.3.0 try later")
			},
			code: 451,
		},
		{
			name: "refusal of a middle chunk",
			body: func(chan struct{}) io.Reader { return bytes.NewReader(big) },
			script: func(s *scriptConn, _ chan struct{}) {
				s.envelope("CHUNKING")
				s.chunk(s.line())
				s.say("552 5.3.4 too big")
			},
			code: 552,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gone := make(chan struct{})
			a, _ := scripted(t, func(s *scriptConn) { tt.script(s, gone) })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				go func() {
					<-gone
					cancel()
				}()
			}
			var body io.Reader = strings.NewReader(testMsg)
			if tt.body != nil {
				body = tt.body(gone)
			}
			tr := &Transport{Addr: a, Timeout: 10 * time.Second}
			err := tr.Deliver(ctx, "so@example.test", []string{"a@example.net"}, body)
			if err == nil {
				t.Fatal("delivered")
			}
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v", err)
			}
			if de.Uncertain != tt.uncertain || de.Permanent != (tt.code >= 500) || de.Code != tt.code {
				t.Errorf("err = %v (%+v), want uncertain=%v code=%d", err, de, tt.uncertain, tt.code)
			}
		})
	}
}

// A body that fails after a full chunk never gets its LAST chunk sent.
func TestDeliverBodyErrorAfterChunk(t *testing.T) {
	var chunks []bool
	a, done := scripted(t, func(s *scriptConn) {
		s.envelope("CHUNKING")
		for s.err == nil {
			_, last := s.chunk(s.line())
			if s.err != nil {
				return
			}
			chunks = append(chunks, last)
			s.say("250 2.0.0 chunk ok")
		}
	})
	body := io.MultiReader(bytes.NewReader(make([]byte, chunkSize+10)), iotest.ErrReader(errors.New("disk gone")))
	tr := &Transport{Addr: a, Timeout: 10 * time.Second}
	err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, body)
	if err == nil || IsUncertain(err) || IsPermanent(err) || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("err = %v, want a certain temporary failure naming the read error", err)
	}
	<-done
	if len(chunks) != 1 || chunks[0] {
		t.Errorf("chunks (LAST?) %v, want one chunk, not the last", chunks)
	}
}

// discardBackend accepts every message and throws it away, for the
// benchmark.
type discardBackend struct{}

func (discardBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }

type discardSession struct{}

func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (discardSession) Reset()        {}
func (discardSession) Logout() error { return nil }

// BenchmarkDeliver2MB: one 2 MB message per operation to an in-process
// go-smtp server, over BDAT and over DATA.
func BenchmarkDeliver2MB(b *testing.B) {
	msg := bigMessage(b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := smtp.NewServer(discardBackend{})
	srv.Domain = "bench.example"
	srv.MaxMessageBytes = 64 << 20
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	for _, mode := range []string{"BDAT", "DATA"} {
		b.Run(mode, func(b *testing.B) {
			tr := &Transport{Addr: addr(l), Timeout: 20 * time.Second, noChunking: mode == "DATA"}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := tr.Deliver(context.Background(), "so@example.test", []string{"a@example.net"}, bytes.NewReader(msg)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
