package procedure

import (
	"fmt"
	"time"
)

// Input is anything that can move a case: an answer from a role, a
// document delivery, a deadline, a backoffice command.
type Input interface{ inputName() string }

// Request opens a case (or completes an incomplete one). The engine fills
// it from a request mail and the registry.
type Request struct {
	From              Role // employee, or employer on the employee's behalf
	Employee          Person
	Employer          *Employer  // nil when unknown
	OriginalPhysician *Physician // nil when unknown
	Subject           Subject    // "" when not stated
	Question          string     // the employee's question, may be empty
	Earlier           Earlier    // what became of the employee's earlier requests
}

// Earlier is what became of an employee's earlier requests for a second
// opinion, for the original physician, who may refuse for repeated use
// (seed 001). A request that was out of scope (an aanstellingskeuring, an
// UWV deskundigenoordeel) asked for no second opinion and is not counted.
type Earlier struct {
	Completed int `json:"completed,omitempty"`
	Open      int `json:"open,omitempty"`
	Withdrawn int `json:"withdrawn,omitempty"`
	Refused   int `json:"refused,omitempty"` // by the original physician
	// Other were referred to the employer's own second-opinion party, or
	// purged at the end of their retention.
	Other int `json:"other,omitempty"`
}

// Total is the number of earlier requests.
func (e Earlier) Total() int { return e.Completed + e.Open + e.Withdrawn + e.Refused + e.Other }

// Outcomes lists what became of earlier requests: each outcome that
// occurred, with its count, in a fixed order. name gives an outcome's
// words in the reader's language; its key is one of completed, open,
// withdrawn, refused and other.
func (e Earlier) Outcomes(name func(key string) string) []string {
	var out []string
	for _, o := range [...]struct {
		n   int
		key string
	}{{e.Completed, "completed"}, {e.Open, "open"}, {e.Withdrawn, "withdrawn"}, {e.Refused, "refused"}, {e.Other, "other"}} {
		if o.n > 0 {
			out = append(out, fmt.Sprintf("%d %s", o.n, name(o.key)))
		}
	}
	return out
}

// Count adds a case in state s to what became of earlier requests; a case
// out of scope is not a request for a second opinion and is left out.
func (e *Earlier) Count(s State, n int) {
	switch {
	case s == StateCompleted:
		e.Completed += n
	case s == StateWithdrawn:
		e.Withdrawn += n
	case s == StateRefused:
		e.Refused += n
	case s == StateOutOfScope:
	case s == StateReferred || s == StatePurged:
		e.Other += n
	default:
		e.Open += n
	}
}

// IntakeAnswer is the original physician's answer to the intake: the
// confirmed (possibly reworded) vraagstelling with documents, or a refusal
// for weighty reasons.
type IntakeAnswer struct {
	Refuse    bool
	Reason    string // why refused
	Question  string // the confirmed question; empty keeps the employee's
	Documents []Document
	// Candidates are the physicians the engine found in the registry for
	// the proposal; the procedure keeps only the independent ones.
	Candidates []Physician
}

// Documents delivers (further) documents from the original physician.
// Candidates are as in IntakeAnswer: the proposal's physicians, when these
// documents complete an intake whose question was confirmed without them.
type Documents struct {
	Documents  []Document
	Candidates []Physician
}

// Choice is the employee's choice among the proposed physicians: Index
// (1-based) into the proposal, or Other, a physician the employee named who
// was not proposed. Backup is an optional second choice (1-based, 0: none).
type Choice struct {
	Index  int
	Other  *Physician
	Backup int
}

// Propose is the backoffice's own proposal (replacing any earlier one).
type Propose struct{ Physicians []Physician }

// EmployerApproval is the employer's answer on costs outside the pool.
type EmployerApproval struct{ Approved bool }

// Signature is a signature on the authorisation form: the employee's
// consent or the original physician's co-signature.
type Signature struct {
	Role   Role
	Agreed bool
	Via    string // "reply", "signed scan", "pgp-signed reply"
}

// Acceptance is the SO physician's answer to the request to take the case.
type Acceptance struct {
	Accept    bool
	ConsultAt time.Time // may be zero: asked for separately
	Reason    string
	// KeyUsable tells whether the physician has a usable PGP key now; the
	// engine judges the key at the moment of use.
	KeyUsable bool
}

// ConsultDate is the consult date the SO physician planned.
type ConsultDate struct{ At time.Time }

// KeyAvailable tells that a usable key was imported for an address.
type KeyAvailable struct{ Email string }

// KeyMissing tells that a medical mail of an earlier decision could not be
// encrypted for its recipient (no usable key at the moment of sending):
// the recipient got a content-free notice instead. The case keeps the mail
// and sends it when a usable key is imported.
type KeyMissing struct {
	Mail   Mail
	Reason string
}

// Advice is the SO physician's advice, or the statement that no substantive
// advice follows.
type Advice struct {
	NoSubstantive bool
	Documents     []Document
}

// Feedback is the employee's written consent on sharing the advice.
type Feedback struct{ Physician, Employer bool }

// Unclear is an answer that could not be read for its question; the sender
// gets a polite follow-up question. The message itself is kept by the engine.
type Unclear struct {
	Role     Role
	Question uint32
	Why      string
}

// Withdraw ends the case at the employee's wish (by mail or backoffice).
type Withdraw struct {
	By     Role
	Reason string
}

// Approve is the backoffice's check of a complete authorisation.
type Approve struct{}

// DeadlineReached fires a case's deadline.
type DeadlineReached struct {
	Step Step
	Kind DeadlineKind
}

// Purge ends the retention period.
type Purge struct{}

func (Request) inputName() string          { return "request" }
func (IntakeAnswer) inputName() string     { return "intake answer" }
func (Documents) inputName() string        { return "documents" }
func (Choice) inputName() string           { return "choice" }
func (Propose) inputName() string          { return "proposal" }
func (EmployerApproval) inputName() string { return "employer approval" }
func (Signature) inputName() string        { return "signature" }
func (Acceptance) inputName() string       { return "acceptance" }
func (ConsultDate) inputName() string      { return "consult date" }
func (KeyAvailable) inputName() string     { return "key available" }
func (KeyMissing) inputName() string       { return "key missing" }
func (Advice) inputName() string           { return "advice" }
func (Feedback) inputName() string         { return "feedback consent" }
func (Unclear) inputName() string          { return "unclear answer" }
func (Withdraw) inputName() string         { return "withdrawal" }
func (Approve) inputName() string          { return "backoffice approval" }
func (DeadlineReached) inputName() string  { return "deadline" }
func (Purge) inputName() string            { return "purge" }
