package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"secondopinion/internal/engine"
	"secondopinion/internal/message"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
	"secondopinion/internal/testenv"
)

// backend is where a case's mail travels.
type backend string

const (
	inProcess   backend = "mailworld"       // internal/mailworld: in-process IMAP and SMTP
	realServers backend = "dovecot+postfix" // the real servers, shared by the cases of a run
)

// people are one case's participants. Every case has its own addresses
// (tagged), so that cases can share one real Postfix and Dovecot.
type people struct {
	tag        string
	service    string // the service's local part in rig.ServiceDomain
	backoffice string
	employee   string
	employer   string // Acme's notice address
	referEmp   string // notice address of the employer whose contract names another party
	original   string // A. de Vries, arbo-noord
	visser     string // D. Visser, arbo-noord: never proposed (not independent)
	bakker     string // B. Bakker, pool
	jansen     string // C. Jansen, pool
	smit       string // E. Smit, outside the pool
}

func peopleFor(tag string) people {
	return people{
		tag:        tag,
		service:    "so-" + tag,
		backoffice: "backoffice-" + tag + "@" + rig.ServiceDomain,
		employee:   "werknemer-" + tag + "@mail.example",
		employer:   "hr-" + tag + "@acme.example",
		referEmp:   "hr-" + tag + "@verwijs.example",
		original:   "devries-" + tag + "@arbo-noord.example",
		visser:     "visser-" + tag + "@arbo-noord.example",
		bakker:     "bakker-" + tag + "@arbo-zuid.example",
		jansen:     "jansen-" + tag + "@arbo-west.example",
		smit:       "smit-" + tag + "@arbo-oost.example",
	}
}

// addresses lists every mailbox of the case, the service's first.
func (p people) addresses() []string {
	return []string{p.service + "@" + rig.ServiceDomain, p.backoffice, p.employee, p.employer, p.referEmp,
		p.original, p.visser, p.bakker, p.jansen, p.smit}
}

// registryFor is the demo registry with the case's addresses, and a second
// employer whose contract names another second-opinion party.
func registryFor(p people) *registry.Registry {
	reg := rig.DemoRegistry()
	emails := map[string]string{"devries": p.original, "visser": p.visser, "bakker": p.bakker, "jansen": p.jansen, "smit": p.smit}
	for i := range reg.Physicians {
		reg.Physicians[i].Email = emails[reg.Physicians[i].ID]
	}
	reg.Employers[0].NoticeEmail = p.employer
	reg.Employers = append(reg.Employers, registry.Employer{ID: "verwijs", Name: "Verwijs Bouw BV", Contract: registry.ContractOther,
		NoticeEmail: p.referEmp, Domains: []string{"verwijs.example"},
		SecondOpinionParty: &registry.Party{Name: "Tweede Blik Arbo", Email: "info@tweedeblik.example", Website: "https://tweedeblik.example"}})
	return reg
}

// mailboxName is the maildir of an address on the real servers.
func mailboxName(addr string) string {
	local, domain, _ := strings.Cut(addr, "@")
	if domain == rig.ServiceDomain {
		return local
	}
	return strings.ReplaceAll(addr, "@", "=")
}

// servers is one real Postfix and Dovecot shared by several cases: every
// case's service mailbox is a Dovecot user, every participant a maildir.
type servers struct {
	pf   *testenv.Postfix
	dc   *testenv.Dovecot
	mail *Maildirs
}

const imapPassword = "e2e-secret"

func startServers(t *testing.T, tags []string) *servers {
	t.Helper()
	testenv.Require(t, "postfix", "dovecot")
	addrs := map[string]string{}
	users := map[string]string{}
	for _, tag := range tags {
		p := peopleFor(tag)
		for _, a := range p.addresses() {
			addrs[a] = mailboxName(a)
		}
		users[p.service] = imapPassword
	}
	// The service's copies of its own mail go into its Verzonden folder.
	pfAddrs := maps.Clone(addrs)
	for _, tag := range tags {
		svc := peopleFor(tag).service
		pfAddrs[rig.SentCopyAddress(svc)] = svc + "/." + rig.SentCopyMailbox
	}
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Domain: rig.ServiceDomain, Addresses: pfAddrs})
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{MaildirBase: pf.MaildirBase, Users: users})
	md := OpenMaildirs(pf.MaildirBase, addrs, 20*time.Millisecond)
	t.Cleanup(md.Close)
	return &servers{pf: pf, dc: dc, mail: md}
}

