package authform

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Form is everything the machtigingsformulier shows. It is the input of
// Render and, as JSON, of `secondopinion form CASE.json`
// (docs/form-json.md). Dates without a time of day are civil dates written
// YYYY-MM-DD.
type Form struct {
	// Ref is the case reference, e.g. "SO-2026-0042".
	Ref string `json:"ref"`
	// Date is when the form was made; it is printed on the form and is
	// the PDF creation date. It comes from the case's clock.
	Date time.Time `json:"date"`
	// Lang is "nl" (the default when empty) or "en".
	Lang string `json:"lang,omitempty"`
	// Provider is the second-opinion service that runs the procedure.
	Provider string `json:"provider"`
	// ReplyAddress is the case's reply address (local+TOKEN@domain).
	ReplyAddress string `json:"reply_address"`

	Employee          Employee   `json:"employee"`
	Employer          Employer   `json:"employer"`
	OriginalPhysician Physician  `json:"original_physician"`
	Chosen            Physician  `json:"chosen"`
	Backup            *Physician `json:"backup,omitempty"`

	// Subject is one of SubjectVerzuim, SubjectPAGOPMO, SubjectBeroepsziekte.
	Subject string `json:"subject"`
	// Question is the vraagstelling (the question put to the
	// second-opinion physician), as agreed with the original physician.
	Question string `json:"question"`
	// Documents are exactly the documents that will be shared.
	Documents []Document `json:"documents"`

	// Payer is PayerProvider, PayerEmployer or PayerEmployee and must
	// follow from PayerReason (the table in seed 001).
	Payer       string `json:"payer"`
	PayerReason string `json:"payer_reason"`

	// RetentionYears is how long the records are kept.
	RetentionYears int `json:"retention_years"`
}

// Employee is the werknemer who asks for the second opinion.
type Employee struct {
	Name string `json:"name"`
	// BirthDate is YYYY-MM-DD, or empty when not known.
	BirthDate string `json:"birth_date,omitempty"`
	// Email is the registered address consent must come from.
	Email string `json:"email"`
}

// Employer is the werkgever.
type Employer struct {
	Name string `json:"name"`
}

// Physician is a bedrijfsarts (occupational physician).
type Physician struct {
	Name       string `json:"name"`
	Arbodienst string `json:"arbodienst"`
	// InPool says whether the physician is in the Landelijke pool
	// bedrijfsartsen second opinion (LPBSO).
	InPool bool `json:"in_pool"`
}

// Document is one document to be shared.
type Document struct {
	Title string `json:"title"`
	// Date is YYYY-MM-DD.
	Date string `json:"date"`
	// SHA256 is the hex SHA-256 of the document's bytes (64 digits); the
	// form prints the first 16.
	SHA256 string `json:"sha256"`
}

// Subjects a second opinion may be about (seed 001).
const (
	SubjectVerzuim       = "verzuimbegeleiding"
	SubjectPAGOPMO       = "pago-pmo"
	SubjectBeroepsziekte = "beroepsziekte"
)

// Payers.
const (
	PayerProvider = "provider"
	PayerEmployer = "employer"
	PayerEmployee = "employee"
)

// Reasons for the payer: the rows of the cost table in seed 001.
const (
	// ReasonPoolFullService: physician in the LPBSO, employer has a
	// full-service contract with the provider; the provider pays.
	ReasonPoolFullService = "pool-full-service"
	// ReasonPoolOtherContract: physician in the LPBSO, another contract;
	// the employer pays.
	ReasonPoolOtherContract = "pool-other-contract"
	// ReasonOutsideApproved: physician outside the LPBSO, the employer
	// approved the costs; the employer pays.
	ReasonOutsideApproved = "outside-pool-approved"
	// ReasonOutsideNotApproved: physician outside the LPBSO without the
	// employer's approval; the employee pays.
	ReasonOutsideNotApproved = "outside-pool-not-approved"
)

