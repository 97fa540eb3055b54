package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"text/template"
	"time"

	"secondopinion/internal/authform"
	"secondopinion/internal/mailout"
	"secondopinion/internal/procedure"
	"secondopinion/templates"
)

var amsterdam = mustLoad("Europe/Amsterdam")

func mustLoad(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// mailData fills the template data for one mail. The question and the
// physician's statements are filled in only for mail that travels
// encrypted.
func (e *Engine) mailData(c *procedure.Case, m procedure.Mail, now time.Time) MailData {
	reg := e.Registry()
	dienst := func(id string) string {
		if a, ok := reg.ArbodienstByID(id); ok {
			return a.Name
		}
		return id
	}
	opt := func(n int, p procedure.Physician) Option {
		payer, why := procedure.WhoPays(p.InPool, c.Employer.Contract, c.EmployerApproval)
		return Option{N: n, Name: p.Name, Arbodienst: dienst(p.Arbodienst), InPool: p.InPool, Payer: string(payer), PayerReason: why}
	}
	d := MailData{
		Ref: c.Ref, Lang: m.Lang, Template: m.Template, Reminder: m.Reminder, Medical: m.Medical,
		To:                Party{Name: m.Name, Email: m.Email, Role: m.To},
		Service:           Service{Name: e.o.Info.DisplayName, Provider: e.o.Info.Provider, Address: e.o.Info.Address(), Backoffice: e.o.Info.Backoffice},
		Employee:          Party{Name: c.Employee.Name, Email: c.Employee.Email, Role: procedure.RoleEmployee},
		Employer:          Party{Name: c.Employer.Name, Role: procedure.RoleEmployer},
		OriginalPhysician: Party{Name: c.OriginalPhysician.Name, Email: c.OriginalPhysician.Email, Role: procedure.RolePhysician, Arbodienst: dienst(c.OriginalPhysician.Arbodienst)},
		Subject:           string(c.Subject),
		EarlierRequests:   c.EarlierRequests,
		Earlier:           c.Earlier,
		Payer:             string(c.Payer),
		PayerReason:       c.PayerReason,
		ChoiceWithin:      e.o.Policy.Steps[procedure.StepChoice].Escalate.Duration,
		ConsultWorkdays:   e.o.Policy.ConsultWorkdays,
		ConsultTarget:     c.ConsultTarget,
		ConsultAt:         c.ConsultAt,
		FeedbackAnswered:  c.FeedbackAnswered,
		FeedbackPhysician: c.FeedbackPhysician,
		FeedbackEmployer:  c.FeedbackEmployer,
		NoAdvice:          c.NoAdvice,
		Outcome:           c.Outcome,
		Data:              map[string]string{},
	}
	for k, v := range m.Data {
		d.Data[k] = v
	}
	if !m.Medical {
		// A refusal's reasons are the physician's statement.
		delete(d.Data, "reason")
		if m.Template == "alert" {
			d.Data["reason"] = m.Data["reason"]
		}
	} else {
		d.Question = c.Question
	}
	if c.Chosen != nil {
		o := opt(0, *c.Chosen)
		d.Chosen = &o
	}
	if c.Backup != nil {
		o := opt(0, *c.Backup)
		d.Backup = &o
	}
	for i, p := range c.Proposed {
		d.Proposed = append(d.Proposed, opt(i+1, p))
	}
	for _, doc := range c.Documents {
		dd := Doc{Date: doc.Date, SHA256: doc.SHA256, Short: doc.SHA256[:min(16, len(doc.SHA256))]}
		if m.Medical {
			dd.Title = doc.Title
		}
		d.Documents = append(d.Documents, dd)
	}
	if m.Question != 0 {
		for _, q := range c.Questions {
			if q.ID == m.Question {
				for _, dl := range c.Deadlines {
					if dl.Step == q.Step && dl.Kind == procedure.Escalate {
						d.AnswerBy = dl.Due
					}
				}
			}
		}
	}
	return d
}

// render executes mail/<lang>/<name>.tmpl with the template functions of
// its language (mailout.RenderWith; a missing language falls back to nl).
func (e *Engine) render(lang, name string, data MailData) (subject, body string, err error) {
	return mailout.RenderWith(e.o.Templates, lang, name, data, funcs)
}

// CheckTemplates checks texts that replace the embedded ones
// (templates_dir): every mail the daemon sends must be there in the
// default language (another language falls back to it), every one there
// must parse, and the form texts must load. Without this a missing or
// broken template showed only when a case came to that mail.
func CheckTemplates(fsys fs.FS) error {
	if _, err := fs.Stat(fsys, "mail"); err != nil {
		return fmt.Errorf("it has no mail/ directory: %w", err)
	}
	var errs []string
	langs, err := fs.ReadDir(templates.FS, "mail")
	if err != nil {
		return err
	}
	for _, l := range langs {
		if !l.IsDir() {
			continue
		}
		dir := "mail/" + l.Name()
		names, err := fs.ReadDir(templates.FS, dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			path := dir + "/" + n.Name()
			src, err := fs.ReadFile(fsys, path)
			if errors.Is(err, fs.ErrNotExist) && l.Name() != mailout.DefaultLang {
				continue
			}
			if errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, path+" is missing")
				continue
			}
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if _, err := template.New(path).Option("missingkey=error").Funcs(funcs(l.Name())).Parse(string(src)); err != nil {
				errs = append(errs, err.Error())
			} else if !strings.HasPrefix(string(src), "Subject:") && !strings.HasPrefix(string(src), "{{") {
				errs = append(errs, path+`: the first line must be "Subject: …"`)
			}
		}
	}
	if _, err := authform.New(authform.Options{FS: fsys}); err != nil {
		errs = append(errs, "form texts: "+err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

var (
	monthsNL = []string{"januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober", "november", "december"}
	daysNL   = []string{"zondag", "maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag"}
)

// funcs are the template functions, in the recipient's language.
func funcs(lang string) template.FuncMap {
	nl := lang != "en"
	pick := func(m map[string][2]string, k string) string { return named(m, k, lang) }
	return template.FuncMap{
		// hours writes a duration in hours: 48, or 1,5 (nl) / 1.5 (en).
		"hours": func(d time.Duration) string {
			s := strconv.FormatFloat(d.Hours(), 'f', -1, 64)
			if nl {
				s = strings.Replace(s, ".", ",", 1)
			}
			return s
		},
		"date": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			t = t.In(amsterdam)
			if nl {
				return fmt.Sprintf("%d %s %d", t.Day(), monthsNL[t.Month()-1], t.Year())
			}
			return t.Format("2 January 2006")
		},
		"datetime": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			t = t.In(amsterdam)
			if nl {
				return fmt.Sprintf("%s %d %s %d om %s", daysNL[t.Weekday()], t.Day(), monthsNL[t.Month()-1], t.Year(), t.Format("15:04"))
			}
			return t.Format("Monday 2 January 2006 at 15:04")
		},
		"subject": func(s string) string { return pick(subjectNames, s) },
		"payer":   func(s string) string { return pick(payerNames, s) },
		"split":   strings.Split,
		"field":   func(s string) string { return pick(fieldNames, s) },
		"step":    func(s string) string { return pick(stepNames, s) },
		"earlier": func(e procedure.Earlier) string { return EarlierOutcomes(e, lang) },
	}
}

