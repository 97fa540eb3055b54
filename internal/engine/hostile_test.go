package engine_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"secondopinion/internal/engine"
	"secondopinion/internal/mailout"
	"secondopinion/internal/message"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
	"secondopinion/internal/testenv"
	"secondopinion/internal/workdays"
	"secondopinion/templates"
)

// The hostile-input and fault tests run the engine's whole inbound path —
// store.StoreRaw, then engine.ProcessInbound, as the inbound loop does —
// on a daemon of their own (env), without the mail loops, so that each
// test decides when a message is read and can look at the store in
// between. The participants, the registry and the keys are the rig's.

// authservID is the receiving server whose Authentication-Results the
// strict-mode tests trust.
const authservID = "mx.secondopinion.example"

// envOptions shape a test daemon.
type envOptions struct {
	// Strict turns on StrictAuth with authservID; the env's own mails
	// then carry a trusted dkim=pass block, as the receiving server adds.
	Strict bool
	// DataDir is the data directory (default: a temp dir).
	DataDir string
	// BusyTimeout of the store (default the store's).
	BusyTimeout time.Duration
	// Clock (default a rig.Clock at rig.DefaultStart).
	Clock engine.Clock
	// OnCommit is the engine's hook after each committed decision.
	OnCommit func(c *procedure.Case, effects []procedure.Effect, audit []store.AuditEntry)
}

