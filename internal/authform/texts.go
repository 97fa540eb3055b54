package authform

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// languages are the form languages; each has form/<lang>.yaml.
var languages = map[string]struct{}{"nl": {}, "en": {}}

// rawTexts is form/<lang>.yaml. Every string is a text/template over view.
type rawTexts struct {
	Lang   string   `yaml:"lang"`
	Logo   string   `yaml:"logo"`
	Title  string   `yaml:"title"`
	Header string   `yaml:"header"`
	Page   string   `yaml:"page"`
	Months []string `yaml:"months"`
	Intro  string   `yaml:"intro"`
	Labels struct {
		Employee    string `yaml:"employee"`
		Employer    string `yaml:"employer"`
		Original    string `yaml:"original"`
		Chosen      string `yaml:"chosen"`
		Backup      string `yaml:"backup"`
		Born        string `yaml:"born"`
		InPool      string `yaml:"in_pool"`
		OutsidePool string `yaml:"outside_pool"`
		NoBackup    string `yaml:"no_backup"`
		Subject     string `yaml:"subject"`
		Question    string `yaml:"question"`
	} `yaml:"labels"`
	Sections struct {
		Parties       string `yaml:"parties"`
		Question      string `yaml:"question"`
		Documents     string `yaml:"documents"`
		Costs         string `yaml:"costs"`
		Authorisation string `yaml:"authorisation"`
		Signatures    string `yaml:"signatures"`
		Return        string `yaml:"return"`
	} `yaml:"sections"`
	Subjects  map[string]string `yaml:"subjects"`
	Documents struct {
		Columns   []string `yaml:"columns"`
		Only      string   `yaml:"only"`
		OnlyOne   string   `yaml:"only_one"`
		None      string   `yaml:"none"`
		Workplace string   `yaml:"workplace"`
	} `yaml:"documents"`
	Costs struct {
		Payers  map[string]string `yaml:"payers"`
		Reasons map[string]string `yaml:"reasons"`
		Summary string            `yaml:"summary"`
	} `yaml:"costs"`
	Authorisation struct {
		Text   string   `yaml:"text"`
		Points []string `yaml:"points"`
	} `yaml:"authorisation"`
	Signatures struct {
		Employee  string `yaml:"employee"`
		Original  string `yaml:"original"`
		Name      string `yaml:"name"`
		Place     string `yaml:"place"`
		Date      string `yaml:"date"`
		Signature string `yaml:"signature"`
	} `yaml:"signatures"`
	Return []string `yaml:"return"`
}

// view is what the templates see. All values are already formatted.
type view struct {
	Ref, Date, Provider, Reply         string
	Employee, EmployeeEmail, BirthDate string
	Employer                           string
	Original, Chosen, Backup           string // "name (arbodienst)"; Backup may be empty
	Subject                            string
	Documents, RetentionYears          int
	Payer, Reason                      string
	Page, Pages                        int
}

// texts is one language's compiled wording.
type texts struct {
	months [12]string
	logo   []byte // PNG or JPEG, or nil
	logoTp string // "PNG" or "JPG"
	tmpl   map[string]*template.Template
	points int // number of authorisation points
	ret    int // number of return paragraphs
}

// exec fills the template named by its YAML path.
func (t *texts) exec(name string, v *view) (string, error) {
	tp, ok := t.tmpl[name]
	if !ok {
		return "", fmt.Errorf("no text %s", name)
	}
	var b bytes.Buffer
	if err := tp.Execute(&b, v); err != nil {
		return "", fmt.Errorf("text %s: %w", name, err)
	}
	return strings.TrimSpace(b.String()), nil
}

