package engine

import (
	"time"

	"secondopinion/internal/procedure"
)

// MailData is what every mail template receives (templates/mail/<lang>/*.tmpl).
// Medical fields (Question, Data["reason"] of a refusal) are filled only
// for mail that travels PGP-encrypted; in every other mail they are empty,
// so a template cannot leak them by accident.
type MailData struct {
	Ref      string // case reference, SO-2026-0042
	Lang     string // nl or en
	Template string
	// Reminder is true for reminders and notices.
	Reminder bool
	// Medical is true when the mail travels encrypted.
	Medical bool

	To      Party // the recipient
	Service Service

	Employee          Party
	Employer          Party
	OriginalPhysician Party
	Chosen            *Option // the chosen second-opinion physician
	Backup            *Option

	Subject string // verzuimbegeleiding, pago-pmo, beroepsziekte, …
	// Question is the vraagstelling; empty unless Medical.
	Question        string
	EarlierRequests int
	// Earlier says what became of them.
	Earlier procedure.Earlier

	// Proposed are the physicians of a proposal, numbered from 1.
	Proposed []Option

	Payer       string // provider, employer, employee
	PayerReason string

	// Documents are the documents on the form (titles only in medical mail).
	Documents []Doc

	// ChoiceWithin is the employee's time to choose a physician
	// (policy.choice_deadline); ConsultWorkdays the target for the consult
	// in working days (policy.consult_workdays).
	ChoiceWithin    time.Duration
	ConsultWorkdays int

	// AnswerBy is when an answer is expected (zero when none).
	AnswerBy      time.Time
	ConsultTarget time.Time
	ConsultAt     time.Time

	// FeedbackPhysician/FeedbackEmployer: what the employee consented to.
	FeedbackAnswered  bool
	FeedbackPhysician bool
	FeedbackEmployer  bool
	NoAdvice          bool
	Outcome           string

	// Data holds the effect's extra values, e.g. "missing" (comma-separated
	// field names), "party", "reason", "step", "kind", "physician", "name".
	Data map[string]string
}

// Party is a person or organisation in a mail.
type Party struct {
	Name       string
	Email      string
	Role       procedure.Role
	Arbodienst string
}

// Option is a physician as offered to the employee.
type Option struct {
	N           int // 1-based number in the proposal
	Name        string
	Arbodienst  string // name of the arbodienst
	InPool      bool   // member of the LPBSO
	Payer       string // who pays when this one is chosen
	PayerReason string
}

// Doc is a document on the form.
type Doc struct {
	Title  string
	Date   time.Time
	Short  string // first 16 hex digits of the SHA-256
	SHA256 string
}

// Service describes the sender.
type Service struct {
	Name       string // display name
	Provider   string // the provider's name
	Address    string // so@domain
	Backoffice string // backoffice address
}