// env is a daemon without its loops, with the participants' keys.
type env struct {
	t     testing.TB
	ctx   context.Context
	dir   string
	st    *store.Store
	eng   *engine.Engine
	keys  *pgpmime.Keyring
	svc   *pgpmime.ServiceKey
	pkeys map[string]*pgpmime.ServiceKey // physicians' private keys
	clock engine.Clock
	log   *testenv.LogBuffer
	o     envOptions
	info  engine.ServiceInfo
	n     int
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if o.DataDir == "" {
		o.DataDir = filepath.Join(dir, "data")
	}
	if o.Clock == nil {
		o.Clock = rig.NewClock(rig.DefaultStart)
	}
	e := &env{t: t, ctx: ctx, dir: dir, clock: o.Clock, log: &testenv.LogBuffer{}, o: o, pkeys: map[string]*pgpmime.ServiceKey{},
		info: engine.ServiceInfo{LocalPart: "so", Domain: rig.ServiceDomain, DisplayName: "Second opinion bedrijfsarts",
			Provider: "Arbo Noord", Backoffice: rig.AddrBackoffice, Lang: "nl"}}
	if err := os.MkdirAll(filepath.Join(dir, "keyring"), 0o700); err != nil {
		t.Fatal(err)
	}
	keys, err := pgpmime.OpenKeyring(filepath.Join(dir, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	e.keys = keys
	start := o.Clock.Now().Add(-24 * time.Hour)
	armored, err := pgpmime.GenerateServiceKey(e.info.DisplayName, e.info.Address(), start, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.WriteServiceKey(armored); err != nil {
		t.Fatal(err)
	}
	if e.svc, err = pgpmime.ParseServiceKey(armored, nil); err != nil {
		t.Fatal(err)
	}
	reg := rig.DemoRegistry()
	for _, p := range reg.Physicians {
		armored, err := pgpmime.GenerateServiceKey(p.Name, p.Email, start, nil)
		if err != nil {
			t.Fatal(err)
		}
		k, err := pgpmime.ParseServiceKey(armored, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := k.ArmoredPublic()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Import(pub, start); err != nil {
			t.Fatal(err)
		}
		e.pkeys[p.Email] = k
	}
	st, err := store.Open(ctx, o.DataDir, &store.Options{NoSync: true, BusyTimeout: o.BusyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	cal, err := workdays.New(workdays.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{
		Store: st, Registry: reg, Policy: procedure.DefaultPolicy(cal), Calendar: cal,
		Keyring: keys, Service: e.svc, TokenKey: bytes.Repeat([]byte("hostile-token-key-"), 2),
		Info: e.info, Templates: templates.FS, Clock: o.Clock,
		Logger:     slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		StrictAuth: o.Strict, AuthservID: authservID, OnCommit: o.OnCommit,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.eng = eng
	return e
}

// header starts a participant's mail: the fields a mail client writes,
// under the trusted Authentication-Results block in strict mode.
func (e *env) header(fromName, from, to, subject, inReplyTo string) textproto.Header {
	e.n++
	var h mail.Header
	h.SetDate(e.clock.Now())
	h.SetAddressList("From", []*mail.Address{{Name: fromName, Address: from}})
	h.SetAddressList("To", []*mail.Address{{Address: to}})
	h.SetSubject(subject)
	h.SetMessageID(fmt.Sprintf("hostile.%d.%s", e.n, from))
	if inReplyTo != "" {
		h.SetMsgIDList("In-Reply-To", []string{inReplyTo})
		h.SetMsgIDList("References", []string{inReplyTo})
	}
	if e.o.Strict {
		h.Add("Authentication-Results", authservID+"; dkim=pass header.d="+domainOf(from)+"; dmarc=pass header.from="+domainOf(from))
	}
	return h.Header.Header
}

func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// plain composes a participant's unencrypted mail.
func (e *env) plain(fromName, from, to, subject, text, inReplyTo string) []byte {
	e.t.Helper()
	e.n++
	m := mailout.Mail{From: mailout.Address{Name: fromName, Email: from}, To: []mailout.Address{{Email: to}},
		Subject: subject, MessageID: fmt.Sprintf("hostile.%d.%s", e.n, from), Date: e.clock.Now(), Text: text, InReplyTo: inReplyTo}
	if inReplyTo != "" {
		m.References = []string{inReplyTo}
	}
	var buf bytes.Buffer
	if e.o.Strict {
		fmt.Fprintf(&buf, "Authentication-Results: %s; dkim=pass header.d=%s\r\n", authservID, domainOf(from))
	}
	if err := mailout.Compose(&buf, m); err != nil {
		e.t.Fatal(err)
	}
	return buf.Bytes()
}

// signed composes a physician's PGP/MIME mail, encrypted to the service
// and signed with signer's key (the sender's own, unless a test forges).
func (e *env) signed(signer, fromName, from, to, subject, text, inReplyTo string, files ...rig.File) []byte {
	e.t.Helper()
	var pa []pgpmime.Attachment
	for _, f := range files {
		f := f
		pa = append(pa, pgpmime.Attachment{Filename: f.Name, ContentType: "application/pdf",
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.Body)), nil }})
	}
	var buf bytes.Buffer
	if err := pgpmime.WriteEncrypted(&buf, &pgpmime.Message{Header: e.header(fromName, from, to, subject, inReplyTo), Text: text, Attachments: pa},
		[]*pgpmime.PublicKey{e.svc.Public()}, e.pkeys[signer], e.clock.Now()); err != nil {
		e.t.Fatal(err)
	}
	return buf.Bytes()
}

// deliver stores raw as the IMAP ingest does and processes it as the
// inbound loop does; it returns the message's row afterwards.
func (e *env) deliver(raw []byte) store.Inbound {
	e.t.Helper()
	return e.deliverFrom(bytes.NewReader(raw), false)
}

func (e *env) deliverFrom(r io.Reader, oversize bool) store.Inbound {
	e.t.Helper()
	id, _, err := e.st.StoreRaw(e.ctx, store.RawMeta{Mailbox: "INBOX", Oversize: oversize, ReceivedAt: e.clock.Now()}, r)
	if err != nil {
		e.t.Fatalf("store raw: %v", err)
	}
	in, err := e.st.InboundByID(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.eng.ProcessInbound(e.ctx, in); err != nil {
		e.t.Fatalf("process inbound %d: %v", id, err)
	}
	if in, err = e.st.InboundByID(e.ctx, id); err != nil {
		e.t.Fatal(err)
	}
	return in
}

// sent is an outgoing mail as queued in the outbox.
type sent struct {
	ID   int64
	To   []string // envelope
	Raw  []byte
	Msg  *message.Message
	Head textproto.Header
}

// outbox returns every mail the daemon has queued (no worker runs).
func (e *env) outbox() []sent {
	e.t.Helper()
	items, err := e.st.DueOutbox(e.ctx, time.Now().Add(100*365*24*time.Hour), 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []sent
	for _, it := range items {
		rc, err := it.Open()
		if err != nil {
			e.t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		m, err := message.Parse(bytes.NewReader(raw), message.Options{})
		if err != nil {
			e.t.Fatalf("outbox %s does not parse: %v", it.MessageID, err)
		}
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			e.t.Fatalf("outbox %s header: %v", it.MessageID, err)
		}
		out = append(out, sent{ID: it.ID, To: it.To, Raw: raw, Msg: m, Head: h})
	}
	return out
}

// question finds the latest queued mail to addr whose subject holds word.
func (e *env) question(addr, word string) sent {
	e.t.Helper()
	var found *sent
	for _, s := range e.outbox() {
		if len(s.To) == 1 && s.To[0] == addr && strings.Contains(strings.ToLower(s.Msg.Subject), word) {
			s := s
			found = &s
		}
	}
	if found == nil {
		e.t.Fatalf("no mail to %s about %q in the outbox", addr, word)
	}
	return *found
}

// replyTo is the reply address (with its token) of a question mail.
func (s sent) replyTo(t testing.TB) string {
	t.Helper()
	if len(s.Msg.ReplyTo) != 1 {
		t.Fatalf("mail %q has no single Reply-To", s.Msg.Subject)
	}
	return s.Msg.ReplyTo[0].Address
}

const requestText = "Goedemiddag,\n\nIk ben het niet eens met het advies van mijn bedrijfsarts over mijn re-integratie en wil graag een second opinion.\n\n" +
	"Naam: Şahin Yılmaz\nWerkgever: Acme Logistiek BV\nBedrijfsarts: A. de Vries, a.devries@arbo-noord.example\n" +
	"Onderwerp: verzuimbegeleiding\nVraag: Kan ik met mijn rugklachten mijn eigen werk in aangepaste vorm hervatten?\n\nMet vriendelijke groet,\nŞahin"

// openIntake files the employee's request: the case waits for the
// original physician's intake.
func (e *env) openIntake() *procedure.Case {
	e.t.Helper()
	in := e.deliver(e.plain("Şahin Yılmaz", rig.AddrEmployee, e.info.Address(), "Aanvraag second opinion", requestText, ""))
	if in.Status != store.InboundProcessed || in.CaseID == 0 {
		e.t.Fatalf("request not processed: %s %q", in.Status, in.Reason)
	}
	return e.caseOf(in.CaseID, procedure.StateIntake)
}

// openChoosing takes a case through the intake: it waits for the
// employee's choice of physician.
func (e *env) openChoosing() *procedure.Case {
	e.t.Helper()
	c := e.openIntake()
	q := e.question(rig.AddrOriginal, "vraagstelling")
	in := e.deliver(e.signed(rig.AddrOriginal, "A. de Vries", rig.AddrOriginal, q.replyTo(e.t), "Re: "+q.Msg.Subject,
		"Akkoord met de vraagstelling.\n\nBijgevoegd de probleemanalyse.\n\nA. de Vries", q.Msg.MessageID,
		rig.File{Name: "Probleemanalyse.pdf", Body: []byte("%PDF-1.4 probleemanalyse")}))
	if in.Status != store.InboundProcessed {
		e.t.Fatalf("intake answer not processed: %s %q", in.Status, in.Reason)
	}
	return e.caseOf(c.ID, procedure.StateChoosing)
}

func (e *env) caseOf(id int64, want procedure.State) *procedure.Case {
	e.t.Helper()
	c, err := e.st.Case(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if c.State != want {
		e.t.Fatalf("case %s is %s, want %s", c.Ref, c.State, want)
	}
	return c
}

// snapshot is what a hostile message must leave as it was.
type snapshot struct {
	cases  map[int64]string // id -> "state v<version>"
	outbox int
	docs   int // sealed document files
	quar   int
	alerts int
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	s := snapshot{cases: map[int64]string{}}
	list, err := e.st.Cases(e.ctx, store.CaseFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, cs := range list {
		c, err := e.st.Case(e.ctx, cs.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		s.cases[c.ID] = fmt.Sprintf("%s v%d", c.State, c.Version)
	}
	st, err := e.st.OutboxStats(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	s.outbox = st.Queued + st.Sending + st.Sent + st.Failed
	ents, _ := os.ReadDir(filepath.Join(e.st.Dir(), "documents"))
	s.docs = len(ents)
	q, err := e.st.Quarantined(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	s.quar = len(q)
	al, err := e.st.Alerts(e.ctx, true)
	if err != nil {
		e.t.Fatal(err)
	}
	s.alerts = len(al)
	return s
}

// unchanged fails unless no case, outbox mail or document changed.
func (e *env) unchanged(before snapshot) snapshot {
	e.t.Helper()
	after := e.snapshot()
	if fmt.Sprint(after.cases) != fmt.Sprint(before.cases) {
		e.t.Errorf("cases changed: before %v, after %v", before.cases, after.cases)
	}
	if after.outbox != before.outbox {
		e.t.Errorf("outbox went from %d to %d mails", before.outbox, after.outbox)
	}
	if after.docs != before.docs {
		e.t.Errorf("sealed documents went from %d to %d files", before.docs, after.docs)
	}
	return after
}

// quarantinedWith fails unless in is quarantined for the backoffice with
// a reason naming want, with an alert and a log line.
func (e *env) quarantinedWith(before snapshot, in store.Inbound, want ...string) {
	e.t.Helper()
	after := e.unchanged(before)
	if in.Status != store.InboundQuarantined {
		e.t.Fatalf("message %d is %s (%q), want quarantined", in.ID, in.Status, in.Reason)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(in.Reason), strings.ToLower(w)) {
			e.t.Errorf("quarantine reason %q does not say %q", in.Reason, w)
		}
	}
	if after.quar != before.quar+1 {
		e.t.Errorf("quarantine went from %d to %d messages", before.quar, after.quar)
	}
	if after.alerts != before.alerts+1 {
		e.t.Errorf("alerts went from %d to %d", before.alerts, after.alerts)
	}
	if !strings.Contains(e.log.String(), fmt.Sprintf("inbound=%d", in.ID)) {
		e.t.Errorf("no log line names message %d:\n%s", in.ID, e.log.String())
	}
	e.t.Logf("quarantined: %s", in.Reason)
}

// ignoredAutoReply fails unless in was recognised as an automatic reply:
// handled, never taken as an answer and never answered.
func (e *env) ignoredAutoReply(before snapshot, in store.Inbound) {
	e.t.Helper()
	after := e.unchanged(before)
	if in.Status != store.InboundProcessed || !strings.HasPrefix(in.Reason, "auto-reply") {
		e.t.Fatalf("message %d is %s (%q), want processed as an auto-reply", in.ID, in.Status, in.Reason)
	}
	if after.quar != before.quar {
		e.t.Errorf("an auto-reply was quarantined")
	}
	e.t.Logf("ignored: %s", in.Reason)
}

// raw joins header lines and a body with CRLF line ends.
func raw(header []string, body string) []byte {
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	return []byte(strings.Join(header, "\r\n") + "\r\n\r\n" + body)
}

func TestHostileReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// state the case is brought to first
		intake bool
		mail   func(e *env, c *procedure.Case) []byte
		want   []string // in the quarantine reason; nil: an ignored auto-reply
	}{
		{
			name: "spoofed From without token or case reference",
			mail: func(e *env, c *procedure.Case) []byte {
				return e.plain("Şahin Yılmaz", rig.AddrEmployee, e.info.Address(), "Re: machtigingsformulier", "Akkoord\n\nŞahin", "")
			},
			want: []string{"no case reference"},
		},
		{
			// A guessed case reference in the subject and a forged From:
			// without strict authentication the sender is not verified.
			name: "forged From with a guessed subject tag",
			mail: func(e *env, c *procedure.Case) []byte {
				return e.plain("Şahin Yılmaz", rig.AddrEmployee, e.info.Address(), "Re: ["+c.Ref+"] Kies uw bedrijfsarts", "2", "")
			},
			want: []string{"only in its subject", "cannot be verified"},
		},
		{
			name: "valid reply token from another address",
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrEmployee, "kies")
				return e.plain("Şahin Yılmaz", "mallory@evil.example", q.replyTo(e.t), "Re: "+q.Msg.Subject, "2", q.Msg.MessageID)
			},
			want: []string{"used from another address", "mallory@evil.example"},
		},
		{
			name:   "PGP intake answer signed by another physician's key",
			intake: true,
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrOriginal, "vraagstelling")
				return e.signed(rig.AddrBakker, "A. de Vries", rig.AddrOriginal, q.replyTo(e.t), "Re: "+q.Msg.Subject,
					"Akkoord met de vraagstelling.\n\nA. de Vries", q.Msg.MessageID,
					rig.File{Name: "Vervalst dossier.pdf", Body: []byte("%PDF-1.4 forged")})
			},
			want: []string{"must be PGP-signed", "wrong signer"},
		},
		{
			name:   "unsigned intake answer from the physician",
			intake: true,
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrOriginal, "vraagstelling")
				return e.plain("A. de Vries", rig.AddrOriginal, q.replyTo(e.t), "Re: "+q.Msg.Subject,
					"Akkoord met de vraagstelling.\n\nA. de Vries", q.Msg.MessageID)
			},
			want: []string{"must be PGP-signed", "unsigned"},
		},
		{
			name: "10000-part multipart to the reply address",
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrEmployee, "kies")
				var b strings.Builder
				b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\n2\r\n")
				for i := 0; i < 10000; i++ {
					fmt.Fprintf(&b, "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=p%d.bin\r\n\r\nx\r\n", i)
				}
				b.WriteString("--b--\r\n")
				return raw(e.hostileHeader(rig.AddrEmployee, q, "multipart/mixed; boundary=b"), b.String())
			},
			want: []string{"unreadable", "more than 1000 MIME parts"},
		},
		{
			name: "message/rfc822 nested 100 deep",
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrEmployee, "kies")
				inner := "From: a@b.example\r\nSubject: bottom\r\nContent-Type: text/plain\r\n\r\n2\r\n"
				for i := 0; i < 100; i++ {
					inner = fmt.Sprintf("From: a@b.example\r\nSubject: level %d\r\nContent-Type: message/rfc822\r\n\r\n%s", i, inner)
				}
				return append(raw(e.hostileHeader(rig.AddrEmployee, q, "message/rfc822"), ""), inner...)
			},
			want: []string{"unreadable", "nesting deeper"},
		},
		{
			name: "unknown charset",
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrEmployee, "kies")
				return raw(e.hostileHeader(rig.AddrEmployee, q, "text/plain; charset=x-klingon-8"), "2\n")
			},
			want: []string{"text", "x-klingon-8"},
		},
		{
			name: "invalid UTF-8 bytes",
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrEmployee, "kies")
				return raw(e.hostileHeader(rig.AddrEmployee, q, "text/plain; charset=utf-8"), "Ik kies \xff\xfe\xc3 nummer 2\n")
			},
			want: []string{"text", "utf-8"},
		},
		{
			name: "zip bomb to the service address",
			mail: func(e *env, c *procedure.Case) []byte {
				return e.withZipBomb(rig.AddrEmployee, e.info.Address(), "stukken", "Zie bijlage.")
			},
			want: []string{"no case reference"},
		},
		{
			name: "Auto-Submitted: auto-replied to the reply address",
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrEmployee, "kies")
				h := append(e.hostileHeader(rig.AddrEmployee, q, "text/plain; charset=utf-8"), "Auto-Submitted: auto-replied")
				return raw(h, "2\n")
			},
		},
		{
			name: "Dutch out-of-office without Auto-Submitted",
			mail: func(e *env, c *procedure.Case) []byte {
				q := e.question(rig.AddrEmployee, "kies")
				h := []string{
					"From: =?utf-8?q?=C5=9Eahin_Y=C4=B1lmaz?= <" + rig.AddrEmployee + ">",
					"To: " + q.replyTo(e.t),
					"Subject: Automatisch antwoord: " + q.Msg.Subject,
					"Message-ID: <ooo.1@mail.example>",
					"In-Reply-To: <" + q.Msg.MessageID + ">",
					"Date: " + e.clock.Now().Format(time.RFC1123Z),
					"Content-Type: text/plain; charset=utf-8",
				}
				return raw(h, "Ik ben afwezig tot en met 9 maart en lees mijn mail niet. Voor dringende zaken kies 2 in het menu of bel 020-1234567.\n")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			var c *procedure.Case
			if tc.intake {
				c = e.openIntake()
			} else {
				c = e.openChoosing()
			}
			before := e.snapshot()
			in := e.deliver(tc.mail(e, c))
			if tc.want == nil {
				e.ignoredAutoReply(before, in)
				return
			}
			e.quarantinedWith(before, in, tc.want...)
		})
	}
}