// EarlierOutcomes says what became of earlier requests, in lang: "1
// afgerond, 2 ingetrokken" (nl), "1 completed, 2 withdrawn" (en). The
// intake tells the original physician; case show tells the backoffice.
func EarlierOutcomes(e procedure.Earlier, lang string) string {
	return strings.Join(e.Outcomes(func(key string) string { return named(earlierNames, key, lang) }), ", ")
}

// named is key's name in lang from a table of Dutch and English names, or
// key itself if the table has none.
func named(m map[string][2]string, key, lang string) string {
	v, ok := m[key]
	switch {
	case !ok:
		return key
	case lang == "en":
		return v[1]
	default:
		return v[0]
	}
}

// earlierNames are the outcomes of earlier requests, as the intake names
// them.
var earlierNames = map[string][2]string{
	"completed": {"afgerond", "completed"},
	"open":      {"nog lopend", "still open"},
	"withdrawn": {"ingetrokken", "withdrawn"},
	"refused":   {"geweigerd door de bedrijfsarts", "refused by the occupational physician"},
	"other":     {"anders afgesloten", "closed otherwise"},
}

var subjectNames = map[string][2]string{
	"verzuimbegeleiding":     {"verzuimbegeleiding", "sickness absence guidance"},
	"pago-pmo":               {"een arbeidsgezondheidskundig onderzoek (PAGO/PMO)", "an occupational health examination (PAGO/PMO)"},
	"beroepsziekte":          {"een vermoeden van beroepsziekte", "a suspected occupational disease"},
	"aanstellingskeuring":    {"een aanstellingskeuring", "a pre-employment medical examination"},
	"uwv-deskundigenoordeel": {"een deskundigenoordeel van UWV", "an expert opinion from UWV"},
}

