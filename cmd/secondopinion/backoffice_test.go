package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/config"
	"secondopinion/internal/engine"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
)

// boWorld is a real configuration in a temp dir: config, registry, keys,
// token key, data dir and stand-in mail templates.
type boWorld struct {
	dir     string
	cfgPath string
	dataDir string
}

// boTemplateNames are the mail templates the engine may render; the test
// writes a neutral stand-in for each, so it does not depend on the wording
// of templates/mail.
var boTemplateNames = []string{
	"acknowledgement", "acknowledgement_employer", "advice_employee", "advice_request", "alert",
	"approval_declined", "choice_not_independent", "completion_employee", "completion_employer",
	"completion_employer_advice", "completion_physician", "completion_physician_advice",
	"consult_date_question", "consult_planned", "employer_approval", "feedback_question",
	"form_employee", "form_physician", "forward", "intake", "intake_documents", "key_request",
	"medical_notice", "out_of_scope_keuring", "out_of_scope_uwv", "proposal", "referred", "refused",
	"refused_employer", "reminder", "request_missing", "so_request", "unclear", "withdrawn",
}

func newBoWorld(t *testing.T) *boWorld {
	t.Helper()
	dir := t.TempDir()
	w := &boWorld{dir: dir, cfgPath: filepath.Join(dir, "secondopinion.yaml"), dataDir: filepath.Join(dir, "data")}

	tdir := filepath.Join(dir, "templates")
	names := append([]string(nil), boTemplateNames...)
	if more, _ := filepath.Glob("../../templates/mail/nl/*.tmpl"); len(more) > 0 {
		for _, m := range more {
			names = append(names, strings.TrimSuffix(filepath.Base(m), ".tmpl"))
		}
	}
	for _, lang := range []string{"nl", "en"} {
		if err := os.MkdirAll(filepath.Join(tdir, "mail", lang), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			body := "Subject: " + n + "\n\nStand-in text of " + n + " for {{.Ref}}.\n"
			if err := os.WriteFile(filepath.Join(tdir, "mail", lang, n+".tmpl"), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(tdir, "form"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"nl.yaml", "en.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../templates/form", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tdir, "form", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(filepath.Join(dir, "token.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(filepath.Join(keys, "public"), 0o700); err != nil {
		t.Fatal(err)
	}
	armored, err := pgpmime.GenerateServiceKey("Second Opinion", "so@secondopinion.example.nl", time.Now().Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := pgpmime.OpenKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.WriteServiceKey(armored); err != nil {
		t.Fatal(err)
	}

	ccCopyEdit(t, "../../config/secondopinion.example.yaml", w.cfgPath,
		"data_dir: /var/lib/secondopinion", "data_dir: data",
		"keys_dir: ../keys", "keys_dir: keys",
		`templates_dir: ""`, "templates_dir: templates",
		"registry: registry.example.yaml", "registry: "+ccAbs(t, "../../config/registry.example.yaml"),
		"token_key_file: /etc/secondopinion/token.key", "token_key_file: token.key",
		"service_key_passphrase_env: SECONDOPINION_KEY_PASSPHRASE", "# no passphrase",
	)
	t.Setenv("SECONDOPINION_IMAP_PASSWORD", "imap-pw")
	t.Setenv("SECONDOPINION_SMTP_PASSWORD", "smtp-pw")
	if err := os.MkdirAll(w.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return w
}

type boClock time.Time

func (c boClock) Now() time.Time { return time.Time(c) }

// engineAt wires an engine on the world whose clock stands at now, so a
// case can be made with deadlines already in the past.
func (w *boWorld) engineAt(t *testing.T, now time.Time) (*engine.Engine, *registry.Registry, func()) {
	t.Helper()
	ctx := context.Background()
	cfg, reg, errs := config.LoadAll(w.cfgPath)
	if len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	tokenKey, err := cfg.TokenKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := pgpmime.OpenKeyring(cfg.KeysDir)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := kr.ServiceKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pol, cal, err := engine.Policy(cfg.Policy)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, cfg.DataDir, &store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{
		Store: st, Registry: reg, Policy: pol, Calendar: cal, Keyring: kr, Service: svc, TokenKey: tokenKey,
		Info: engine.ServiceInfo{LocalPart: cfg.Service.LocalPart, Domain: cfg.Service.Domain, DisplayName: cfg.Service.DisplayName,
			Provider: cfg.Service.Provider, Backoffice: cfg.Service.Backoffice, Lang: cfg.Service.Language},
		Templates: os.DirFS(cfg.TemplatesDir), Clock: boClock(now), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return e, reg, func() { st.Close() }
}

const boQuestion = "Is mijn knieklacht een beletsel voor het tilwerk in de bakkerij?"

// newCase opens a case for an employee of Bakkerij Noord whose own
// physician is drs. S. el Amrani (arbo-midden), and, with intake, has the
// physician confirm the question so the employee must choose.
func (w *boWorld) newCase(t *testing.T, now time.Time, employee string, intake bool) *procedure.Case {
	t.Helper()
	return w.newCaseEarlier(t, now, employee, intake, procedure.Earlier{})
}

// newCaseEarlier is newCase for an employee whose earlier requests came
// to what earlier says.
func (w *boWorld) newCaseEarlier(t *testing.T, now time.Time, employee string, intake bool, earlier procedure.Earlier) *procedure.Case {
	t.Helper()
	ctx := context.Background()
	e, reg, done := w.engineAt(t, now)
	defer done()
	orig, _ := reg.PhysicianByID("el-amrani")
	op := procedurePhysician(orig)
	emp, _ := reg.EmployerByID("bakkerij-noord")
	c, err := e.Handle(ctx, 0, procedure.Request{
		From:              procedure.RoleEmployee,
		Employee:          procedure.Person{Name: "Jan Modaal", Email: employee},
		Employer:          &procedure.Employer{ID: emp.ID, Name: emp.Name, Contract: procedure.Contract(emp.Contract), NoticeEmail: emp.NoticeEmail},
		OriginalPhysician: &op,
		Subject:           procedure.SubjectVerzuim,
		Question:          boQuestion,
		Earlier:           earlier,
	}, engine.Source{Via: "test"})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if !intake {
		return c
	}
	var cands []procedure.Physician
	for _, p := range reg.Physicians {
		if p.HasRole(registry.RoleSecondOpinion) {
			cands = append(cands, procedurePhysician(p))
		}
	}
	c, err = e.Handle(ctx, c.ID, procedure.IntakeAnswer{
		Documents: []procedure.Document{{Title: "Probleemanalyse", Date: now.Add(-72 * time.Hour),
			SHA256: "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9", Size: 1234}},
		Candidates: cands,
	}, engine.Source{Via: "test"})
	if err != nil {
		t.Fatalf("intake: %v", err)
	}
	if c.State != procedure.StateChoosing {
		t.Fatalf("state after intake = %s, want choosing", c.State)
	}
	return c
}

func (w *boWorld) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), &env{stdout: &out, stderr: &errb}, append(args, "--config", w.cfgPath))
	return code, out.String(), errb.String()
}

func boAmsterdam(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// boLineOf returns the output line that starts with prefix.
func boLineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestCasesList(t *testing.T) {
	w := newBoWorld(t)
	loc := boAmsterdam(t)
	now := time.Now()
	old := w.newCase(t, now.Add(-30*24*time.Hour), "oud@bakkerijnoord.example.nl", false)
	fresh := w.newCase(t, now, "jan@bakkerijnoord.example.nl", true)

	code, out, errOut := w.run(t, "cases")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "REFERENCE") || !strings.Contains(boLineOf(out, "REFERENCE"), "WAITING ON") {
		t.Errorf("no header line:\n%s", out)
	}
	oldDue, _ := old.NextDeadline()
	freshDue, _ := fresh.NextDeadline()
	tests := []struct {
		name    string
		c       *procedure.Case
		fields  []string
		overdue bool
	}{
		{"old intake, past its deadline", old, []string{"intake", "physician", oldDue.Due.In(loc).Format("2006-01-02 15:04")}, true},
		{"fresh, employee chooses", fresh, []string{"choosing", "employee", freshDue.Due.In(loc).Format("2006-01-02 15:04")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := boLineOf(out, tt.c.Ref)
			if line == "" {
				t.Fatalf("no line for %s:\n%s", tt.c.Ref, out)
			}
			for _, f := range tt.fields {
				if !strings.Contains(line, f) {
					t.Errorf("line %q lacks %q", line, f)
				}
			}
			if got := strings.HasSuffix(strings.TrimSpace(line), "OVERDUE"); got != tt.overdue {
				t.Errorf("OVERDUE marked %v, want %v: %q", got, tt.overdue, line)
			}
		})
	}
	// The earliest deadline comes first.
	if strings.Index(out, old.Ref) > strings.Index(out, fresh.Ref) {
		t.Errorf("the overdue case is not listed first:\n%s", out)
	}

	filters := []struct {
		name      string
		args      []string
		want, not []string
	}{
		{"overdue", []string{"--overdue"}, []string{old.Ref}, []string{fresh.Ref}},
		{"state", []string{"--state", "choosing"}, []string{fresh.Ref}, []string{old.Ref}},
		{"open", []string{"--open"}, []string{old.Ref, fresh.Ref}, nil},
		{"none", []string{"--state", "completed"}, []string{"no cases"}, []string{old.Ref, fresh.Ref}},
	}
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := w.run(t, append([]string{"cases"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			for _, s := range tt.want {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %s:\n%s", s, out)
				}
			}
			for _, s := range tt.not {
				if strings.Contains(out, s) {
					t.Errorf("output has %s:\n%s", s, out)
				}
			}
		})
	}
	if code, _, errOut := w.run(t, "cases", "--state", "sleeping"); code != 2 || !strings.Contains(errOut, "choosing") {
		t.Errorf("unknown state: exit %d, stderr %q; want 2 and the list of states", code, errOut)
	}
}

func TestCasesMissingDataDir(t *testing.T) {
	w := newBoWorld(t)
	os.Remove(w.dataDir)
	code, _, errOut := w.run(t, "cases")
	if code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("exit %d, stderr %q; want 1 and the missing data dir", code, errOut)
	}
	if _, err := os.Stat(w.dataDir); err == nil {
		t.Error("the command created the data dir")
	}
}

func TestCaseShow(t *testing.T) {
	w := newBoWorld(t)
	c := w.newCase(t, time.Now(), "jan@bakkerijnoord.example.nl", true)

	code, out, errOut := w.run(t, "case", "show", c.Ref)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"CASE " + c.Ref,
		"choosing, waiting on employee",
		"Jan Modaal <jan@bakkerijnoord.example.nl>",
		"Bakkerij Noord B.V. (bakkerij-noord), contract full_service",
		"drs. S. el Amrani <s.elamrani@arbomidden.example.nl>, Arbo Midden Nederland, pool",
		"verzuimbegeleiding",
		"(medical; shown with --question)",
		"0a1b2c3d4e5f6071", // the document's hash, shortened
		"OPEN QUESTIONS", "choice", "DEADLINES", "choice", "remind",
		"TIMELINE", "request", "requested by employee; earlier requests: 0", "intake", "proposal",
		"DISCLOSURES", "none: no medical content has left",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{boQuestion, "knieklacht", "Probleemanalyse"} {
		if strings.Contains(out, secret) {
			t.Errorf("default output shows medical content %q:\n%s", secret, out)
		}
	}
	// Without an encryption key for the physicians the intake mail was
	// withheld; the timeline says so.
	if !strings.Contains(out, "withheld") {
		t.Errorf("timeline lacks the withheld medical mail:\n%s", out)
	}

	if !regexp.MustCompile(`earlier requests:\s+0\n`).MatchString(out) {
		t.Errorf("the case of an employee without earlier requests does not say 0:\n%s", out)
	}
	// What became of the employee's earlier requests is shown with their
	// number, as the original physician's intake shows it.
	again := w.newCaseEarlier(t, time.Now(), "jan@bakkerijnoord.example.nl", false, procedure.Earlier{Completed: 1, Withdrawn: 2})
	if code, out, _ := w.run(t, "case", "show", again.Ref); code != 0 || !regexp.MustCompile(`earlier requests:\s+3 \(1 completed, 2 withdrawn\)\n`).MatchString(out) {
		t.Errorf("exit %d; the case of an employee with earlier requests lacks them:\n%s", code, out)
	}

	code, out, _ = w.run(t, "case", "show", c.Ref, "--question")
	if code != 0 || !strings.Contains(out, boQuestion) {
		t.Errorf("--question: exit %d, output lacks the question:\n%s", code, out)
	}
	if strings.Contains(out, "Probleemanalyse") {
		t.Errorf("--question shows a document title:\n%s", out)
	}

	if code, _, errOut := w.run(t, "case", "show", "SO-1999-0001"); code != 1 || !strings.Contains(errOut, "no case SO-1999-0001") {
		t.Errorf("unknown case: exit %d, stderr %q", code, errOut)
	}
}

func TestCaseShowDisclosures(t *testing.T) {
	w := newBoWorld(t)
	c := w.newCase(t, time.Now(), "jan@bakkerijnoord.example.nl", false)
	ctx := context.Background()
	st := w.openStore(t)
	at := time.Date(2026, 3, 4, 8, 0, 0, 0, time.UTC) // 09:00 in Amsterdam
	sha := "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
	err := st.AppendAudit(ctx, store.AuditEntry{CaseID: c.ID, CaseRef: c.Ref, At: at, Event: "disclosure", Detail: "1 documents to so",
		Disclosure: &procedure.Disclosure{To: procedure.RoleSO, Email: "p.bakker@arbomidden.example.nl", Documents: []string{sha},
			Consent: "employee consent on form version 1", At: at}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := w.run(t, "case", "show", c.Ref)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	disc := out[strings.Index(out, "DISCLOSURES"):]
	line := boLineOf(disc, "  2026-03-04 09:00")
	for _, want := range []string{"so", "p.bakker@arbomidden.example.nl", "ffeeddccbbaa9988", "employee consent on form version 1"} {
		if !strings.Contains(line, want) {
			t.Errorf("disclosure line %q lacks %q\n%s", line, want, disc)
		}
	}
	if strings.Contains(line, sha) {
		t.Errorf("disclosure line shows the whole hash: %q", line)
	}
}

func TestCaseActions(t *testing.T) {
	w := newBoWorld(t)
	c := w.newCase(t, time.Now(), "jan@bakkerijnoord.example.nl", true)

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"propose from the same arbodienst", []string{"case", "propose", c.Ref, "bakker"}, 1, "",
			"works for the same arbodienst (arbo-midden) as the original physician; the second-opinion physician must be independent (Arbobesluit art. 2.14d)"},
		{"propose an original-only physician", []string{"case", "propose", c.Ref, "jansen"}, 1, "", "not registered as a second-opinion physician"},
		{"propose an unknown physician", []string{"case", "propose", c.Ref, "nobody"}, 1, "", `no physician with id "nobody"`},
		{"propose three", []string{"case", "propose", c.Ref, "visser", "smit", "devries"}, 2, "", "one or two"},
		{"propose two independent", []string{"case", "propose", c.Ref, "visser", "smit"}, 0, c.Ref + ": choosing -> choosing, waiting on employee", ""},
		{"approve while choosing", []string{"case", "approve", c.Ref}, 1, "", "not expected in this state (choosing)"},
		{"withdraw", []string{"case", "withdraw", c.Ref, "--reason", "de werknemer ziet ervan af"}, 0, c.Ref + ": choosing -> withdrawn", ""},
		{"withdraw again", []string{"case", "withdraw", c.Ref}, 1, "", "case is closed"},
		{"unknown case", []string{"case", "approve", "SO-1999-0001"}, 1, "", "no case SO-1999-0001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := w.run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, out)
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, errOut)
			}
		})
	}

	_, out, _ := w.run(t, "case", "show", c.Ref)
	for _, want := range []string{`state:\s+withdrawn\n`, `outcome:\s+de werknemer ziet ervan af\n`,
		`proposal\s+by the backoffice\n`, `proposal\s+J. Visser; drs. K. Smit\n`, `withdrawn\s+by backoffice in state choosing\n`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("case show after the actions lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = w.run(t, "cases")
	if line := boLineOf(out, c.Ref); !strings.Contains(line, "withdrawn") || strings.Contains(line, "OVERDUE") {
		t.Errorf("cases line after withdrawal: %q", line)
	}
}

const boQuarantined = "From: Onbekend <iemand@elders.example.test>\r\n" +
	"To: so@secondopinion.example.nl\r\n" +
	"Subject: vraagje\r\n" +
	"Date: Wed, 04 Mar 2026 10:15:00 +0100\r\n" +
	"Message-ID: <q1@elders.example.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n" +
	"\r\n" +
	"--b\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hallo, kunt u mij helpen?\r\n" +
	"\r\n" +
	"> eerder bericht\r\n" +
	"--b\r\n" +
	"Content-Type: application/pdf\r\n" +
	"Content-Disposition: attachment; filename=brief.pdf\r\n" +
	"\r\n" +
	"%PDF-1.4 stand-in\r\n" +
	"--b--\r\n"

// openStore opens the world's data dir as the daemon would; the caller
// closes it.
func (w *boWorld) openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), w.dataDir, &store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (w *boWorld) quarantine(t *testing.T, raw, reason string) int64 {
	t.Helper()
	ctx := context.Background()
	st := w.openStore(t)
	defer st.Close()
	id, _, err := st.StoreRaw(ctx, store.RawMeta{Mailbox: "INBOX", UIDValidity: 1, UID: 7,
		ReceivedAt: time.Date(2026, 3, 4, 9, 16, 0, 0, time.UTC)}, strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.MarkInbound(ctx, id, store.InboundQuarantined, reason, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	return id
}

func (w *boWorld) inbound(t *testing.T, id int64) (store.Inbound, []store.AuditEntry) {
	t.Helper()
	ctx := context.Background()
	st := w.openStore(t)
	defer st.Close()
	in, err := st.InboundByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	log, err := st.AuditLog(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	return in, log
}

func TestQuarantine(t *testing.T) {
	w := newBoWorld(t)
	const reason = "no case reference, and it does not look like a request for a second opinion"
	id1 := w.quarantine(t, boQuarantined, reason)
	id2 := w.quarantine(t, strings.Replace(boQuarantined, "<q1@", "<q2@", 1), "sender not registered")

	code, out, errOut := w.run(t, "quarantine", "list")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if l := boLineOf(out, "1 "); !strings.Contains(l, "2026-03-04 10:16") || !strings.Contains(l, " B ") || !strings.Contains(l, reason) {
		t.Errorf("list line of message 1 = %q\n%s", l, out)
	}
	if !strings.HasPrefix(out, "ID") || !strings.Contains(out, "sender not registered") {
		t.Errorf("list:\n%s", out)
	}

	code, out, errOut = w.run(t, "quarantine", "show", "1")
	if code != 0 {
		t.Fatalf("show: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"reason:", reason,
		"Onbekend <iemand@elders.example.test>",
		"subject:", "vraagje",
		"date:", "2026-03-04 10:15",
		"so@secondopinion.example.nl",
		"auto_reply:", "bounce:",
		"brief.pdf", "application/pdf",
		"REPLY TEXT", "  Hallo, kunt u mij helpen?",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "eerder bericht") {
		t.Errorf("show prints the quoted history:\n%s", out)
	}

	code, out, errOut = w.run(t, "quarantine", "release", "1")
	if code != 0 || !strings.Contains(out, "message 1 released") {
		t.Fatalf("release: exit %d\n%s%s", code, out, errOut)
	}
	in, log := w.inbound(t, id1)
	if in.Status != store.InboundNew || in.Reason != "released by the backoffice: "+reason {
		t.Errorf("after release: status %q, reason %q", in.Status, in.Reason)
	}
	if last := log[len(log)-1]; last.Event != "released" || last.CaseRef != "-" || !strings.Contains(last.Detail, "inbound message 1") {
		t.Errorf("audit entry after release: %+v", last)
	}

	code, out, errOut = w.run(t, "quarantine", "reject", "2", "--reason", "reclame")
	if code != 0 || !strings.Contains(out, "message 2 rejected") {
		t.Fatalf("reject: exit %d\n%s%s", code, out, errOut)
	}
	in, log = w.inbound(t, id2)
	if in.Status != store.InboundRejected || !strings.Contains(in.Reason, "reclame") {
		t.Errorf("after reject: status %q, reason %q", in.Status, in.Reason)
	}
	if last := log[len(log)-1]; last.Event != "rejected" || !strings.Contains(last.Detail, "reclame") {
		t.Errorf("audit entry after reject: %+v", last)
	}
	if _, err := os.Stat(filepath.Join(w.dataDir, in.Path)); err != nil {
		t.Errorf("the rejected message is not kept: %v", err)
	}

	if _, out, _ = w.run(t, "quarantine", "list"); !strings.Contains(out, "no quarantined messages") {
		t.Errorf("list after release and reject:\n%s", out)
	}
	errs := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"release twice", []string{"quarantine", "release", "1"}, 1, "not in quarantine (status new)"},
		{"show a rejected one", []string{"quarantine", "show", "2"}, 1, "not in quarantine (status rejected)"},
		{"unknown id", []string{"quarantine", "show", "99"}, 1, "no stored message 99"},
		{"not a number", []string{"quarantine", "show", "abc"}, 2, "not a message ID"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := w.run(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestAudit(t *testing.T) {
	w := newBoWorld(t)
	w.newCase(t, time.Now(), "jan@bakkerijnoord.example.nl", true)
	ctx := context.Background()
	st := w.openStore(t)
	entries, err := st.AuditLog(ctx, 0)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := w.run(t, "audit", "verify")
	want := "audit chain ok: " + strconv.Itoa(len(entries)) + " entries\n"
	if code != 0 || out != want {
		t.Fatalf("verify: exit %d, stdout %q, want %q\n%s", code, out, want, errOut)
	}

	code, out, errOut = w.run(t, "audit", "export")
	if code != 0 {
		t.Fatalf("export: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(entries) {
		t.Fatalf("export: %d lines, want %d", len(lines), len(entries))
	}
	prev := "0000000000000000000000000000000000000000000000000000000000000000"
	for i, l := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		for _, k := range []string{"id", "case_ref", "at", "event", "detail", "disclosure", "prev_hash", "hash"} {
			if _, ok := got[k]; !ok {
				t.Errorf("line %d lacks %q: %s", i+1, k, l)
			}
		}
		if at, err := time.Parse(time.RFC3339, got["at"].(string)); err != nil || !at.Equal(entries[i].At) {
			t.Errorf("line %d: at %v (%v), want %v", i+1, got["at"], err, entries[i].At)
		}
		if got["prev_hash"] != prev {
			t.Errorf("line %d: prev_hash does not chain", i+1)
		}
		prev, _ = got["hash"].(string)
	}

	outFile := filepath.Join(w.dir, "audit.jsonl")
	if code, _, errOut := w.run(t, "audit", "export", "--out", outFile); code != 0 {
		t.Fatalf("export --out: exit %d\n%s", code, errOut)
	}
	if b, err := os.ReadFile(outFile); err != nil || string(b) != out {
		t.Errorf("export --out wrote other bytes than stdout (%v)", err)
	}
	if fi, err := os.Stat(outFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode: %v %v", fi.Mode(), err)
	}

	// Tamper with entry 2 behind the store's back.
	db, err := sql.Open("sqlite", filepath.Join(w.dataDir, "secondopinion.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER audit_no_update`, `UPDATE audit SET detail = 'x' WHERE id = 2`} {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	code, out, errOut = w.run(t, "audit", "verify")
	if code != 1 || out != "" || !strings.Contains(errOut, "audit chain broken at entry 2: its content was changed") {
		t.Errorf("verify after tampering: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestWriteAuditJSONL pins the export format the demo shares.
func TestWriteAuditJSONL(t *testing.T) {
	at := time.Date(2026, 3, 4, 9, 0, 0, 123e6, time.FixedZone("CET", 3600))
	var buf bytes.Buffer
	err := writeAuditJSONL(&buf, []store.AuditEntry{
		{ID: 1, CaseRef: "-", At: at, Event: "released", Detail: "inbound message 3", PrevHash: "00", Hash: "aa"},
		{ID: 2, CaseRef: "SO-2026-0001", At: at, Event: "disclosure", Detail: "1 documents to so",
			Disclosure: &procedure.Disclosure{To: procedure.RoleSO, Email: "p@x.example", Documents: []string{"ab"}, Consent: "form v1", At: at.UTC()},
			PrevHash:   "aa", Hash: "bb"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"case_ref":"-","at":"2026-03-04T08:00:00.123Z","event":"released","detail":"inbound message 3","disclosure":null,"prev_hash":"00","hash":"aa"}
{"id":2,"case_ref":"SO-2026-0001","at":"2026-03-04T08:00:00.123Z","event":"disclosure","detail":"1 documents to so","disclosure":{"to":"so","email":"p@x.example","documents":["ab"],"consent":"form v1","at":"2026-03-04T08:00:00.123Z"},"prev_hash":"aa","hash":"bb"}
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}