// hostileHeader is a reply from addr to question q, with its own
// Content-Type.
func (e *env) hostileHeader(from string, q sent, contentType string) []string {
	e.n++
	h := []string{
		"From: <" + from + ">",
		"To: " + q.replyTo(e.t),
		"Subject: Re: " + q.Msg.Subject,
		fmt.Sprintf("Message-ID: <hostile.%d@%s>", e.n, domainOf(from)),
		"In-Reply-To: <" + q.Msg.MessageID + ">",
		"Date: " + e.clock.Now().Format(time.RFC1123Z),
		"MIME-Version: 1.0",
		"Content-Type: " + contentType,
	}
	if e.o.Strict {
		h = append([]string{"Authentication-Results: " + authservID + "; dkim=pass header.d=" + domainOf(from)}, h...)
	}
	return h
}

// A replayed answer: the employee's choice was taken and the form went
// out; the same reply address answering again changes nothing.
func TestHostileReplayedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.openChoosing()
	q := e.question(rig.AddrEmployee, "kies")
	answer := func() []byte {
		return e.plain("Şahin Yılmaz", rig.AddrEmployee, q.replyTo(t), "Re: "+q.Msg.Subject, "2", q.Msg.MessageID)
	}
	if in := e.deliver(answer()); in.Status != store.InboundProcessed {
		t.Fatalf("the first answer was not taken: %s %q", in.Status, in.Reason)
	}
	c = e.caseOf(c.ID, procedure.StateAuthorising)
	before := e.snapshot()
	e.quarantinedWith(before, e.deliver(answer()), "closed")
}

