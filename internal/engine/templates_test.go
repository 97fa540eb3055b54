package engine

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"
	"unicode/utf8"

	"secondopinion/internal/procedure"
	"secondopinion/templates"
)

// go test -run Templates ./internal/engine -templates.dump=DIR writes every
// rendering to DIR for reading the texts as a recipient would.
var templatesDump = flag.String("templates.dump", "", "write the rendered mail templates to this directory")

// tmplTestNames are the mails the procedure sends; each must exist in nl
// and en.
var tmplTestNames = []string{
	"acknowledgement", "acknowledgement_employer", "request_missing",
	"out_of_scope_keuring", "out_of_scope_uwv", "referred",
	"intake", "intake_documents", "refused", "refused_employer",
	"proposal", "choice_not_independent", "employer_approval", "approval_declined",
	"form_employee", "form_physician", "so_request", "consult_date_question",
	"key_request", "forward", "consult_planned", "advice_request", "advice_employee",
	"feedback_question", "completion_physician", "completion_physician_advice",
	"completion_employer", "completion_employer_advice", "completion_employee",
	"withdrawn", "unclear", "reminder", "medical_notice", "alert",
}

// tmplTestMedical are the mails that travel PGP-encrypted and so may carry
// the vraagstelling or the physician's statements.
var tmplTestMedical = map[string]bool{
	"intake": true, "refused": true, "forward": true, "advice_employee": true,
	"completion_physician_advice": true, "completion_employer_advice": true,
}

// tmplTestAsks are the mails that expect an answer, with a phrase (per
// language) that must spell the answer out.
var tmplTestAsks = map[string][2]string{
	"request_missing":        {"Kopieer de regels", "Copy the lines"},
	"intake":                 {"WEIGEREN", "REFUSE"},
	"intake_documents":       {"als bijlage", "as attachments"},
	"proposal":               {"alleen het nummer", "only the number"},
	"choice_not_independent": {"alleen het nummer", "only the number"},
	"employer_approval":      {"JA of NEE", "YES or NO"},
	"form_employee":          {"AKKOORD of NIET AKKOORD", "AGREE or DISAGREE"},
	"form_physician":         {"AKKOORD of", "AGREE or"},
	"so_request":             {"JA of NEE", "YES or NO"},
	"consult_date_question":  {"10 december 14:30", "10 December 14:30"},
	"key_request":            {"openbare PGP-sleutel", "public PGP key"},
	"advice_request":         {"GEEN INHOUDELIJK ADVIES", "NO SUBSTANTIVE ADVICE"},
	"feedback_question":      {"bedrijfsarts: ja, werkgever: nee", "physician: yes, employer: no"},
}

// tmplTestQuestion is a vraagstelling that must appear only in medical mail.
const tmplTestQuestion = "Kan ik met mijn rugklachten halve dagen werken?"

// tmplTestReason is a physician's refusal: medical, encrypted mail only.
const tmplTestReason = "Dit is de derde aanvraag over hetzelfde advies binnen een half jaar."

