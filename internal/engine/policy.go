package engine

import (
	"fmt"

	"secondopinion/internal/config"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/token"
	"secondopinion/internal/workdays"
)

// Policy maps the operator's configuration to the procedure's policy and
// the working-day calendar it counts with.
func Policy(p config.Policy) (procedure.Policy, *workdays.Calendar, error) {
	cal, err := workdays.New(p.Workdays())
	if err != nil {
		return procedure.Policy{}, nil, fmt.Errorf("calendar: %w", err)
	}
	pol := procedure.DefaultPolicy(cal)
	span := func(s config.Span) procedure.Span {
		return procedure.Span{Duration: s.Clock, Workdays: s.Workdays}
	}
	set := func(step procedure.Step, s config.Step) {
		t := pol.Steps[step]
		if !s.ReminderAfter.IsZero() {
			t.Remind = span(s.ReminderAfter)
		}
		if !s.EscalateAfter.IsZero() {
			t.Escalate = span(s.EscalateAfter)
		}
		pol.Steps[step] = t
	}
	set(procedure.StepIntake, p.Steps.Intake)
	set(procedure.StepChoice, p.Steps.Choice)
	set(procedure.StepApproval, p.Steps.EmployerApproval)
	set(procedure.StepEmployeeSign, p.Steps.EmployeeSignature)
	set(procedure.StepPhysicianSign, p.Steps.PhysicianSignature)
	set(procedure.StepAcceptance, p.Steps.SOAcceptance)
	set(procedure.StepConsultDate, p.Steps.ConsultDate)
	set(procedure.StepAdvice, p.Steps.Advice)
	set(procedure.StepFeedback, p.Steps.FeedbackConsent)
	if p.ChoiceDeadline > 0 {
		t := pol.Steps[procedure.StepChoice]
		t.Escalate = procedure.Span{Duration: p.ChoiceDeadline}
		pol.Steps[procedure.StepChoice] = t
	}
	if p.ConsultWorkdays > 0 {
		pol.ConsultWorkdays = p.ConsultWorkdays
	}
	if p.RetentionYears > 0 {
		pol.RetentionYears = p.RetentionYears
	}
	pol.ManualCheck = p.ManualCheck
	return pol, cal, nil
}

// physician converts a registry entry to the procedure's view of it.
func physician(p registry.Physician) procedure.Physician {
	lang := "nl"
	if len(p.Languages) > 0 {
		lang = p.Languages[0]
	}
	return procedure.Physician{ID: p.ID, Name: p.Name, Email: p.Email, Arbodienst: p.Arbodienst, InPool: p.Pool, Lang: lang}
}

// employer converts a registry entry to the procedure's view of it.
func employer(e registry.Employer) procedure.Employer {
	pe := procedure.Employer{ID: e.ID, Name: e.Name, Contract: procedure.Contract(e.Contract), NoticeEmail: e.NoticeEmail}
	if e.SecondOpinionParty != nil {
		party := e.SecondOpinionParty.Name
		for _, s := range []string{e.SecondOpinionParty.Email, e.SecondOpinionParty.Phone, e.SecondOpinionParty.Website} {
			if s != "" {
				party += ", " + s
			}
		}
		pe.SOParty = party
	}
	return pe
}

// candidates lists the registry's second-opinion physicians.
func candidates(reg *registry.Registry) []procedure.Physician {
	var out []procedure.Physician
	for _, p := range reg.Physicians {
		if p.HasRole(registry.RoleSecondOpinion) {
			out = append(out, physician(p))
		}
	}
	return out
}

var roleToToken = map[procedure.Role]token.Role{
	procedure.RoleEmployee:   token.RoleEmployee,
	procedure.RolePhysician:  token.RoleOriginalPhysician,
	procedure.RoleSO:         token.RoleSOPhysician,
	procedure.RoleEmployer:   token.RoleEmployer,
	procedure.RoleBackoffice: token.RoleBackoffice,
}

func roleFromToken(r token.Role) procedure.Role {
	for k, v := range roleToToken {
		if v == r {
			return k
		}
	}
	return ""
}