// env is one case: a running daemon with its participants.
type env struct {
	t   *testing.T
	ctx context.Context
	r   *rig.Rig
	p   people
	b   backend
	srv *servers
	dir string
	log *testenv.LogBuffer
	// secrets are the medical strings of the case (question, documents,
	// advice, refusal reason): none may ever travel in clear.
	secrets []string
	// employeeOwn are the secrets the employee wrote in their own request,
	// in clear by their own choice.
	employeeOwn []string
	docs        []rig.File
	advice      rig.File
	// qOwn is the marker in the employee's question, qConf the one in
	// the question as the original physician confirmed it.
	qOwn, qConf string
}

// newEnv starts the rig of one case on the given backend.
func newEnv(t *testing.T, b backend, srv *servers, tag string, mod func(*rig.Options)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	p := peopleFor(tag)
	e := &env{t: t, ctx: ctx, p: p, b: b, srv: srv, dir: t.TempDir(), log: &testenv.LogBuffer{}}
	e.secrets = []string{"QMARK-" + tag, "QCONF-" + tag, "DOCMARK-" + tag + "-1", "DOCMARK-" + tag + "-2", "ADVMARK-" + tag, "REFMARK-" + tag}
	e.employeeOwn = []string{"QMARK-" + tag}
	e.qOwn, e.qConf = "QMARK-"+tag, "QCONF-"+tag
	e.docs = []rig.File{
		{Name: "Probleemanalyse 2026-02-10.pdf", Body: fakePDF("Probleemanalyse: lumbale hernia, DOCMARK-" + tag + "-1")},
		{Name: "Brief orthopeed 2026-01-28.pdf", Body: fakePDF("Brief orthopedisch chirurg: DOCMARK-" + tag + "-2")},
	}
	e.advice = rig.File{Name: "Advies second opinion.pdf", Body: fakePDF("Advies: hervatting in aangepaste vorm mogelijk. ADVMARK-" + tag)}
	o := rig.Options{
		Dir: e.dir, NoSync: true, Registry: registryFor(p), ServiceLocalPart: p.service, Backoffice: p.backoffice,
		Participants: []string{p.employee},
		Logger:       slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if b == realServers {
		o.Servers = &rig.Servers{IMAPAddr: srv.dc.Addr, IMAPUser: p.service, IMAPPassword: imapPassword,
			SMTPAddr: srv.pf.Addr, Mailboxes: srv.mail}
	}
	if mod != nil {
		mod(&o)
	}
	r, err := rig.Start(ctx, o)
	if err != nil {
		t.Fatalf("rig: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("rig close: %v", err)
		}
	})
	e.r = r
	r.Person(p.employee).Name = "Şahin Yılmaz"
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fakePDF(text string) []byte {
	return []byte("%PDF-1.4\n% e2e document\n% " + text + "\n%%EOF\n")
}

func (e *env) person(addr string) *rig.Person { return e.r.Person(addr) }

// next waits for the next unread mail to addr whose subject holds one of
// words.
func (e *env) next(addr string, words ...string) *rig.Received {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	got, err := e.r.Next(ctx, e.person(addr), words...)
	if err != nil {
		e.t.Fatalf("%v\nmail so far:\n%s\nquarantine: %s\ndaemon log (last lines):\n%s", err, e.summary(), e.quarantine(), tail(e.log.String(), 12))
	}
	return got
}

func (e *env) reply(addr string, to *rig.Received, text string, encrypt bool, files ...rig.File) {
	e.t.Helper()
	if err := e.r.Reply(e.ctx, e.person(addr), to, text, encrypt, files...); err != nil {
		e.t.Fatalf("%s replies: %v", addr, err)
	}
}

func (e *env) send(addr, subject, text string) {
	e.t.Helper()
	if err := e.r.Send(e.ctx, e.person(addr), e.r.Info.Address(), subject, text, "", false); err != nil {
		e.t.Fatalf("%s sends: %v", addr, err)
	}
}

// ---- the procedure's steps, as the participants take them ----

func (e *env) requestText(employer, subject string) string {
	return "Goedemiddag,\n\nIk ben het niet eens met het advies van mijn bedrijfsarts en wil graag een second opinion.\n\n" +
		"Naam: Şahin Yılmaz\nWerkgever: " + employer + "\nBedrijfsarts: A. de Vries, " + e.p.original + "\n" +
		"Onderwerp: " + subject + "\nVraag: Kan ik met mijn rugklachten mijn eigen werk hervatten? " + e.qOwn + "\n\n" +
		"Met vriendelijke groet,\nŞahin\n\nVerstuurd vanaf mijn iPhone"
}

// request: the employee asks and gets the acknowledgement; the original
// physician gets the intake. It returns the intake mail.
func (e *env) request() *rig.Received {
	e.t.Helper()
	e.send(e.p.employee, "Aanvraag second opinion", e.requestText("Acme Logistiek BV", "verzuimbegeleiding"))
	e.next(e.p.employee, "ontvangen")
	in := e.next(e.p.original, "vraagstelling en stukken")
	if in.Inner == nil {
		e.t.Fatalf("the intake reached the original physician unencrypted")
	}
	if !strings.Contains(in.Text(), e.qOwn) {
		e.t.Errorf("the decrypted intake does not show the employee's question:\n%s", in.Text())
	}
	return in
}

func (e *env) confirmText() string {
	return "BEVESTIGD\nVraagstelling: Kan werknemer met de huidige rugklachten het eigen werk in aangepaste vorm hervatten? " + e.qConf +
		"\n\nBijgevoegd de probleemanalyse en de brief van de orthopeed.\n\nMet collegiale groet,\nA. de Vries"
}

// choosing runs the request and the intake, and returns the proposal.
func (e *env) choosing() *rig.Received {
	e.t.Helper()
	in := e.request()
	e.r.Clock.Advance(time.Hour)
	e.reply(e.p.original, in, e.confirmText(), true, e.docs...)
	return e.next(e.p.employee, "kies uw")
}

// sign: the employee consents to the form and the original physician
// co-signs it, PGP-signed.
func (e *env) sign() {
	e.t.Helper()
	f := e.next(e.p.employee, "machtigingsformulier")
	e.reply(e.p.employee, f, "Akkoord", false)
	fp := e.next(e.p.original, "medeondertekening")
	if fp.Inner == nil {
		e.t.Fatalf("the physician's form arrived unencrypted")
	}
	e.reply(e.p.original, fp, "AKKOORD\n\nA. de Vries", true)
}

// accepting runs up to the request to the chosen physician, who is asked.
func (e *env) accepting(choice string) {
	e.t.Helper()
	prop := e.choosing()
	e.reply(e.p.employee, prop, choice, false)
	e.sign()
}

const acceptText = "Ja, ik neem de second opinion aan. Consult op dinsdag 10 maart om 14:30.\n\nB. Bakker"

// accept: so takes the case with a consult date; the forwarded documents
// arrive encrypted and match the originals. It returns the forward.
func (e *env) accept(so string) *rig.Received {
	e.t.Helper()
	req := e.next(so, "second opinion doen")
	e.reply(so, req, acceptText, false)
	fw := e.next(so, "medische stukken")
	e.checkForward(fw)
	e.next(e.p.employee, "gepland")
	return fw
}

// checkForward: the forward decrypts to the confirmed question and exactly
// the authorised documents.
func (e *env) checkForward(fw *rig.Received) {
	e.t.Helper()
	if fw.Inner == nil {
		e.t.Fatalf("the forward arrived unencrypted")
	}
	if !strings.Contains(fw.Inner.Text, e.qConf) {
		e.t.Errorf("the forward does not hold the confirmed question:\n%s", fw.Inner.Text)
	}
	want := map[string]string{}
	for _, d := range e.docs {
		want[d.Name] = string(d.Body)
	}
	got := map[string]string{}
	for _, f := range fw.Files {
		got[f.Name] = string(f.Body)
	}
	for name, body := range want {
		if got[name] != body {
			e.t.Errorf("forwarded document %q: got %d bytes, want the original %d", name, len(got[name]), len(body))
		}
	}
	if len(got) != len(want) {
		e.t.Errorf("forward carries %d attachments, want exactly the %d authorised documents", len(got), len(want))
	}
}

// advising runs the case until the SO physician (bakker) is asked for the
// advice, and returns that question.
func (e *env) advising() *rig.Received {
	e.t.Helper()
	e.accepting("1")
	e.accept(e.p.bakker)
	return e.next(e.p.bakker, "advies na het consult")
}

// advise: bakker sends the advice after the consult; the employee gets the
// content-free notice (no key) and the feedback question, which is
// returned.
func (e *env) advise(q *rig.Received) *rig.Received {
	e.t.Helper()
	e.r.Clock.Set(time.Date(2026, 3, 10, 16, 30, 0, 0, rig.Amsterdam))
	e.reply(e.p.bakker, q, "Hierbij mijn advies na het consult van vandaag.\n\nB. Bakker", true, e.advice)
	e.next(e.p.employee, "beveiligd")
	return e.next(e.p.employee, "gedeeld")
}

// withdrawByBackoffice is `secondopinion case withdraw REF`.
func (e *env) withdrawByBackoffice() {
	e.t.Helper()
	c := e.theCase()
	if _, err := e.r.Engine.Handle(e.ctx, c.ID, procedure.Withdraw{By: procedure.RoleBackoffice, Reason: "the employee phoned to withdraw"},
		engine.Source{Via: "backoffice"}); err != nil {
		e.t.Fatalf("case withdraw %s: %v", c.Ref, err)
	}
}

// theCase returns the rig's only case.
func (e *env) theCase() *procedure.Case {
	e.t.Helper()
	cs, err := e.r.Store.Cases(e.ctx, store.CaseFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(cs) != 1 {
		e.t.Fatalf("%d cases, want 1", len(cs))
	}
	c, err := e.r.Store.Case(e.ctx, cs[0].ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// ---- what the participants received ----

// inbox returns every mail delivered to addr, oldest first.
func (e *env) inbox(addr string) [][]byte {
	if e.b == realServers {
		return e.srv.mail.Messages(addr)
	}
	var out [][]byte
	for _, d := range e.r.World.Inbox(addr) {
		out = append(out, d.Raw)
	}
	return out
}

// settle waits until every composed mail is sent and delivered.
func (e *env) settle() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := e.r.Store.OutboxStats(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		delivered := 0
		for _, a := range e.p.addresses()[1:] {
			delivered += len(e.inbox(a))
		}
		pending, err := e.r.Store.PendingInbound(e.ctx, 1)
		if err != nil {
			e.t.Fatal(err)
		}
		if st.Queued == 0 && st.Sending == 0 && st.Failed == 0 && delivered == st.Sent && len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not settled: outbox %+v, %d delivered, %d inbound pending", st, delivered, len(pending))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mail is a delivered message as the tests judge it.
type mail struct {
	to        string
	template  string
	subject   string
	encrypted bool // multipart/encrypted; protocol="application/pgp-encrypted"
	raw       []byte
}

// received returns what each of the case's participants received, by
// address, with each mail's template recognised by its subject.
func (e *env) received() map[string][]mail {
	out := map[string][]mail{}
	for _, a := range e.p.addresses()[1:] {
		for _, raw := range e.inbox(a) {
			m := mail{to: a, raw: raw}
			pm, err := message.Parse(bytes.NewReader(raw), message.Options{})
			if err != nil {
				e.t.Errorf("mail to %s does not parse: %v", a, err)
				continue
			}
			m.subject = pm.Subject
			m.template = templateOf(pm.Subject, e.roleOf(a))
			m.encrypted = isPGPMIME(raw)
			out[a] = append(out[a], m)
		}
	}
	return out
}

func (e *env) roleOf(addr string) string {
	switch addr {
	case e.p.employer, e.p.referEmp:
		return "employer"
	case e.p.original:
		return "physician"
	}
	return ""
}

// summary lists who received what, for failure messages.
func (e *env) summary() string {
	var b strings.Builder
	rec := e.received()
	for _, a := range e.p.addresses()[1:] {
		if len(rec[a]) == 0 {
			continue
		}
		var ts []string
		for _, m := range rec[a] {
			s := m.template
			if m.encrypted {
				s += "(enc)"
			}
			ts = append(ts, s)
		}
		fmt.Fprintf(&b, "  %s: %s\n", a, strings.Join(ts, ", "))
	}
	return b.String()
}

func (e *env) quarantine() string {
	q, err := e.r.Store.Quarantined(context.Background())
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, m := range q {
		out = append(out, m.Reason)
	}
	return strings.Join(out, "; ")
}

// isPGPMIME reports an RFC 3156 encrypted message.
func isPGPMIME(raw []byte) bool {
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if ent == nil || err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		return false
	}
	mt, params, _ := ent.Header.ContentType()
	return mt == "multipart/encrypted" && params["protocol"] == "application/pgp-encrypted"
}

// plainTexts returns what a reader sees of a mail without a key: the raw
// bytes and every MIME part decoded (base64, quoted-printable, charset).
// The parts of an encrypted mail are its armored ciphertext.
func plainTexts(raw []byte) [][]byte {
	out := [][]byte{raw}
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if ent == nil || err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		return out
	}
	_ = ent.Walk(func(path []int, part *gomessage.Entity, err error) error {
		if err != nil {
			return nil
		}
		if mr := part.MultipartReader(); mr != nil {
			return nil
		}
		b, _ := io.ReadAll(part.Body)
		out = append(out, b)
		// A header value may hold encoded words (a file name, a subject).
		for f := part.Header.Fields(); f.Next(); {
			if v, err := (&mime.WordDecoder{}).DecodeHeader(f.Value()); err == nil {
				out = append(out, []byte(v))
			}
		}
		return nil
	})
	return out
}

// medicalTemplates carry medical content and may travel only encrypted.
var medicalTemplates = map[string]bool{
	"intake": true, "forward": true, "form_physician": true, "advice_employee": true, "refused": true,
	"completion_physician_advice": true, "completion_employer_advice": true,
}

// checkMail asserts the invariants every case shares: medical mail only
// encrypted and only to a physician of the case who may read it; no
// medical string in clear in any mail or log line; nothing quarantined;
// the audit chain verifies.
func (e *env) checkMail(mayRead map[string][]string) {
	e.t.Helper()
	e.settle()
	rec := e.received()
	for addr, ms := range rec {
		for _, m := range ms {
			if medicalTemplates[m.template] {
				if !m.encrypted {
					e.t.Errorf("%s to %s travelled in clear", m.template, addr)
				}
				allowed := false
				for _, a := range mayRead[m.template] {
					allowed = allowed || a == addr
				}
				if !allowed {
					e.t.Errorf("medical mail %s went to %s, who may not read it (allowed: %v)", m.template, addr, mayRead[m.template])
				}
			}
			for _, s := range e.secrets {
				for _, txt := range plainTexts(m.raw) {
					if bytes.Contains(txt, []byte(s)) {
						e.t.Errorf("medical string %s in clear in %s (%q) to %s", s, m.template, m.subject, addr)
						break
					}
				}
			}
		}
	}
	// The service's own mailbox: what the participants sent. Only the
	// employee's own request may hold their question in clear.
	for _, raw := range e.inbox(e.p.service + "@" + rig.ServiceDomain) {
		for _, s := range e.secrets {
			if s == e.employeeOwn[0] {
				continue
			}
			for _, txt := range plainTexts(raw) {
				if bytes.Contains(txt, []byte(s)) {
					e.t.Errorf("medical string %s in clear in a participant's mail to the service", s)
					break
				}
			}
		}
	}
	logs := e.log.String()
	for _, s := range e.secrets {
		if strings.Contains(logs, s) {
			e.t.Errorf("medical string %s in the daemon's log", s)
		}
	}
	if q := e.quarantine(); q != "" {
		e.t.Errorf("quarantined: %s", q)
	}
	if _, err := e.r.Store.VerifyAudit(e.ctx); err != nil {
		e.t.Errorf("audit verify: %v", err)
	}
}

func (e *env) expectState(s procedure.State) {
	e.t.Helper()
	if c := e.theCase(); c.State != s {
		e.t.Errorf("case %s is %s (%s), want %s", c.Ref, c.State, c.Outcome, s)
	}
}

// ---- templates by subject ----

// subjects maps each Dutch subject line to its templates.
var subjects = func() map[string][]string {
	m := map[string][]string{}
	for tmpl, s := range map[string]string{
		"acknowledgement": "Uw aanvraag voor een second opinion is ontvangen", "acknowledgement_employer": "Uw aanvraag voor een second opinion is ontvangen",
		"advice_employee": "Het advies van uw second opinion", "advice_request": "Graag uw advies na het consult", "alert": "Aandacht nodig",
		"approval_declined": "Uw werkgever betaalt de second opinion niet", "choice_not_independent": "Kies opnieuw: deze arts is niet onafhankelijk",
		"completion_employee": "Uw second opinion is afgerond", "completion_employer": "Second opinion afgerond",
		"completion_physician": "Second opinion afgerond", "completion_employer_advice": "Second opinion afgerond: het advies",
		"completion_physician_advice": "Second opinion afgerond: het advies", "consult_date_question": "Wanneer is het consult?",
		"consult_planned": "Uw gesprek voor de second opinion is gepland", "employer_approval": "Betaalt u de kosten van de second opinion?",
		"feedback_question": "Mag het advies gedeeld worden?", "form_employee": "Graag uw toestemming: het machtigingsformulier",
		"form_physician": "Graag uw medeondertekening van het machtigingsformulier", "forward": "Second opinion: vraagstelling en medische stukken",
		"intake": "Second opinion aangevraagd: graag vraagstelling en stukken", "intake_documents": "Graag de medische stukken voor de second opinion",
		"key_request": "Wij hebben uw actuele PGP-sleutel nodig", "medical_notice": "Er ligt een beveiligd bericht voor u klaar",
		"out_of_scope_keuring": "Een second opinion over een aanstellingskeuring kan niet", "out_of_scope_uwv": "Voor een deskundigenoordeel kunt u bij UWV terecht",
		"proposal": "Kies uw second-opinion bedrijfsarts", "refused": "Bericht over uw aanvraag voor een second opinion",
		"refused_employer": "De second opinion gaat niet door", "reminder": "Herinnering: wij wachten op uw antwoord",
		"request_missing": "Wij missen nog een paar gegevens", "so_request": "Verzoek: wilt u een second opinion doen?",
		"unclear": "Wij begrepen uw antwoord niet helemaal", "withdrawn": "Uw aanvraag voor een second opinion is gestopt",
	} {
		m[s] = append(m[s], tmpl)
	}
	m["Second opinion gestopt"] = []string{"withdrawn"}
	for _, v := range m {
		sort.Strings(v)
	}
	return m
}()

// templateOf names the template of a subject line; role ("employer",
// "physician" or "") tells apart the notices that share a subject.
func templateOf(subject, role string) string {
	s := subject
	if strings.HasPrefix(s, "[SO-") {
		if i := strings.Index(s, "] "); i > 0 {
			s = s[i+2:]
		}
	}
	if strings.HasPrefix(s, "Uw second opinion loopt via ") {
		return "referred"
	}
	ts := subjects[s]
	switch len(ts) {
	case 0:
		return "?" + subject
	case 1:
		return ts[0]
	}
	for _, t := range ts {
		if role != "" && strings.Contains(t, role) {
			return t
		}
	}
	for _, t := range ts {
		if !strings.Contains(t, "employer") && !strings.Contains(t, "physician") {
			return t
		}
	}
	return ts[0]
}

// keyFile is where the rig wrote a participant's armored private key.
func (e *env) keyFile(addr string) string { return filepath.Join(e.dir, "keys", addr+".asc") }
