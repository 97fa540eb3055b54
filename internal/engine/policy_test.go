package engine

import (
	"testing"
	"time"

	"secondopinion/internal/config"
	"secondopinion/internal/procedure"
	"secondopinion/internal/workdays"
)

// TestPolicyFromConfig checks that what an operator writes in the config
// is what the procedure counts with.
func TestPolicyFromConfig(t *testing.T) {
	cp := config.Default().Policy
	cp.ChoiceDeadline = 72 * time.Hour
	cp.RetentionYears = 15
	cp.ConsultWorkdays = 10
	cp.Steps.Advice = config.Step{
		ReminderAfter: config.Span{Span: workdays.Span{Workdays: 4}},
		EscalateAfter: config.Span{Span: workdays.Span{Clock: 36 * time.Hour}},
	}
	cp.Holidays.GoodFridayOff = true
	cp.ManualCheck = true
	pol, cal, err := Policy(cp)
	if err != nil {
		t.Fatal(err)
	}
	if got := pol.Steps[procedure.StepChoice].Escalate; got.Duration != 72*time.Hour {
		t.Errorf("choice escalation %+v, want 72h", got)
	}
	if got := pol.Steps[procedure.StepAdvice]; got.Remind.Workdays != 4 || got.Escalate.Duration != 36*time.Hour {
		t.Errorf("advice timing %+v", got)
	}
	if pol.RetentionYears != 15 || pol.ConsultWorkdays != 10 || !pol.ManualCheck {
		t.Errorf("retention %d, consult %d, manual check %v", pol.RetentionYears, pol.ConsultWorkdays, pol.ManualCheck)
	}
	// The calendar the procedure counts with is the configured one: Good
	// Friday 3 April 2026 is a day off here.
	goodFriday := time.Date(2026, 4, 3, 10, 0, 0, 0, amsterdam)
	if cal.IsWorkday(goodFriday) || pol.Calendar.AddWorkdays(goodFriday.AddDate(0, 0, -1), 1).Day() != 7 {
		t.Errorf("Good Friday is counted as a working day")
	}
	// Steps the config leaves at zero keep the procedure's defaults.
	def := procedure.DefaultPolicy(nil)
	if pol.Steps[procedure.StepFeedback] != def.Steps[procedure.StepFeedback] && cp.Steps.FeedbackConsent.ReminderAfter.IsZero() {
		t.Errorf("feedback timing changed without configuration")
	}
}