// Strict mode trusts only the topmost Authentication-Results block of the
// configured server; what the sender wrote below it, or under another
// server's name, is no authentication.
func TestHostileForgedAuthenticationResults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		blocks []string // Authentication-Results values, topmost first
		ok     bool
	}{
		{"trusted block passes", []string{authservID + "; dkim=pass header.d=mail.example"}, true},
		{"forged pass below a trusted fail", []string{
			authservID + "; dkim=fail header.d=mail.example; dmarc=fail header.from=mail.example",
			authservID + "; dkim=pass header.d=mail.example; dmarc=pass header.from=mail.example",
		}, false},
		{"only a forged block from another server", []string{"mx.evil.example; dkim=pass header.d=mail.example; dmarc=pass header.from=mail.example"}, false},
		{"forged block above, trusted block missing", []string{
			"mx.evil.example; dkim=pass header.d=mail.example",
			"  " + strings.ToUpper(authservID) + " ; (comment; dkim=pass) dkim=none",
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{Strict: true})
			c := e.openChoosing()
			q := e.question(rig.AddrEmployee, "kies")
			var h []string
			for _, b := range tc.blocks {
				h = append(h, "Authentication-Results: "+b)
			}
			e.o.Strict = false // the header below carries only tc's blocks
			h = append(h, e.hostileHeader(rig.AddrEmployee, q, "text/plain; charset=utf-8")...)
			before := e.snapshot()
			in := e.deliver(raw(h, "2\n"))
			if tc.ok {
				if in.Status != store.InboundProcessed {
					t.Fatalf("a trusted pass was refused: %s %q", in.Status, in.Reason)
				}
				e.caseOf(c.ID, procedure.StateAuthorising)
				return
			}
			e.quarantinedWith(before, in, "not authenticated")
		})
	}
}