var payerNames = map[string][2]string{
	"provider": {"de arbodienst (onder het contract van de werkgever)", "the arbodienst (under the employer's contract)"},
	"employer": {"uw werkgever", "your employer"},
	"employee": {"uzelf", "yourself"},
}

// fieldNames label the missing request fields. They read right for the
// employee and for an employer who asks on the employee's behalf.
var fieldNames = map[string][2]string{
	"employee_name":      {"de naam van de werknemer", "the employee's name"},
	"employee_email":     {"het e-mailadres van de werknemer", "the employee's e-mail address"},
	"original_physician": {"naam en e-mailadres van de eigen bedrijfsarts", "name and e-mail address of the own occupational physician"},
	"employer":           {"de werkgever", "the employer"},
	"subject":            {"het onderwerp: verzuimbegeleiding, PAGO/PMO of beroepsziekte", "the subject: sickness absence, PAGO/PMO or occupational disease"},
	"question":           {"de vraag voor de second opinion", "the question for the second opinion"},
}

var stepNames = map[string][2]string{
	"request":             {"uw aanvraag", "your request"},
	"intake":              {"de vraagstelling en de medische stukken", "the question and the medical documents"},
	"choice":              {"de keuze van een bedrijfsarts", "the choice of a physician"},
	"employer_approval":   {"akkoord op de kosten", "approval of the costs"},
	"employee_signature":  {"uw machtiging", "your authorisation"},
	"physician_signature": {"de medeondertekening van het machtigingsformulier", "the co-signature of the authorisation form"},
	"check":               {"de controle door de backoffice", "the backoffice check"},
	"so_acceptance":       {"het aannemen van de second opinion", "accepting the second opinion"},
	"consult_date":        {"de datum van het consult", "the date of the consult"},
	"consult":             {"het consult", "the consult"},
	"advice":              {"het advies", "the advice"},
	"feedback_consent":    {"toestemming om het advies te delen", "consent to share the advice"},
	"recipient_key":       {"een geldige PGP-sleutel", "a valid PGP key"},
}

// formFor describes the case's authorisation form.
func formFor(c *procedure.Case, info ServiceInfo, now time.Time, retention int) authform.Form {
	phys := func(p procedure.Physician) authform.Physician {
		return authform.Physician{Name: p.Name, Arbodienst: p.Arbodienst, InPool: p.InPool}
	}
	lang := c.Lang
	if lang != "en" {
		lang = "nl"
	}
	if retention <= 0 {
		retention = 20
	}
	f := authform.Form{
		Ref: c.Ref, Date: now, Lang: lang, Provider: info.Provider, ReplyAddress: info.Address(),
		Employee:          authform.Employee{Name: c.Employee.Name, BirthDate: c.Employee.DateOfBirth, Email: c.Employee.Email},
		Employer:          authform.Employer{Name: c.Employer.Name},
		OriginalPhysician: phys(c.OriginalPhysician),
		Subject:           string(c.Subject),
		Question:          c.Question,
		Payer:             string(c.Payer),
		PayerReason:       formReason(c),
		RetentionYears:    retention,
	}
	if c.Chosen != nil {
		f.Chosen = phys(*c.Chosen)
	}
	if c.Backup != nil {
		b := phys(*c.Backup)
		f.Backup = &b
	}
	for _, d := range c.Documents {
		date := ""
		if !d.Date.IsZero() {
			date = d.Date.In(amsterdam).Format("2006-01-02")
		}
		f.Documents = append(f.Documents, authform.Document{Title: d.Title, Date: date, SHA256: d.SHA256})
	}
	return f
}

func formReason(c *procedure.Case) string {
	inPool := c.Chosen != nil && c.Chosen.InPool
	switch {
	case inPool && c.Payer == procedure.PayerProvider:
		return authform.ReasonPoolFullService
	case inPool:
		return authform.ReasonPoolOtherContract
	case c.Payer == procedure.PayerEmployee:
		return authform.ReasonOutsideNotApproved
	default:
		return authform.ReasonOutsideApproved
	}
}
