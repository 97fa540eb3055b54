package procedure

import "time"

// Effect is something the engine must do once the decision commits.
type Effect interface{ effectName() string }

// Mail asks the engine to send one mail from a template. Medical mail is
// only ever sent PGP-encrypted; without a usable key the recipient gets a
// content-free notice instead (the engine's pgpmime policy), never the text.
type Mail struct {
	Seq      int    // stable identity within the case (Message-ID)
	To       Role   // the recipient's role
	Email    string // the recipient's address
	Name     string
	Lang     string // "nl" or "en"
	Template string // templates/mail/<lang>/<Template>.tmpl
	// Medical marks content that may travel only encrypted: documents,
	// the advice, the physician's statements, the question.
	Medical bool
	// Documents are the SHA-256 of the documents to attach (encrypted).
	Documents []string
	// Advice attaches the advice documents (encrypted).
	Advice bool
	// Form attaches the current authorisation form (PDF).
	Form bool
	// Question is the question this mail asks; 0 for a notice. The reply
	// address carries a token for it.
	Question uint32
	// Reminder marks a reminder or notice (Auto-Submitted: auto-generated).
	Reminder bool
	// Data holds extra template values (reasons, counts).
	Data map[string]string
	// Disclosure is set on a mail that shares medical content: which
	// document hashes, under which consent. The engine records it in the
	// audit log when the mail really leaves (encrypted to a usable key),
	// and records it as withheld when it cannot.
	Disclosure *Disclosure
}

// RenderForm asks for the authorisation form to be rendered for the case
// as it is now (FormVersion) and stored beside the case.
type RenderForm struct{ Version int }

// SetDeadline sets one deadline of a step (replacing the same step+kind).
type SetDeadline struct{ Deadline }

// ClearDeadlines removes the deadlines of steps (all steps when empty).
type ClearDeadlines struct{ Steps []Step }

// Audit records an event in the case's hash-chained audit log.
type Audit struct {
	Event  string
	Detail string
}

// Disclosure describes one sharing of medical content.
type Disclosure struct {
	To        Role      `json:"to"`
	Email     string    `json:"email"`
	Documents []string  `json:"documents"` // SHA-256, hex
	Consent   string    `json:"consent"`   // which consent allowed it
	At        time.Time `json:"at"`
}

// Alert notifies the backoffice (notice mail and the quarantine/alert list).
type Alert struct{ Reason string }

// PurgeData deletes the case's documents, raw mail and personal data,
// leaving only the deletion record.
type PurgeData struct{}

func (Mail) effectName() string           { return "mail" }
func (RenderForm) effectName() string     { return "render form" }
func (SetDeadline) effectName() string    { return "set deadline" }
func (ClearDeadlines) effectName() string { return "clear deadlines" }
func (Audit) effectName() string          { return "audit" }
func (Alert) effectName() string          { return "alert" }
func (PurgeData) effectName() string      { return "purge" }