// tmplTestData is a fully populated case: two proposed physicians, a chosen
// one and a backup, every Data key any template reads.
func tmplTestData(lang string, to procedure.Role) MailData {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	opts := []Option{
		{N: 1, Name: "dr. A. (Anna) Jansen", Arbodienst: "Arbo Noord", InPool: true, Payer: "provider", PayerReason: "pool-full-service"},
		{N: 2, Name: "drs. P. van den Berg", Arbodienst: "ArboZorg Zuid", InPool: false, Payer: "employee", PayerReason: "outside-pool-not-approved"},
	}
	parties := map[procedure.Role]Party{
		procedure.RoleEmployee:   {Name: "Marieke de Vries", Email: "marieke@example.nl", Role: procedure.RoleEmployee},
		procedure.RoleEmployer:   {Name: "Bakkerij Hendriks B.V.", Email: "hr@bakkerij-hendriks.example", Role: procedure.RoleEmployer},
		procedure.RolePhysician:  {Name: "dr. K. Smit", Email: "k.smit@arbo-west.example", Role: procedure.RolePhysician, Arbodienst: "Arbo West"},
		procedure.RoleSO:         {Name: "dr. A. (Anna) Jansen", Email: "a.jansen@arbo-noord.example", Role: procedure.RoleSO, Arbodienst: "Arbo Noord"},
		procedure.RoleBackoffice: {Name: "Backoffice", Email: "backoffice@so.example", Role: procedure.RoleBackoffice},
	}
	return MailData{
		Ref:      "SO-2026-0042",
		Lang:     lang,
		To:       parties[to],
		Service:  Service{Name: "Second opinion bedrijfsarts", Provider: "Arbo West", Address: "so@so.example", Backoffice: "backoffice@so.example"},
		Employee: parties[procedure.RoleEmployee], Employer: parties[procedure.RoleEmployer],
		OriginalPhysician: parties[procedure.RolePhysician],
		Chosen:            &opts[0], Backup: &opts[1], Proposed: opts,
		Subject:  "verzuimbegeleiding",
		Question: tmplTestQuestion, EarlierRequests: 1,
		Payer: "provider", PayerReason: "pool-full-service",
		Documents: []Doc{
			{Title: "Probleemanalyse", Date: at("2026-02-10T00:00:00Z"), Short: "3f2a9c0d1e4b5a67", SHA256: strings.Repeat("3f2a9c0d1e4b5a67", 4)},
			{Title: "Brief orthopeed", Date: at("2026-01-28T00:00:00Z"), Short: "9b8c7d6e5f4a3b2c", SHA256: strings.Repeat("9b8c7d6e5f4a3b2c", 4)},
		},
		ChoiceWithin:      48 * time.Hour,
		ConsultWorkdays:   15,
		AnswerBy:          at("2026-03-12T13:30:00Z"),
		ConsultTarget:     at("2026-04-01T00:00:00Z"),
		ConsultAt:         at("2026-03-24T13:30:00Z"),
		FeedbackAnswered:  true,
		FeedbackPhysician: true,
		Data: map[string]string{
			"missing":   "employee_name,employee_email,original_physician,employer,subject,question",
			"party":     "Second Opinion Partners",
			"reason":    tmplTestReason,
			"step":      "choice",
			"kind":      "choice",
			"physician": "drs. P. van den Berg",
			"name":      "dr. L. Bos",
			"count":     "2",
		},
	}
}

// tmplTestVariant is one rendering of a template: who gets it and what
// differs from the base data.
type tmplTestVariant struct {
	label string
	to    procedure.Role
	edit  func(*MailData)
}

// tmplTestVariants lists the renderings of name: every recipient for the
// mails that vary by role, every answer kind for unclear and reminder, the
// outcomes of the completion notices.
func tmplTestVariants(name string) []tmplTestVariant {
	one := func(to procedure.Role) []tmplTestVariant { return []tmplTestVariant{{label: string(to), to: to}} }
	roles := []procedure.Role{procedure.RoleEmployee, procedure.RolePhysician, procedure.RoleSO, procedure.RoleEmployer}
	switch name {
	case "choice_not_independent":
		var vs []tmplTestVariant
		for _, r := range []string{"same_arbodienst", "original", "declined"} {
			vs = append(vs, tmplTestVariant{label: r, to: procedure.RoleEmployee, edit: func(d *MailData) { d.Data["reason"] = r }})
		}
		return vs
	case "proposal":
		return []tmplTestVariant{
			{label: "two", to: procedure.RoleEmployee},
			{label: "one", to: procedure.RoleEmployee, edit: func(d *MailData) { d.Proposed = d.Proposed[:1]; d.Backup = nil }},
		}
	case "form_employee":
		return []tmplTestVariant{
			{label: "backup", to: procedure.RoleEmployee},
			{label: "no-backup", to: procedure.RoleEmployee, edit: func(d *MailData) { d.Backup = nil; d.Payer = "employee"; d.Documents = nil }},
		}
	case "acknowledgement", "refused", "approval_declined",
		"consult_planned", "advice_employee", "feedback_question":
		return one(procedure.RoleEmployee)
	case "acknowledgement_employer", "refused_employer", "employer_approval", "completion_employer", "completion_employer_advice":
		return one(procedure.RoleEmployer)
	case "intake", "intake_documents", "form_physician", "completion_physician_advice":
		return one(procedure.RolePhysician)
	case "so_request", "consult_date_question", "key_request", "forward", "advice_request":
		return one(procedure.RoleSO)
	case "alert":
		return one(procedure.RoleBackoffice)
	case "request_missing", "out_of_scope_keuring", "out_of_scope_uwv", "referred":
		return []tmplTestVariant{{label: "employee", to: procedure.RoleEmployee}, {label: "employer", to: procedure.RoleEmployer}}
	case "withdrawn", "medical_notice":
		var vs []tmplTestVariant
		for _, r := range roles {
			vs = append(vs, tmplTestVariant{label: string(r), to: r})
		}
		return vs
	case "completion_physician", "completion_employee":
		to := procedure.RolePhysician
		if name == "completion_employee" {
			to = procedure.RoleEmployee
		}
		return []tmplTestVariant{
			{label: "shared", to: to},
			{label: "both", to: to, edit: func(d *MailData) { d.FeedbackEmployer = true }},
			{label: "not-shared", to: to, edit: func(d *MailData) { d.FeedbackPhysician = false }},
			{label: "no-answer", to: to, edit: func(d *MailData) { d.FeedbackAnswered, d.FeedbackPhysician = false, false }},
			{label: "no-advice", to: to, edit: func(d *MailData) { d.NoAdvice = true }},
		}
	case "unclear", "reminder":
		kinds := []struct{ step, kind string }{
			{"request", "request"}, {"intake", "intake"}, {"choice", "choice"},
			{"employer_approval", "yesno"}, {"employee_signature", "yesno"}, {"physician_signature", "yesno"},
			{"so_acceptance", "yesno"}, {"consult_date", "datetime"}, {"advice", "advice"},
			{"feedback_consent", "consent"}, {"recipient_key", "other"},
		}
		var vs []tmplTestVariant
		for _, k := range kinds {
			to := map[string]procedure.Role{
				"request": procedure.RoleEmployee, "intake": procedure.RolePhysician, "choice": procedure.RoleEmployee,
				"employer_approval": procedure.RoleEmployer, "employee_signature": procedure.RoleEmployee,
				"physician_signature": procedure.RolePhysician, "so_acceptance": procedure.RoleSO,
				"consult_date": procedure.RoleSO, "advice": procedure.RoleSO, "feedback_consent": procedure.RoleEmployee,
				"recipient_key": procedure.RoleSO,
			}[k.step]
			vs = append(vs, tmplTestVariant{label: k.step, to: to, edit: func(d *MailData) {
				d.Data["step"], d.Data["kind"] = k.step, k.kind
			}})
		}
		vs = append(vs, tmplTestVariant{label: "no-deadline", to: procedure.RoleEmployee, edit: func(d *MailData) {
			d.AnswerBy = time.Time{}
		}})
		return vs
	}
	return one(procedure.RoleEmployee)
}

