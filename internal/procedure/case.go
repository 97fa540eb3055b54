package procedure

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// State is where a case stands. Waiting states name whom the case waits for.
type State string

const (
	StateIncomplete       State = "incomplete"        // waiting for missing request fields
	StateIntake           State = "intake"            // waiting for the original physician
	StateChoosing         State = "choosing"          // waiting for the employee's choice (48 h)
	StateEmployerApproval State = "employer_approval" // waiting for the employer to approve costs
	StateAuthorising      State = "authorising"       // waiting for the signatures on the form
	StateChecking         State = "checking"          // waiting for the backoffice check
	StateAccepting        State = "accepting"         // waiting for the SO physician to accept
	StatePlanning         State = "planning"          // accepted, waiting for the consult date
	StateAdvising         State = "advising"          // consult planned, waiting for the advice
	StateFeedback         State = "feedback"          // waiting for the employee's feedback consent

	StateCompleted  State = "completed"
	StateWithdrawn  State = "withdrawn"
	StateRefused    State = "refused"      // refused by the original physician
	StateOutOfScope State = "out_of_scope" // aanstellingskeuring, UWV deskundigenoordeel
	StateReferred   State = "referred"     // employer contracts another party
	StatePurged     State = "purged"       // retention ended; only the deletion record remains
)

// Final reports whether no further step can follow (except the purge).
func (s State) Final() bool {
	switch s {
	case StateCompleted, StateWithdrawn, StateRefused, StateOutOfScope, StateReferred, StatePurged:
		return true
	}
	return false
}

// States lists every state, waiting states first, in procedure order.
var States = []State{
	StateIncomplete, StateIntake, StateChoosing, StateEmployerApproval, StateAuthorising,
	StateChecking, StateAccepting, StatePlanning, StateAdvising, StateFeedback,
	StateCompleted, StateWithdrawn, StateRefused, StateOutOfScope, StateReferred, StatePurged,
}

// Role is a participant of the procedure.
type Role string

const (
	RoleEmployee   Role = "employee"   // werknemer, who asks for the second opinion
	RolePhysician  Role = "physician"  // eigen bedrijfsarts, the original physician
	RoleSO         Role = "so"         // the second-opinion physician
	RoleEmployer   Role = "employer"   // werkgever
	RoleBackoffice Role = "backoffice" // the service's own staff
)

// Subject is what the disputed advice was about.
type Subject string

const (
	SubjectVerzuim       Subject = "verzuimbegeleiding"     // sickness-absence guidance
	SubjectPAGO          Subject = "pago-pmo"               // periodic occupational health examination
	SubjectBeroepsziekte Subject = "beroepsziekte"          // suspected occupational disease
	SubjectKeuring       Subject = "aanstellingskeuring"    // out of scope: herkeuring route
	SubjectUWV           Subject = "uwv-deskundigenoordeel" // out of scope: UWV route
)

// InScope reports whether a second opinion can be given on the subject.
func (s Subject) InScope() bool {
	return s == SubjectVerzuim || s == SubjectPAGO || s == SubjectBeroepsziekte
}

// Known reports whether the subject is one the procedure recognises.
func (s Subject) Known() bool { return s.InScope() || s == SubjectKeuring || s == SubjectUWV }

// Contract is the employer's kind of contract with the provider.
type Contract string

const (
	ContractFullService Contract = "full_service" // the provider pays for pool physicians
	ContractOther       Contract = "other"
	ContractNone        Contract = "none"
)

// Payer is who pays for the second opinion.
type Payer string

const (
	PayerProvider Payer = "provider"
	PayerEmployer Payer = "employer"
	PayerEmployee Payer = "employee"
)

// Person is an employee as the case knows them.
type Person struct {
	Name        string `json:"name"`
	Email       string `json:"email"`
	DateOfBirth string `json:"date_of_birth,omitempty"` // YYYY-MM-DD when known
	Lang        string `json:"lang,omitempty"`          // "nl" (default) or "en"
}

// Employer is the employee's employer as the registry knows it.
type Employer struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Contract    Contract `json:"contract"`
	SOParty     string   `json:"so_party,omitempty"` // another contracted second-opinion party
	NoticeEmail string   `json:"notice_email"`
	Lang        string   `json:"lang,omitempty"`
}

// Physician is a physician as the registry knows them.
type Physician struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Email      string `json:"email"`
	Arbodienst string `json:"arbodienst"`     // id of the occupational health service
	InPool     bool   `json:"in_pool"`        // member of the LPBSO pool
	Lang       string `json:"lang,omitempty"` // preferred mail language
}