// withZipBomb is a mail with a zip attachment of about 1 MB that expands to
// 1 GiB: the daemon must never expand it.
func (e *env) withZipBomb(from, to, subject, text string) []byte {
	e.t.Helper()
	bomb := zipBomb(e.t, 1<<30)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <bomb.%d@mail.example>\r\nDate: %s\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n"+
		"--zz\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=stukken.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n",
		from, to, subject, e.n, e.clock.Now().Format(time.RFC1123Z), text)
	enc := base64.StdEncoding.EncodeToString(bomb)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--zz--\r\n")
	return b.Bytes()
}

// zipBomb builds a valid zip whose one entry inflates to size zero bytes,
// without compressing size bytes: a flushed deflate stream of 1 MiB of
// zeros ends on a byte boundary, so it can be repeated, then closed.
func zipBomb(t testing.TB, size int64) []byte {
	t.Helper()
	const chunk = 1 << 20
	zeros := make([]byte, chunk)
	var block bytes.Buffer
	fw, _ := flate.NewWriter(&block, flate.BestCompression)
	fw.Write(zeros)
	fw.Flush()
	var stream bytes.Buffer
	crc := uint32(0)
	for n := int64(0); n < size; n += chunk {
		stream.Write(block.Bytes())
		crc = crc32.Update(crc, crc32.IEEETable, zeros)
	}
	stream.Write([]byte{0x03, 0x00}) // a final empty fixed-Huffman block
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "dossier.pdf", Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(stream.Len()), UncompressedSize64: uint64(size)})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(stream.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	// It is a real bomb: the first megabytes inflate to zeros.
	zr, err := zip.NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 3*chunk)
	if _, err := io.ReadFull(rc, head); err != nil || !bytes.Equal(head, make([]byte, len(head))) {
		t.Fatalf("zip bomb does not inflate: %v", err)
	}
	return out.Bytes()
}