func tmplTestList(t *testing.T, lang string) []string {
	t.Helper()
	entries, err := fs.ReadDir(templates.FS, "mail/"+lang)
	if err != nil {
		t.Fatalf("read mail/%s: %v", lang, err)
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".tmpl"); ok {
			names = append(names, n)
		}
	}
	return names
}

func tmplTestRender(t *testing.T, lang, name string, data MailData) string {
	t.Helper()
	src, err := fs.ReadFile(templates.FS, path.Join("mail", lang, name+".tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := template.New(name).Option("missingkey=error").Funcs(funcs(lang)).Parse(string(src))
	if err != nil {
		t.Fatalf("parse %s/%s: %v", lang, name, err)
	}
	var buf bytes.Buffer
	if err := tm.Execute(&buf, data); err != nil {
		t.Fatalf("execute %s/%s: %v", lang, name, err)
	}
	return buf.String()
}

// A named physician who is refused is refused for what is true of them:
// the employee's own physician, a colleague of that physician, or a
// physician who declined the case.
func TestChoiceRefusalGivesItsReason(t *testing.T) {
	for _, tt := range []struct {
		lang, reason, want, not string
	}{
		{"nl", "same_arbodienst", "dezelfde arbodienst", "heeft laten weten"},
		{"nl", "original", "Dat is uw eigen bedrijfsarts", "dezelfde arbodienst"},
		{"nl", "declined", "Subject: Kies opnieuw: deze arts kan uw second opinion niet doen", "onafhankelijk"},
		{"en", "same_arbodienst", "the same occupational health service", "let us know"},
		{"en", "original", "That is your own occupational physician", "the same occupational health service"},
		{"en", "declined", "Subject: Please choose again: this physician cannot give your second opinion", "not independent"},
	} {
		d := tmplTestData(tt.lang, procedure.RoleEmployee)
		d.Data["reason"] = tt.reason
		out := tmplTestRender(t, tt.lang, "choice_not_independent", d)
		if !strings.Contains(out, tt.want) || strings.Contains(out, tt.not) {
			t.Errorf("%s, %s: want %q and not %q in\n%s", tt.lang, tt.reason, tt.want, tt.not, out)
		}
	}
}

// The intake tells the original physician what became of the employee's
// earlier requests: repeated use is a weighty reason to refuse, a
// withdrawn request is not a second opinion given.
func TestIntakeTellsWhatBecameOfEarlierRequests(t *testing.T) {
	for _, tt := range []struct {
		lang    string
		earlier procedure.Earlier
		want    string
	}{
		{"nl", procedure.Earlier{}, "Deze werknemer vroeg niet eerder een second opinion bij ons aan."},
		{"nl", procedure.Earlier{Completed: 1}, "Deze werknemer vroeg eerder 1 keer een second opinion bij ons aan (1 afgerond)."},
		{"nl", procedure.Earlier{Completed: 1, Withdrawn: 2, Refused: 1}, "vroeg eerder 4 keer een second opinion bij ons aan (1 afgerond, 2 ingetrokken, 1 geweigerd door de bedrijfsarts)."},
		{"en", procedure.Earlier{Open: 1}, "This employee has asked us for a second opinion once before (1 still open)."},
		{"en", procedure.Earlier{Completed: 2, Other: 1}, "asked us for a second opinion 3 times before (2 completed, 1 closed otherwise)."},
	} {
		d := tmplTestData(tt.lang, procedure.RolePhysician)
		d.Medical = true
		d.Earlier, d.EarlierRequests = tt.earlier, tt.earlier.Total()
		out := tmplTestRender(t, tt.lang, "intake", d)
		if !strings.Contains(strings.Join(strings.Fields(out), " "), tt.want) {
			t.Errorf("%s, %+v: want %q in\n%s", tt.lang, tt.earlier, tt.want, out)
		}
	}
}

// The terms the mails name are the configured ones (policy.choice_deadline,
// policy.consult_workdays), not the defaults written into the texts.
func TestTemplatesNameTheConfiguredTerms(t *testing.T) {
	for _, tt := range []struct {
		lang, name string
		to         procedure.Role
		want       []string
	}{
		{"nl", "proposal", procedure.RoleEmployee, []string{"Kies binnen 36 uur"}},
		{"en", "proposal", procedure.RoleEmployee, []string{"choose within 36 hours"}},
		{"nl", "acknowledgement", procedure.RoleEmployee, []string{"binnen 36 uur één", "10 werkdagen"}},
		{"en", "acknowledgement", procedure.RoleEmployee, []string{"within 36 hours", "10 working days"}},
		{"nl", "acknowledgement_employer", procedure.RoleEmployer, []string{"binnen 10 werkdagen"}},
		{"en", "acknowledgement_employer", procedure.RoleEmployer, []string{"10 working days"}},
		{"nl", "so_request", procedure.RoleSO, []string{"binnen 10 werkdagen"}},
		{"en", "so_request", procedure.RoleSO, []string{"within 10 working days"}},
	} {
		d := tmplTestData(tt.lang, tt.to)
		d.ChoiceWithin, d.ConsultWorkdays = 36*time.Hour, 10
		out := tmplTestRender(t, tt.lang, tt.name, d)
		for _, w := range tt.want {
			if !strings.Contains(strings.Join(strings.Fields(out), " "), w) {
				t.Errorf("%s/%s does not say %q:\n%s", tt.lang, tt.name, w, out)
			}
		}
		if strings.Contains(out, "48") || strings.Contains(out, "15 w") {
			t.Errorf("%s/%s still names a default term:\n%s", tt.lang, tt.name, out)
		}
	}
	if got := funcs("nl")["hours"].(func(time.Duration) string)(90 * time.Minute); got != "1,5" {
		t.Errorf("hours(90m) in Dutch = %q, want 1,5", got)
	}
}

func TestTemplatesComplete(t *testing.T) {
	nl, en := tmplTestList(t, "nl"), tmplTestList(t, "en")
	if !slices.Equal(nl, en) {
		t.Errorf("nl and en differ:\nnl: %v\nen: %v", nl, en)
	}
	for _, lang := range []string{"nl", "en"} {
		have := tmplTestList(t, lang)
		for _, n := range tmplTestNames {
			if !slices.Contains(have, n) {
				t.Errorf("mail/%s/%s.tmpl is missing", lang, n)
			}
		}
		for _, n := range have {
			if !slices.Contains(tmplTestNames, n) {
				t.Errorf("mail/%s/%s.tmpl is not a known mail (add it to tmplTestNames)", lang, n)
			}
		}
	}
}

func TestTemplatesRender(t *testing.T) {
	for _, lang := range []string{"nl", "en"} {
		for _, name := range tmplTestList(t, lang) {
			src, err := fs.ReadFile(templates.FS, path.Join("mail", lang, name+".tmpl"))
			if err != nil {
				t.Fatal(err)
			}
			if !tmplTestMedical[name] && strings.Contains(string(src), ".Question") {
				t.Errorf("%s/%s is not medical mail but uses .Question", lang, name)
			}
			for _, v := range tmplTestVariants(name) {
				t.Run(lang+"/"+name+"/"+v.label, func(t *testing.T) {
					d := tmplTestData(lang, v.to)
					d.Template, d.Medical = name, tmplTestMedical[name]
					if v.edit != nil {
						v.edit(&d)
					}
					out := tmplTestRender(t, lang, name, d)
					tmplTestCheck(t, lang, name, out)
					if *templatesDump != "" {
						dir := filepath.Join(*templatesDump, lang)
						if err := os.MkdirAll(dir, 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.WriteFile(filepath.Join(dir, name+"."+v.label+".txt"), []byte(out), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// tmplTestCheck asserts what a recipient would notice: a subject line, a
// real body, no template debris, short lines, no vraagstelling outside
// encrypted mail, and for a question the spelled-out answer.
func tmplTestCheck(t *testing.T, lang, name, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "Subject: ") || lines[1] != "" {
		t.Fatalf("want \"Subject: …\", an empty line, the body; got:\n%s", out)
	}
	subject := strings.TrimPrefix(lines[0], "Subject: ")
	if strings.TrimSpace(subject) == "" || strings.Contains(subject, "SO-2026-0042") {
		t.Errorf("subject %q: empty, or carries the case tag the engine adds", subject)
	}
	body := strings.Join(lines[2:], "\n")
	if len(strings.Fields(body)) < 10 {
		t.Errorf("body too short:\n%s", body)
	}
	if strings.Contains(out, "<no value>") || strings.Contains(out, "{{") || strings.Contains(out, "%!") {
		t.Errorf("template debris in output:\n%s", out)
	}
	if strings.Contains(out, "\n\n\n") {
		t.Errorf("two empty lines in a row:\n%s", out)
	}
	for i, l := range lines {
		if l != strings.TrimRight(l, " \t") {
			t.Errorf("line %d has trailing white space: %q", i+1, l)
		}
		// Free text from the case (a physician's reasons, the question)
		// is a line of its own and may be long.
		// So may a phrase of the engine's payer function.
		free := strings.Contains(l, tmplTestQuestion) || strings.Contains(l, tmplTestReason) ||
			strings.Contains(l, funcs(lang)["payer"].(func(string) string)("provider"))
		if n := utf8.RuneCountInString(l); n > 78 && i > 0 && !free {
			t.Errorf("line %d has %d characters (a phone shows it ragged): %q", i+1, n, l)
		}
	}
	if !tmplTestMedical[name] && strings.Contains(out, tmplTestQuestion) {
		t.Errorf("the vraagstelling appears in mail that is not encrypted")
	}
	if !tmplTestMedical[name] && strings.Contains(out, tmplTestReason) && name != "alert" {
		t.Errorf("the physician's reasons appear in mail that is not encrypted")
	}
	if ask, ok := tmplTestAsks[name]; ok {
		want := ask[0]
		if lang == "en" {
			want = ask[1]
		}
		if !strings.Contains(out, want) {
			t.Errorf("the question does not spell out its answer (%q)", want)
		}
		if !strings.Contains(out, funcs(lang)["datetime"].(func(time.Time) string)(tmplTestData(lang, "").AnswerBy)) {
			t.Errorf("the deadline is not stated")
		}
	}
	if !strings.HasSuffix(out, "\n") || strings.HasSuffix(out, "\n\n") {
		t.Errorf("the body should end with exactly one newline: %q", out[max(0, len(out)-40):])
	}
}

// What became of earlier requests, in the intake's words and the
// backoffice's: each outcome that occurred, in a fixed order; a case out
// of scope is no request and is not counted.
func TestEarlierOutcomes(t *testing.T) {
	var all procedure.Earlier
	for _, s := range []procedure.State{procedure.StateCompleted, procedure.StateWithdrawn, procedure.StateWithdrawn,
		procedure.StateRefused, procedure.StatePurged, procedure.StateChoosing, procedure.StateOutOfScope} {
		all.Count(s, 1)
	}
	for _, tc := range []struct {
		e        procedure.Earlier
		lang     string
		want     string
		wantSize int
	}{
		{procedure.Earlier{}, "en", "", 0},
		{procedure.Earlier{Withdrawn: 2, Completed: 1}, "en", "1 completed, 2 withdrawn", 3},
		{procedure.Earlier{Withdrawn: 2, Completed: 1}, "nl", "1 afgerond, 2 ingetrokken", 3},
		{all, "en", "1 completed, 1 still open, 2 withdrawn, 1 refused by the occupational physician, 1 closed otherwise", 6},
	} {
		if got := EarlierOutcomes(tc.e, tc.lang); got != tc.want || tc.e.Total() != tc.wantSize {
			t.Errorf("%+v in %s: %q of %d, want %q of %d", tc.e, tc.lang, got, tc.e.Total(), tc.want, tc.wantSize)
		}
	}
}