// payerRule is the cost table: per reason, who pays and whether the chosen
// physician is in the pool.
var payerRule = map[string]struct {
	payer  string
	inPool bool
}{
	ReasonPoolFullService:    {PayerProvider, true},
	ReasonPoolOtherContract:  {PayerEmployer, true},
	ReasonOutsideApproved:    {PayerEmployer, false},
	ReasonOutsideNotApproved: {PayerEmployee, false},
}

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("invalid form")

// ValidationError lists every problem found in a Form, each prefixed with
// the JSON path of the field.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid form: " + strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Validate checks the form and returns a *ValidationError listing every
// problem, or nil. It checks the characters against the embedded font too,
// so a name that cannot be printed is refused rather than shown as boxes.
func (f *Form) Validate() error {
	f2 := f.normalized()
	return f2.validate()
}

// normalized returns a copy with all text in Unicode NFC (so "Nguyễn" typed
// with combining marks prints with the precomposed glyph), spaces trimmed
// and the hash in lower case.
func (f Form) normalized() Form {
	n := func(s string) string { return strings.TrimSpace(norm.NFC.String(s)) }
	f.Ref = n(f.Ref)
	f.Lang = strings.ToLower(n(f.Lang))
	if f.Lang == "" {
		f.Lang = "nl"
	}
	f.Provider = n(f.Provider)
	f.ReplyAddress = n(f.ReplyAddress)
	f.Employee = Employee{Name: n(f.Employee.Name), BirthDate: n(f.Employee.BirthDate), Email: n(f.Employee.Email)}
	f.Employer.Name = n(f.Employer.Name)
	np := func(p Physician) Physician {
		return Physician{Name: n(p.Name), Arbodienst: n(p.Arbodienst), InPool: p.InPool}
	}
	f.OriginalPhysician = np(f.OriginalPhysician)
	f.Chosen = np(f.Chosen)
	if f.Backup != nil {
		b := np(*f.Backup)
		f.Backup = &b
	}
	f.Subject = strings.ToLower(n(f.Subject))
	// The question keeps its line breaks; tabs become spaces and Windows
	// line ends plain ones.
	q := norm.NFC.String(f.Question)
	q = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\t", "    ").Replace(q)
	f.Question = strings.TrimSpace(q)
	docs := make([]Document, len(f.Documents))
	for i, d := range f.Documents {
		docs[i] = Document{Title: n(d.Title), Date: n(d.Date), SHA256: strings.ToLower(n(d.SHA256))}
	}
	f.Documents = docs
	f.Payer = strings.ToLower(n(f.Payer))
	f.PayerReason = strings.ToLower(n(f.PayerReason))
	return f
}

// Limits that keep a form a form.
const (
	maxLine     = 200   // a name, title or address
	maxQuestion = 10000 // characters
	maxDocs     = 500
)