// The zip bomb is hashed as it streams, never expanded: the daemon's heap
// grows by a few times the mail's size, not by the gigabyte inside.
func TestHostileZipBombMemory(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.openChoosing()
	mailBytes := e.withZipBomb(rig.AddrEmployee, e.info.Address(), "stukken", "Zie bijlage.")
	before := e.snapshot()
	var in store.Inbound
	p := testenv.HeapRise(func() { in = e.deliver(mailBytes) })
	if p > 64<<20 {
		t.Errorf("heap rose by %d MiB for a %d KiB mail", p>>20, len(mailBytes)>>10)
	}
	t.Logf("heap rose by %.1f MiB for a %d KiB mail that inflates to 1 GiB", float64(p)/(1<<20), len(mailBytes)>>10)
	e.quarantinedWith(before, in, "no case reference")
}

// A request whose display name and fill-in fields try to start header
// lines of their own: the case may be opened, but every mail the daemon
// queues has exactly one To, its envelope names one recipient, and no
// field was injected.
func TestHostileHeaderInjectionThroughNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	mails := [][]byte{
		// The name comes from the From display name (RFC 2047 hides the
		// CR LF from the transport).
		raw([]string{
			"From: =?utf-8?q?Mallory=0D=0ABcc=3A_evil=40x?= <mallory@mail.example>",
			"To: " + e.info.Address(),
			"Subject: =?utf-8?q?Second_opinion=0D=0ABcc=3A_evil=40x?=",
			"Message-ID: <crlf.1@mail.example>",
			"Date: " + e.clock.Now().Format(time.RFC1123Z),
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=utf-8",
		}, "Ik wil een second opinion over mijn verzuimbegeleiding.\n\nWerkgever: Acme Logistiek BV\nBedrijfsarts: a.devries@arbo-noord.example\n"),
		// The name comes from the Naam: field: quoted-printable CR LF,
		// and the Unicode line breaks a template could pass on.
		raw([]string{
			"From: =?utf-8?q?Eve=0D=0ABcc=3A_evil=40x?= <eve@mail.example>",
			"To: " + e.info.Address(),
			"Subject: Aanvraag second opinion",
			"Message-ID: <crlf.2@mail.example>",
			"Date: " + e.clock.Now().Format(time.RFC1123Z),
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: quoted-printable",
		}, "Ik wil een second opinion.\n\nNaam: Eve=0D=0ABcc: evil@x=0D=0A=0D=0Ahallo\n"+
			"Werkgever: Acme Logistiek BV\nBedrijfsarts: a.devries@arbo-noord.example\nOnderwerp: verzuimbegeleiding\n"+
			"Vraag: Mag ik hervatten?=E2=80=A8Bcc: evil@x=C2=85Cc: evil2@x\n"),
	}
	for _, m := range mails {
		if in := e.deliver(m); in.Status == store.InboundNew {
			t.Fatalf("message %d left pending", in.ID)
		}
	}
	out := e.outbox()
	if len(out) == 0 {
		t.Fatal("the daemon queued no mail at all; the test proves nothing")
	}
	for _, s := range out {
		if len(s.To) != 1 || strings.Contains(s.To[0], "evil") {
			t.Errorf("%q: envelope recipients %v", s.Msg.Subject, s.To)
		}
		if n := len(s.Head.Values("To")); n != 1 {
			t.Errorf("%q: %d To fields", s.Msg.Subject, n)
		}
		for f := s.Head.Fields(); f.Next(); {
			switch k := strings.ToLower(f.Key()); k {
			case "bcc", "cc", "resent-to", "resent-bcc", "resent-cc":
				t.Errorf("%q: injected field %s: %s", s.Msg.Subject, f.Key(), f.Value())
			}
			if strings.ContainsAny(f.Value(), "\r\n\u2028\u0085") {
				t.Errorf("%q: field %s holds a line break: %q", s.Msg.Subject, f.Key(), f.Value())
			}
		}
		head, _, _ := bytes.Cut(s.Raw, []byte("\r\n\r\n"))
		for _, l := range strings.Split(string(head), "\r\n") {
			if strings.ContainsAny(l, "\r\n") {
				t.Errorf("%q: bare CR or LF in the header: %q", s.Msg.Subject, l)
			}
		}
		t.Logf("%s -> %v: %q", s.Msg.Subject, s.To, s.Head.Get("To"))
	}
}

