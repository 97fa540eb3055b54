package mailworld_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"secondopinion/internal/mailworld"
)

// TestDeliverToDetailFolder: mail to local+detail@domain lands in the
// user's folder named detail when it exists (as Dovecot's
// lmtp_save_to_detail_mailbox), else in INBOX; an IMAP client sees it
// there.
func TestDeliverToDetailFolder(t *testing.T) {
	t.Parallel()
	const so, pw = "so@secondopinion.test", "so-pw"
	tests := []struct {
		name      string
		create    string   // folder the user creates over IMAP first ("": none)
		to        []string // envelope recipients
		wantSent  int      // in the "sent" folder
		wantInbox int
	}{
		{"folder exists", "sent", []string{"so+sent@secondopinion.test"}, 1, 0},
		{"no such folder", "", []string{"so+sent@secondopinion.test"}, 0, 1},
		{"folder name is case-sensitive", "sent", []string{"so+Sent@secondopinion.test"}, 0, 1},
		{"detail INBOX in any case", "sent", []string{"so+inbox@secondopinion.test"}, 0, 1},
		{"reply token, no such folder", "sent", []string{"so+K7QX.2.emp.c0ffee@secondopinion.test"}, 0, 1},
		{"folder and INBOX in one transaction", "sent", []string{"so+sent@secondopinion.test", "so@secondopinion.test"}, 1, 1},
		{"two aliases of one folder, stored once", "sent", []string{"so+sent@secondopinion.test", "SO+sent@secondopinion.test"}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, nil)
			if tt.create != "" {
				if err := imapLogin(t, w, so, pw).Create(tt.create, nil).Wait(); err != nil {
					t.Fatalf("create %s: %v", tt.create, err)
				}
			}
			raw := message(tt.name)
			if err := send(t, w, "so@secondopinion.test", tt.to, raw); err != nil {
				t.Fatalf("send: %v", err)
			}
			sent, inbox := w.Folder(so, "sent"), w.Inbox(so)
			if len(sent) != tt.wantSent || len(inbox) != tt.wantInbox {
				t.Fatalf("delivered %d to sent and %d to INBOX, want %d and %d", len(sent), len(inbox), tt.wantSent, tt.wantInbox)
			}
			for _, d := range sent {
				if d.Folder != "sent" || !bytes.HasSuffix(d.Raw, raw) || !bytes.Contains(d.Raw, []byte("Delivered-To: "+d.To+"\r\n")) {
					t.Errorf("record in sent: folder %q, to %q:\n%s", d.Folder, d.To, d.Raw)
				}
			}
			for _, d := range inbox {
				if d.Folder != "INBOX" {
					t.Errorf("INBOX record says folder %q", d.Folder)
				}
			}
			if got := w.Folder(so, "INBOX"); len(got) != len(inbox) {
				t.Errorf("Folder(INBOX) has %d, Inbox %d", len(got), len(inbox))
			}
			if tt.create != "" {
				subjects, raws := imapFolder(t, w, so, pw, "sent")
				if len(subjects) != tt.wantSent || (tt.wantSent > 0 && (subjects[0] != tt.name || !bytes.Equal(raws[0], sent[0].Raw))) {
					t.Errorf("IMAP sent folder = %q, want %d message(s) %q as recorded", subjects, tt.wantSent, tt.name)
				}
			}
			if subjects := imapInbox(t, w, so, pw); len(subjects) != tt.wantInbox {
				t.Errorf("IMAP INBOX = %q, want %d message(s)", subjects, tt.wantInbox)
			}
		})
	}
}

// TestFolderOfUnknownUser: no records, no panic.
func TestFolderOfUnknownUser(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	if got := w.Folder("nobody@secondopinion.test", "sent"); got != nil {
		t.Errorf("Folder of an unknown user = %v", got)
	}
}