// loadTexts reads form/<lang>.yaml from fsys (laid out like the
// templates directory) and compiles every string, checking that each one
// runs against a sample view and prints in the form's font.
func loadTexts(fsys fs.FS, lang string) (*texts, error) {
	name := path.Join("form", lang+".yaml")
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("form texts: %w", err)
	}
	var raw rawTexts
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	t := &texts{tmpl: make(map[string]*template.Template)}
	var problems []string
	bad := func(key, format string, args ...any) {
		problems = append(problems, name+": "+key+": "+fmt.Sprintf(format, args...))
	}
	sample := &view{Ref: "SO-0000-0000", Date: "1 x 2000", Provider: "P", Reply: "r@example.org", Employee: "E",
		EmployeeEmail: "e@example.org", BirthDate: "1 x 1970", Employer: "W", Original: "O (A)", Chosen: "C (B)",
		Backup: "D (C)", Subject: "s", Documents: 2, RetentionYears: 20, Payer: "p", Reason: "r", Page: 1, Pages: 2}
	add := func(key, s string) {
		if strings.TrimSpace(s) == "" {
			bad(key, "missing")
			return
		}
		tp, err := template.New(key).Option("missingkey=error").Parse(s)
		if err != nil {
			bad(key, "%v", err)
			return
		}
		var out bytes.Buffer
		if err := tp.Execute(&out, sample); err != nil {
			bad(key, "%v", err)
			return
		}
		if r, ok := unprintable(strings.ReplaceAll(out.String(), "\n", " ")); ok {
			bad(key, "character %q (%U) is not in the form's font", r, r)
			return
		}
		t.tmpl[key] = tp
	}
	if raw.Lang != lang {
		bad("lang", "want %q, got %q", lang, raw.Lang)
	}
	if len(raw.Months) != 12 {
		bad("months", "want 12 names, got %d", len(raw.Months))
	} else {
		for i, m := range raw.Months {
			add(fmt.Sprintf("months[%d]", i), m)
			t.months[i] = m
		}
	}
	add("title", raw.Title)
	add("header", raw.Header)
	add("page", raw.Page)
	add("intro", raw.Intro)
	l := raw.Labels
	for k, v := range map[string]string{
		"employee": l.Employee, "employer": l.Employer, "original": l.Original, "chosen": l.Chosen,
		"backup": l.Backup, "born": l.Born, "in_pool": l.InPool, "outside_pool": l.OutsidePool,
		"no_backup": l.NoBackup, "subject": l.Subject, "question": l.Question,
	} {
		add("labels."+k, v)
	}
	s := raw.Sections
	for k, v := range map[string]string{
		"parties": s.Parties, "question": s.Question, "documents": s.Documents, "costs": s.Costs,
		"authorisation": s.Authorisation, "signatures": s.Signatures, "return": s.Return,
	} {
		add("sections."+k, v)
	}
	for _, k := range []string{SubjectVerzuim, SubjectPAGOPMO, SubjectBeroepsziekte} {
		add("subjects."+k, raw.Subjects[k])
	}
	if len(raw.Documents.Columns) != 4 {
		bad("documents.columns", "want 4 column titles, got %d", len(raw.Documents.Columns))
	} else {
		for i, c := range raw.Documents.Columns {
			add(fmt.Sprintf("documents.columns[%d]", i), c)
		}
	}
	add("documents.only", raw.Documents.Only)
	add("documents.only_one", raw.Documents.OnlyOne)
	add("documents.none", raw.Documents.None)
	add("documents.workplace", raw.Documents.Workplace)
	for _, k := range []string{PayerProvider, PayerEmployer, PayerEmployee} {
		add("costs.payers."+k, raw.Costs.Payers[k])
	}
	for k := range payerRule {
		add("costs.reasons."+k, raw.Costs.Reasons[k])
	}
	add("costs.summary", raw.Costs.Summary)
	add("authorisation.text", raw.Authorisation.Text)
	for i, p := range raw.Authorisation.Points {
		add(fmt.Sprintf("authorisation.points[%d]", i), p)
	}
	t.points = len(raw.Authorisation.Points)
	g := raw.Signatures
	for k, v := range map[string]string{
		"employee": g.Employee, "original": g.Original, "name": g.Name, "place": g.Place,
		"date": g.Date, "signature": g.Signature,
	} {
		add("signatures."+k, v)
	}
	if len(raw.Return) == 0 {
		bad("return", "missing")
	}
	for i, p := range raw.Return {
		add(fmt.Sprintf("return[%d]", i), p)
	}
	t.ret = len(raw.Return)
	if raw.Logo != "" {
		logo, err := fs.ReadFile(fsys, raw.Logo)
		switch ext := strings.ToLower(path.Ext(raw.Logo)); {
		case err != nil:
			bad("logo", "%v", err)
		case ext == ".png":
			t.logo, t.logoTp = logo, "PNG"
		case ext == ".jpg" || ext == ".jpeg":
			t.logo, t.logoTp = logo, "JPG"
		default:
			bad("logo", "want a .png or .jpg file, got %q", raw.Logo)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("form texts: %s", strings.Join(problems, "; "))
	}
	return t, nil
}
