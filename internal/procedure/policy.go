package procedure

import (
	"strconv"
	"time"
)

// Step is a waiting step that has its own deadline, reminder and escalation.
type Step string

const (
	StepRequest       Step = "request"           // missing request fields
	StepIntake        Step = "intake"            // original physician: question and documents
	StepChoice        Step = "choice"            // employee chooses (within 48 hours by default)
	StepApproval      Step = "employer_approval" // employer approves costs outside the pool
	StepEmployeeSign  Step = "employee_signature"
	StepPhysicianSign Step = "physician_signature"
	StepCheck         Step = "check" // backoffice check
	StepAcceptance    Step = "so_acceptance"
	StepConsultDate   Step = "consult_date"
	StepConsult       Step = "consult" // the consult within 15 working days
	StepAdvice        Step = "advice"
	StepFeedback      Step = "feedback_consent"
	StepKey           Step = "recipient_key" // waiting for a usable PGP key
	StepRetention     Step = "retention"     // purge when the retention period ends
)

// DeadlineKind says what happens when a deadline is reached.
type DeadlineKind string

const (
	// Remind sends the waited-for role a reminder.
	Remind DeadlineKind = "reminder"
	// Escalate alerts the backoffice (and, for some steps, moves on: the
	// backup physician, or completion without sharing).
	Escalate DeadlineKind = "escalation"
)

// Span is a period in clock time or in working days (Dutch public holidays
// excluded). Exactly one of the two is set.
type Span struct {
	Duration time.Duration `json:"duration,omitempty"`
	Workdays int           `json:"workdays,omitempty"`
}

// String writes the span as "48 hours" or "5 working days".
func (s Span) String() string {
	if s.Workdays > 0 {
		return strconv.Itoa(s.Workdays) + " working days"
	}
	return strconv.FormatFloat(s.Duration.Hours(), 'f', -1, 64) + " hours"
}

// Hours is a clock-time span.
func Hours(h int) Span { return Span{Duration: time.Duration(h) * time.Hour} }

// Workdays is a span in working days.
func Workdays(n int) Span { return Span{Workdays: n} }

// Timing is when to remind and when to escalate, counted from the moment
// the step began to wait.
type Timing struct {
	Remind   Span `json:"remind"`
	Escalate Span `json:"escalate"`
}

// Calendar counts working days. internal/workdays implements it for the
// Netherlands; the procedure needs only this much of it.
type Calendar interface {
	AddWorkdays(t time.Time, n int) time.Time
}

// Policy holds the values an operator may configure.
type Policy struct {
	// Steps gives the reminder and escalation moments per waiting step.
	Steps map[Step]Timing
	// ConsultWorkdays is the target for the consult, in working days from
	// the complete authorisation (15 in the provider's procedure).
	ConsultWorkdays int
	// RetentionYears is how long records are kept after closing: 20 by
	// default (current WGBO practice); the provider's text says 15.
	RetentionYears int
	// ManualCheck makes every authorised case wait for the backoffice
	// check, even when it is complete.
	ManualCheck bool
	// MaxProposed is how many physicians a proposal names (1 or 2).
	MaxProposed int
	// Calendar counts working days.
	Calendar Calendar
}

// DefaultPolicy returns the procedure's own timings: 48 clock hours for the
// choice (reminder after 24), 15 working days for the consult, 20 years of
// retention.
func DefaultPolicy(cal Calendar) Policy {
	return Policy{
		Steps: map[Step]Timing{
			StepRequest:       {Remind: Workdays(3), Escalate: Workdays(5)},
			StepIntake:        {Remind: Workdays(3), Escalate: Workdays(5)},
			StepChoice:        {Remind: Hours(24), Escalate: Hours(48)},
			StepApproval:      {Remind: Workdays(2), Escalate: Workdays(5)},
			StepEmployeeSign:  {Remind: Workdays(2), Escalate: Workdays(5)},
			StepPhysicianSign: {Remind: Workdays(2), Escalate: Workdays(5)},
			StepCheck:         {Remind: Workdays(1), Escalate: Workdays(2)},
			StepAcceptance:    {Remind: Workdays(2), Escalate: Workdays(3)},
			StepConsultDate:   {Remind: Workdays(2), Escalate: Workdays(4)},
			StepAdvice:        {Remind: Workdays(5), Escalate: Workdays(10)},
			StepFeedback:      {Remind: Workdays(3), Escalate: Workdays(10)},
			StepKey:           {Remind: Workdays(2), Escalate: Workdays(5)},
		},
		ConsultWorkdays: 15,
		RetentionYears:  20,
		MaxProposed:     2,
		Calendar:        cal,
	}
}

// after returns the moment a span after t ends.
func (p Policy) after(t time.Time, s Span) time.Time {
	if s.Workdays > 0 && p.Calendar != nil {
		return p.Calendar.AddWorkdays(t, s.Workdays)
	}
	if s.Workdays > 0 {
		// No calendar: count calendar days, skipping weekends.
		d := t
		for n := s.Workdays; n > 0; {
			d = d.AddDate(0, 0, 1)
			if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
				n--
			}
		}
		return d
	}
	return t.Add(s.Duration)
}
