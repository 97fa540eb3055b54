package message

import (
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var caseRefRE = regexp.MustCompile(`\[(SO-\d{4}-\d{4,})\]`)

// CaseRef returns the case reference in a subject's tag ("[SO-2026-0042]"
// gives "SO-2026-0042"), or "" when there is none.
func CaseRef(subject string) string {
	if m := caseRefRE.FindStringSubmatch(strings.ToUpper(subject)); m != nil {
		return m[1]
	}
	return ""
}

// Report is the summary of an inbound message the backoffice sees (the
// JSON that "secondopinion inspect" prints) and the golden form the parser
// tests compare.
type Report struct {
	MessageID        string        `json:"message_id"`
	From             string        `json:"from"`
	FromName         string        `json:"from_name,omitempty"`
	Subject          string        `json:"subject"`
	Recipients       []string      `json:"recipients"`
	CaseRef          *string       `json:"case_ref"`
	AutoReply        bool          `json:"auto_reply"`
	AutoReplyReason  string        `json:"auto_reply_reason,omitempty"`
	Bounce           bool          `json:"bounce"`
	FailedRecipients []string      `json:"failed_recipients,omitempty"`
	Encrypted        bool          `json:"encrypted"`
	HTML             bool          `json:"html,omitempty"`
	ReplyText        string        `json:"reply_text"`
	Attachments      []Attachment  `json:"attachments"`
	Forwarded        []string      `json:"forwarded,omitempty"` // "From: subject" of each forwarded message
	Problems         []string      `json:"problems,omitempty"`
	Authentication   *ReportAuth   `json:"authentication,omitempty"`
	Answer           *ReportAnswer `json:"answer"`
	Error            string        `json:"error,omitempty"`
}

// ReportAnswer is the answer part of a Report.
type ReportAnswer struct {
	Kind   Kind   `json:"kind"`
	Value  string `json:"value"`
	Backup string `json:"backup,omitempty"`
	Why    string `json:"why,omitempty"`
}

// ReportAuth is the strict-mode verdict on the Authentication-Results
// fields (see AuthResult).
type ReportAuth struct {
	Pass   bool   `json:"pass"`
	Reason string `json:"reason"`
}

// InspectOptions says what question the message answers, if any.
type InspectOptions struct {
	Parse   Options
	Expect  Kind // "" for none: the report has no answer
	Context QuestionContext
	// TrustedAuthservID, if set, is our receiving server's authserv-id:
	// the report then carries the AuthResult verdict.
	TrustedAuthservID string
}

// Inspect parses a message and reports it. The answer is null for a
// message that carries none: no question kind expected, an automatic
// reply or bounce, or an encrypted message (decrypt it first). A parse
// error is returned together with a Report of what was read, with Error
// set, when the header could be read.
func Inspect(r io.Reader, o InspectOptions) (*Report, error) {
	m, err := Parse(r, o.Parse)
	if m == nil {
		return nil, err
	}
	rep := &Report{
		MessageID:       m.MessageID,
		From:            m.From.Address,
		FromName:        m.From.Name,
		Subject:         m.Subject,
		Recipients:      m.Recipients(),
		AutoReply:       m.AutoReply,
		AutoReplyReason: m.AutoReplyReason,
		Bounce:          m.Bounce != nil,
		Encrypted:       m.Encrypted,
		HTML:            m.HTML,
		ReplyText:       m.Reply,
		Attachments:     m.Attachments,
		Problems:        m.Problems,
	}
	if rep.Attachments == nil {
		rep.Attachments = []Attachment{}
	}
	if rep.Recipients == nil {
		rep.Recipients = []string{}
	}
	if o.TrustedAuthservID != "" {
		pass, reason := AuthResult(&m.Header, o.TrustedAuthservID)
		rep.Authentication = &ReportAuth{Pass: pass, Reason: reason}
	}
	if ref := CaseRef(m.Subject); ref != "" {
		rep.CaseRef = &ref
	}
	if m.Bounce != nil {
		rep.FailedRecipients = m.Bounce.FailedRecipients
	}
	for _, f := range m.Forwarded {
		rep.Forwarded = append(rep.Forwarded, strings.TrimSpace(f.From.Address+": "+f.Subject))
	}
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	if o.Expect != "" && !m.AutoReply && m.Bounce == nil && !m.Encrypted {
		ctx := o.Context
		if ctx.Now.IsZero() {
			ctx.Now = time.Now()
		}
		a := ParseAnswer(o.Expect, m.Reply, ctx)
		rep.Answer = &ReportAnswer{Kind: a.Kind, Value: a.Value, Why: a.Why}
		if a.Backup > 0 {
			rep.Answer.Backup = strconv.Itoa(a.Backup)
		}
	}
	return rep, nil
}

// IsLimit reports whether err is one of the limit errors (the message is
// too complex or too long to parse, not broken input to report as a bug).
func IsLimit(err error) bool {
	return errors.Is(err, ErrTooComplex) || errors.Is(err, ErrTextTooLong)
}