// bigMessage is a message with a base64 attachment of about n bytes and
// lines that start with a dot (which DATA must unstuff).
func bigMessage(t testing.TB, n int) []byte {
	t.Helper()
	body := make([]byte, n*3/4)
	if _, err := rand.Read(body); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(message("groot"))
	b.WriteString(".begint met een punt\r\n..en met twee\r\n.\r\n")
	enc := base64.StdEncoding.EncodeToString(body)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// sendBDAT submits raw with CHUNKING (RFC 3030) in chunks of chunk bytes
// over a plain connection: go-smtp's client has no BDAT.
func sendBDAT(t testing.TB, w *mailworld.World, from, to string, size int64, raw []byte, chunk int) error {
	t.Helper()
	conn, err := net.Dial("tcp", w.SMTPAddr())
	if err != nil {
		return err
	}
	defer conn.Close()
	tc := textproto.NewConn(conn)
	bw := bufio.NewWriter(conn)
	expect := func(code int) error {
		_, _, err := tc.ReadResponse(code)
		return err
	}
	cmd := func(code int, format string, args ...any) error {
		if _, err := tc.Cmd(format, args...); err != nil {
			return err
		}
		return expect(code)
	}
	if err := expect(220); err != nil {
		return err
	}
	if err := cmd(250, "EHLO client.test"); err != nil {
		return err
	}
	mail := "MAIL FROM:<%s>"
	if size > 0 {
		mail += fmt.Sprintf(" SIZE=%d", size)
	}
	if err := cmd(250, mail, from); err != nil {
		return err
	}
	if err := cmd(250, "RCPT TO:<%s>", to); err != nil {
		return err
	}
	for len(raw) > 0 {
		n := min(chunk, len(raw))
		last := ""
		if n == len(raw) {
			last = " LAST"
		}
		fmt.Fprintf(bw, "BDAT %d%s\r\n", n, last)
		bw.Write(raw[:n])
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := expect(250); err != nil {
			return err
		}
		raw = raw[n:]
	}
	return cmd(221, "QUIT")
}

// sendSized submits raw with DATA, announcing size with SIZE= (0: none).
func sendSized(t *testing.T, w *mailworld.World, from, to string, size int64, raw []byte) error {
	t.Helper()
	c, err := smtp.Dial(w.SMTPAddr())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(from, &smtp.MailOptions{Size: size}); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write(raw); err != nil {
		return err
	}
	if err := wc.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// TestMessageArrivesIntact: whatever way a message is submitted (DATA
// with or without a right or wrong SIZE, BDAT in chunks), the recipient's
// IMAP client, the delivery record and OnAccept see exactly the bytes sent.
func TestMessageArrivesIntact(t *testing.T) {
	t.Parallel()
	small := message("klein")
	big := bigMessage(t, 3<<20) // several read chunks
	n := func(b []byte) int64 { return int64(len(b)) }
	tests := []struct {
		name string
		raw  []byte
		send func(t *testing.T, w *mailworld.World, raw []byte) error
	}{
		{"DATA, no SIZE", big, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendSized(t, w, "jan@werknemer.test", "so@secondopinion.test", 0, raw)
		}},
		{"DATA, exact SIZE", big, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendSized(t, w, "jan@werknemer.test", "so@secondopinion.test", n(raw), raw)
		}},
		{"DATA, SIZE too small", big, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendSized(t, w, "jan@werknemer.test", "so@secondopinion.test", n(raw)/3, raw)
		}},
		{"DATA, SIZE too large", big, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendSized(t, w, "jan@werknemer.test", "so@secondopinion.test", 2*n(raw), raw)
		}},
		{"DATA, small", small, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendSized(t, w, "jan@werknemer.test", "so@secondopinion.test", 0, raw)
		}},
		{"BDAT, 1 MiB chunks, SIZE", big, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendBDAT(t, w, "jan@werknemer.test", "so@secondopinion.test", n(raw), raw, 1<<20)
		}},
		{"BDAT, odd chunks, no SIZE", big, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendBDAT(t, w, "jan@werknemer.test", "so@secondopinion.test", 0, raw, 100_003)
		}},
		{"BDAT, one small chunk", small, func(t *testing.T, w *mailworld.World, raw []byte) error {
			return sendBDAT(t, w, "jan@werknemer.test", "so@secondopinion.test", 0, raw, 1<<20)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var accepted [][]byte
			w := newWorld(t, &mailworld.Options{OnAccept: func(_ string, _ []string, raw []byte) {
				mu.Lock()
				accepted = append(accepted, raw)
				mu.Unlock()
			}})
			if err := tt.send(t, w, tt.raw); err != nil {
				t.Fatalf("send: %v", err)
			}
			got := w.Inbox("so@secondopinion.test")
			if len(got) != 1 {
				t.Fatalf("%d delivered, want 1", len(got))
			}
			head, ok := bytes.CutSuffix(got[0].Raw, tt.raw)
			if !ok || !bytes.HasPrefix(head, []byte("Return-Path: <jan@werknemer.test>\r\n")) || !bytes.HasSuffix(head, []byte("\r\n")) {
				t.Fatalf("delivered message is not the trace header + the sent bytes (%d bytes, sent %d)", len(got[0].Raw), len(tt.raw))
			}
			mu.Lock()
			if len(accepted) != 1 || !bytes.Equal(accepted[0], tt.raw) {
				t.Errorf("OnAccept saw %d messages, first not the sent bytes", len(accepted))
			}
			mu.Unlock()
			_, raws := imapFolder(t, w, "so@secondopinion.test", "so-pw", "INBOX")
			if len(raws) != 1 || !bytes.Equal(raws[0], got[0].Raw) {
				t.Errorf("IMAP BODY[] differs from the delivery record")
			}
		})
	}
}