// Document is a medical document the original physician supplied. Only its
// description lives in the case; the bytes are stored encrypted.
type Document struct {
	Title  string    `json:"title"`
	Date   time.Time `json:"date"`
	SHA256 string    `json:"sha256"` // hex
	Size   int64     `json:"size"`
	Name   string    `json:"name,omitempty"` // file name as received
}

// Approval is a yes/no decision that may still be pending.
type Approval string

const (
	ApprovalNone     Approval = ""
	ApprovalPending  Approval = "pending"
	ApprovalApproved Approval = "approved"
	ApprovalDeclined Approval = "declined"
)

// Question is something the case asked a role by mail. Replies are matched
// to it by the reply token; a closed question accepts no more answers.
type Question struct {
	ID    uint32    `json:"id"`
	Kind  Kind      `json:"kind"`
	Role  Role      `json:"role"`
	Email string    `json:"email"`
	Step  Step      `json:"step"`
	Asked time.Time `json:"asked"`
	Open  bool      `json:"open"`
}

// Kind is the kind of answer a question expects; the reply parser reads a
// reply for that kind only.
type Kind string

const (
	KindRequest  Kind = "request"  // the fill-in request template
	KindIntake   Kind = "intake"   // confirm the vraagstelling, or refuse
	KindChoice   Kind = "choice"   // choose among proposed physicians
	KindYesNo    Kind = "yesno"    // approval, signature, acceptance
	KindDateTime Kind = "datetime" // consult date
	KindAdvice   Kind = "advice"   // the advice, or no substantive advice
	KindConsent  Kind = "consent"  // feedback consent: own physician, employer
)

// Deadline is a moment at which the case acts by itself on a waiting step.
type Deadline struct {
	Step Step         `json:"step"`
	Kind DeadlineKind `json:"kind"`
	Due  time.Time    `json:"due"`
}

// Consent records an agreement given by a role.
type Consent struct {
	At  time.Time `json:"at"`
	Via string    `json:"via"` // "reply", "signed scan", "pgp-signed reply", "backoffice"
}

// Case is one second-opinion request from start to purge.
type Case struct {
	ID      int64  `json:"id"`
	Ref     string `json:"ref"` // SO-2026-0042
	Version int64  `json:"version"`
	State   State  `json:"state"`
	// Lang is the employee's language for mail: "nl" or "en".
	Lang      string    `json:"lang"`
	CreatedAt time.Time `json:"created_at"`
	ClosedAt  time.Time `json:"closed_at,omitzero"`

	RequestedBy       Role      `json:"requested_by"` // employee or employer
	Employee          Person    `json:"employee"`
	Employer          Employer  `json:"employer"`
	OriginalPhysician Physician `json:"original_physician"`
	Subject           Subject   `json:"subject"`
	// Vraagstelling: the question the second opinion must answer, as the
	// employee put it and the original physician confirmed it.
	Question          string  `json:"question"`
	QuestionConfirmed bool    `json:"question_confirmed"`
	EarlierRequests   int     `json:"earlier_requests"` // Earlier.Total()
	Earlier           Earlier `json:"earlier,omitzero"`
	MissingAsked      bool    `json:"missing_asked,omitempty"`

	Proposed []Physician `json:"proposed,omitempty"`
	Chosen   *Physician  `json:"chosen,omitempty"`
	Backup   *Physician  `json:"backup,omitempty"`
	// Declined lists physicians who declined or were unavailable.
	Declined []string `json:"declined,omitempty"`

	EmployerApproval Approval `json:"employer_approval,omitempty"`
	// EmployerKnows is true once the employer may know of the procedure:
	// they made the request, or the employee consented.
	EmployerKnows bool   `json:"employer_knows"`
	Payer         Payer  `json:"payer,omitempty"`
	PayerReason   string `json:"payer_reason,omitempty"`

	Documents []Document `json:"documents,omitempty"`
	// FormVersion counts rendered forms; consents refer to one version.
	FormVersion int `json:"form_version,omitempty"`
	// Authorised holds the SHA-256 of the documents on the form the employee
	// consented to: the only documents that may be forwarded.
	Authorised      []string  `json:"authorised,omitempty"`
	EmployeeConsent *Consent  `json:"employee_consent,omitempty"`
	PhysicianCosign *Consent  `json:"physician_cosign,omitempty"`
	AuthorisedAt    time.Time `json:"authorised_at,omitzero"`
	ConsultTarget   time.Time `json:"consult_target,omitzero"`

	AcceptedAt time.Time `json:"accepted_at,omitzero"`
	ConsultAt  time.Time `json:"consult_at,omitzero"`
	Forwarded  bool      `json:"forwarded"`
	WaitingKey string    `json:"waiting_key,omitempty"` // address whose key is missing
	// Withheld are medical mails that could not be encrypted for their
	// recipient; they are sent when a usable key is imported.
	Withheld []Mail     `json:"withheld,omitempty"`
	Advice   []Document `json:"advice,omitempty"`
	NoAdvice bool       `json:"no_advice,omitempty"` // no substantive advice follows
	AdviceAt time.Time  `json:"advice_at,omitzero"`

	FeedbackAnswered  bool `json:"feedback_answered"`
	FeedbackPhysician bool `json:"feedback_physician"`
	FeedbackEmployer  bool `json:"feedback_employer"`

	Outcome   string     `json:"outcome,omitempty"` // reason of a final state
	Questions []Question `json:"questions,omitempty"`
	Deadlines []Deadline `json:"deadlines,omitempty"`
	// Seq numbers effects over the case's life, so that every outgoing mail
	// gets a stable identity (its Message-ID derives from Ref and Seq).
	Seq int `json:"seq"`
}