// bigMail streams a mail of at least size bytes — a short text and one
// base64 attachment — without holding it.
type bigMail struct {
	buf  []byte // what is ready to be read
	left int64  // attachment bytes still to come
	end  bool
}

const bigMailLine = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"

func newBigMail(from, to string, size int64) *bigMail {
	head := "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: Het dossier\r\nMessage-ID: <big.1@mail.example>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=bb\r\n\r\n--bb\r\nContent-Type: text/plain\r\n\r\nZie bijlage.\r\n" +
		"--bb\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=dossier.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	return &bigMail{buf: []byte(head), left: size - int64(len(head))}
}

func (b *bigMail) Read(p []byte) (int, error) {
	if len(b.buf) == 0 {
		switch {
		case b.left > 0:
			b.buf = bytes.Repeat([]byte(bigMailLine), 512)
			b.left -= int64(len(b.buf))
		case !b.end:
			b.buf, b.end = []byte("--bb--\r\n"), true
		default:
			return 0, io.EOF
		}
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// A 200 MB mail that the ingest flagged as over the size limit is kept
// and quarantined unparsed, streamed from start to end.
func TestHostileOversizeAttachment(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.openChoosing()
	before := e.snapshot()
	var in store.Inbound
	p := testenv.HeapRise(func() { in = e.deliverFrom(newBigMail(rig.AddrEmployee, e.info.Address(), 200<<20), true) })
	if p > 32<<20 {
		t.Errorf("heap rose by %d MiB for a 200 MB mail", p>>20)
	}
	t.Logf("heap rose by %.1f MiB for a %d MiB mail", float64(p)/(1<<20), in.Size>>20)
	if in.Size < 200<<20 {
		t.Errorf("stored %d bytes of 200 MiB", in.Size)
	}
	e.quarantinedWith(before, in, "over the size limit", "unparsed")
}

// A huge mail without the ingest's flag (an ingest configured without a
// limit, or a message stored by an older version): the daemon reads it as
// a stream and quarantines it, never holding it in memory. (48 MiB keeps
// the test quick under -race; holding it whole would show as 48 MiB and
// more.)
func TestHostileUnflaggedHugeMail(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.openChoosing()
	before := e.snapshot()
	var in store.Inbound
	p := testenv.HeapRise(func() { in = e.deliverFrom(newBigMail(rig.AddrEmployee, e.info.Address(), 48<<20), false) })
	if p > 24<<20 {
		t.Errorf("heap rose by %d MiB for a 48 MiB mail", p>>20)
	}
	t.Logf("heap rose by %.1f MiB for a %d MiB mail", float64(p)/(1<<20), in.Size>>20)
	e.quarantinedWith(before, in, "no case reference")
}

// A message the backoffice looked at and released is acted on: here a
// reply that named the case only in its subject.
func TestReleasedMessageIsActedOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.openChoosing()
	raw := e.plain("Şahin Yılmaz", rig.AddrEmployee, e.info.Address(), "Re: ["+c.Ref+"] Kies uw bedrijfsarts", "2", "")
	in := e.deliver(raw)
	if in.Status != store.InboundQuarantined {
		t.Fatalf("subject-only reply: %s %q", in.Status, in.Reason)
	}
	ctx := context.Background()
	if err := e.st.MarkInbound(ctx, in.ID, store.InboundNew, "released by the backoffice: "+in.Reason, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	again, _ := e.st.InboundByID(ctx, in.ID)
	if err := e.eng.ProcessInbound(ctx, again); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.st.InboundByID(ctx, in.ID); got.Status != store.InboundProcessed {
		t.Errorf("released message: %s %q", got.Status, got.Reason)
	}
	e.caseOf(c.ID, procedure.StateAuthorising)
}

// A copy of our own mail that the server filed into the inbox instead of
// the sent-copy folder is set aside: no quarantine, no answer, no change,
// not even when it is a question mail with a reply token in its Reply-To.
// A forged mail with a made-up Message-ID of our form is not ours.
func TestOwnMailInTheInboxIsSetAside(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.openChoosing()
	q := e.question(rig.AddrEmployee, "kies")
	before := e.snapshot()
	in := e.deliver(q.Raw)
	after := e.unchanged(before)
	if in.Status != store.InboundProcessed || !strings.Contains(in.Reason, "own mail") {
		t.Fatalf("own mail is %s (%q), want processed as own mail", in.Status, in.Reason)
	}
	if after.quar != before.quar || after.alerts != before.alerts {
		t.Errorf("own mail raised a quarantine or an alert")
	}

	forged := bytes.Replace(q.Raw, []byte(q.Msg.MessageID), []byte(strings.Replace(q.Msg.MessageID, ".", ".9", 1)), 1)
	if bytes.Equal(forged, q.Raw) {
		t.Fatal("test bug: Message-ID not replaced")
	}
	if in := e.deliver(forged); in.Status == store.InboundProcessed && strings.Contains(in.Reason, "own mail") {
		t.Errorf("a mail with a forged Message-ID was taken for our own: %q", in.Reason)
	}
}