// TestMultipleRecipientsGetOwnCopies: each recipient's copy has its own
// trace header; OnAccept's bytes are the client's.
func TestMultipleRecipientsGetOwnCopies(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		accepted []byte
	)
	w := newWorld(t, &mailworld.Options{OnAccept: func(_ string, _ []string, raw []byte) {
		mu.Lock()
		accepted = raw
		mu.Unlock()
	}})
	raw := message("twee ontvangers")
	to := []string{"jan@werknemer.test", "arts+x@bedrijfsarts.test", "so@secondopinion.test"}
	if err := send(t, w, "so@secondopinion.test", to, raw); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range to {
		box := strings.Replace(rcpt, "+x", "", 1)
		got := w.Inbox(box)
		if len(got) != 1 || !bytes.HasSuffix(got[0].Raw, raw) || !bytes.Contains(got[0].Raw, []byte("\tfor <"+rcpt+">;")) ||
			strings.Count(string(got[0].Raw), "Delivered-To:") != 1 {
			t.Errorf("%s: %d delivered, or not its own trace header", rcpt, len(got))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(accepted, raw) {
		t.Errorf("OnAccept bytes differ from the sent ones")
	}
}

// BenchmarkAccept2MB: one 2 MB message in, as the daemon's forwarding is
// submitted (BDAT with SIZE), stored for the recipient and recorded.
func BenchmarkAccept2MB(b *testing.B) {
	raw := bigMessage(b, 2<<20)
	w, err := mailworld.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	for i := range b.N {
		addr := fmt.Sprintf("arts%d@bedrijfsarts.test", i)
		if err := w.AddUser(addr, "pw"); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := sendBDAT(b, w, "so@secondopinion.test", fmt.Sprintf("arts%d@bedrijfsarts.test", i), int64(len(raw)), raw, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// TestExpunge: Expunge removes from the IMAP folder those of the first n
// deliveries that match, as another client's EXPUNGE would: a client in
// IDLE on the folder is told, the rest stays readable, and the removed
// records keep no bytes.
func TestExpunge(t *testing.T) {
	t.Parallel()
	const so, pw = "so@secondopinion.test", "so-pw"
	w := newWorld(t, nil)
	for _, s := range []string{"een", "twee", "drie", "vier"} {
		if err := send(t, w, "jan@werknemer.test", []string{so}, message(s)); err != nil {
			t.Fatal(err)
		}
	}
	expunged := make(chan uint32, 8)
	c, err := imapclient.DialInsecure(w.IMAPAddr(), &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Expunge: func(seq uint32) { expunged <- seq },
		},
	})
	if err != nil {
		t.Fatalf("dial imap: %v", err)
	}
	defer c.Close()
	if err := c.Login(so, pw).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select: %v", err)
	}
	// "een" and "drie" read, as the daemon flags what it has handled.
	seen := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}
	if err := c.Store(imap.SeqSetNum(1, 3), seen, nil).Close(); err != nil {
		t.Fatalf("store: %v", err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatalf("idle: %v", err)
	}

	// Only the first two deliveries are candidates: "drie" stays.
	n, err := w.Expunge(so, "inbox", 2, &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}})
	if err != nil || n != 1 {
		t.Fatalf("Expunge = %d, %v; want 1 (een)", n, err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Errorf("client in IDLE told EXPUNGE %d, want 1", seq)
		}
	case <-time.After(5 * time.Second):
		t.Error("the client in IDLE was not told of the expunge within 5 s")
	}
	if err := idle.Close(); err != nil {
		t.Fatalf("idle done: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("idle: %v", err)
	}
	if got := imapInbox(t, w, so, pw); !slices.Equal(got, []string{"twee", "drie", "vier"}) {
		t.Errorf("IMAP INBOX after expunge = %q, want twee, drie, vier", got)
	}
	records := w.Inbox(so)
	for i, d := range records {
		if gone := i == 0; gone != (d.Raw == nil) {
			t.Errorf("record %d: %d bytes kept", i, len(d.Raw))
		}
	}
	if held, want := w.Held(so), int64(len(records[1].Raw)+len(records[2].Raw)+len(records[3].Raw)); held != want {
		t.Errorf("Held = %d, want %d (three messages)", held, want)
	}

	// Without criteria every one of the first n goes; one removed
	// already is not counted again.
	if n, err := w.Expunge(so, "INBOX", 3, nil); err != nil || n != 2 {
		t.Errorf("second Expunge = %d, %v; want 2 (twee, drie)", n, err)
	}
	if got := imapInbox(t, w, so, pw); !slices.Equal(got, []string{"vier"}) {
		t.Errorf("IMAP INBOX = %q, want vier", got)
	}
	if _, err := w.Expunge("nobody@secondopinion.test", "INBOX", 1, nil); !errors.Is(err, mailworld.ErrUnknownUser) {
		t.Errorf("Expunge for an unknown user: %v, want ErrUnknownUser", err)
	}
}