// RefFor formats a case reference from the year and a serial number.
func RefFor(year int, serial int64) string { return fmt.Sprintf("SO-%d-%04d", year, serial) }

// OpenQuestion returns the open question with the given id, if any.
func (c *Case) OpenQuestion(id uint32) (Question, bool) {
	for _, q := range c.Questions {
		if q.ID == id && q.Open {
			return q, true
		}
	}
	return Question{}, false
}

// NextDeadline returns the earliest deadline of the case, if any.
func (c *Case) NextDeadline() (Deadline, bool) {
	var best Deadline
	found := false
	for _, d := range c.Deadlines {
		if !found || d.Due.Before(best.Due) {
			best, found = d, true
		}
	}
	return best, found
}

// WaitingOn names the role the case waits for in its current state.
func (c *Case) WaitingOn() Role {
	switch c.State {
	case StateIncomplete, StateChoosing, StateFeedback:
		if c.State == StateIncomplete && c.RequestedBy == RoleEmployer {
			return RoleEmployer
		}
		return RoleEmployee
	case StateIntake:
		return RolePhysician
	case StateEmployerApproval:
		return RoleEmployer
	case StateAuthorising:
		if c.EmployeeConsent == nil {
			return RoleEmployee
		}
		return RolePhysician
	case StateChecking:
		return RoleBackoffice
	case StateAccepting, StatePlanning, StateAdvising:
		if c.WaitingKey != "" {
			return RoleBackoffice
		}
		return RoleSO
	}
	return ""
}

// isAuthorised reports whether a document may be forwarded.
func (c *Case) isAuthorised(sha string) bool {
	if c.EmployeeConsent == nil || c.PhysicianCosign == nil {
		return false
	}
	for _, a := range c.Authorised {
		if a == sha {
			return true
		}
	}
	return false
}

// clone returns a deep copy, so Decide never changes its argument.
func (c *Case) clone() *Case {
	n := *c
	n.Proposed = append([]Physician(nil), c.Proposed...)
	n.Declined = append([]string(nil), c.Declined...)
	n.Documents = append([]Document(nil), c.Documents...)
	n.Authorised = append([]string(nil), c.Authorised...)
	n.Advice = append([]Document(nil), c.Advice...)
	n.Questions = append([]Question(nil), c.Questions...)
	n.Deadlines = append([]Deadline(nil), c.Deadlines...)
	n.Withheld = append([]Mail(nil), c.Withheld...)
	if c.Chosen != nil {
		p := *c.Chosen
		n.Chosen = &p
	}
	if c.Backup != nil {
		p := *c.Backup
		n.Backup = &p
	}
	if c.EmployeeConsent != nil {
		x := *c.EmployeeConsent
		n.EmployeeConsent = &x
	}
	if c.PhysicianCosign != nil {
		x := *c.PhysicianCosign
		n.PhysicianCosign = &x
	}
	return &n
}

// declined reports whether the physician with address email declined this
// case (or did not answer in time).
func (c *Case) declined(email string) bool {
	return slices.ContainsFunc(c.Declined, func(e string) bool { return strings.EqualFold(e, email) })
}