func (f *Form) validate() error {
	var p []string
	add := func(field, format string, args ...any) {
		p = append(p, field+": "+fmt.Sprintf(format, args...))
	}
	line := func(field, s string, required bool) {
		switch {
		case s == "":
			if required {
				add(field, "missing")
			}
			return
		case len([]rune(s)) > maxLine:
			add(field, "longer than %d characters", maxLine)
		}
		for _, r := range s {
			if unicode.IsControl(r) {
				add(field, "contains control character %U", r)
				return
			}
		}
		if r, ok := unprintable(s); ok {
			add(field, "character %q (%U) is not in the form's font", r, r)
		}
	}
	date := func(field, s string, required bool) {
		if s == "" {
			if required {
				add(field, "missing")
			}
			return
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			add(field, "want a date YYYY-MM-DD, got %q", s)
		}
	}
	email := func(field, s string) {
		line(field, s, true)
		if s != "" && (strings.Count(s, "@") != 1 || strings.HasPrefix(s, "@") || strings.HasSuffix(s, "@") || strings.ContainsAny(s, " <>")) {
			add(field, "not an e-mail address: %q", s)
		}
	}
	physician := func(field string, ph Physician) {
		line(field+".name", ph.Name, true)
		line(field+".arbodienst", ph.Arbodienst, true)
	}

	line("ref", f.Ref, true)
	if f.Date.IsZero() {
		add("date", "missing")
	}
	if _, ok := languages[f.Lang]; !ok {
		add("lang", "want nl or en, got %q", f.Lang)
	}
	line("provider", f.Provider, true)
	email("reply_address", f.ReplyAddress)
	line("employee.name", f.Employee.Name, true)
	date("employee.birth_date", f.Employee.BirthDate, false)
	email("employee.email", f.Employee.Email)
	line("employer.name", f.Employer.Name, true)
	physician("original_physician", f.OriginalPhysician)
	physician("chosen", f.Chosen)
	// Independence (Arbobesluit art. 2.14d): the second opinion comes from
	// a physician of another arbodienst than the original physician's.
	independent := func(field string, ph Physician) {
		if ph.Arbodienst != "" && strings.EqualFold(ph.Arbodienst, f.OriginalPhysician.Arbodienst) {
			add(field+".arbodienst", "same arbodienst as the original physician (%q); a second opinion must be independent", ph.Arbodienst)
		}
	}
	independent("chosen", f.Chosen)
	if f.Backup != nil {
		physician("backup", *f.Backup)
		independent("backup", *f.Backup)
	}
	switch f.Subject {
	case SubjectVerzuim, SubjectPAGOPMO, SubjectBeroepsziekte:
	case "":
		add("subject", "missing")
	default:
		add("subject", "want %s, %s or %s, got %q", SubjectVerzuim, SubjectPAGOPMO, SubjectBeroepsziekte, f.Subject)
	}
	switch {
	case f.Question == "":
		add("question", "missing")
	case len([]rune(f.Question)) > maxQuestion:
		add("question", "longer than %d characters", maxQuestion)
	}
	for _, r := range f.Question {
		if r != '\n' && unicode.IsControl(r) {
			add("question", "contains control character %U", r)
			break
		}
	}
	if r, ok := unprintable(strings.ReplaceAll(f.Question, "\n", "")); ok {
		add("question", "character %q (%U) is not in the form's font", r, r)
	}
	if len(f.Documents) > maxDocs {
		add("documents", "more than %d documents", maxDocs)
	}
	seen := make(map[string]int)
	for i, d := range f.Documents {
		field := fmt.Sprintf("documents[%d]", i)
		line(field+".title", d.Title, true)
		date(field+".date", d.Date, true)
		switch b, err := hex.DecodeString(d.SHA256); {
		case d.SHA256 == "":
			add(field+".sha256", "missing")
		case err != nil || len(b) != 32:
			add(field+".sha256", "want 64 hexadecimal digits, got %q", d.SHA256)
		default:
			if j, dup := seen[d.SHA256]; dup {
				add(field+".sha256", "same document as documents[%d]", j)
			}
			seen[d.SHA256] = i
		}
	}
	rule, known := payerRule[f.PayerReason]
	switch {
	case f.PayerReason == "":
		add("payer_reason", "missing")
	case !known:
		add("payer_reason", "want %s, %s, %s or %s, got %q", ReasonPoolFullService, ReasonPoolOtherContract, ReasonOutsideApproved, ReasonOutsideNotApproved, f.PayerReason)
	}
	switch f.Payer {
	case PayerProvider, PayerEmployer, PayerEmployee:
		if known && rule.payer != f.Payer {
			add("payer", "%s pays when the reason is %s, not %s", rule.payer, f.PayerReason, f.Payer)
		}
	case "":
		add("payer", "missing")
	default:
		add("payer", "want %s, %s or %s, got %q", PayerProvider, PayerEmployer, PayerEmployee, f.Payer)
	}
	if known && rule.inPool != f.Chosen.InPool {
		add("payer_reason", "%s does not fit chosen.in_pool = %v", f.PayerReason, f.Chosen.InPool)
	}
	if f.RetentionYears < 1 || f.RetentionYears > 100 {
		add("retention_years", "want 1 to 100, got %d", f.RetentionYears)
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}
