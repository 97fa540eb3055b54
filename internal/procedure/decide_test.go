package procedure

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScope(t *testing.T) {
	tests := []struct {
		name     string
		subject  Subject
		employer Employer
		want     State
		mail     string // the employee's mail
	}{
		{"verzuimbegeleiding is in scope", SubjectVerzuim, fullService, StateIntake, "employee:acknowledgement"},
		{"PAGO/PMO is in scope", SubjectPAGO, fullService, StateIntake, "employee:acknowledgement"},
		{"suspected beroepsziekte is in scope", SubjectBeroepsziekte, fullService, StateIntake, "employee:acknowledgement"},
		{"aanstellingskeuring: herkeuring route", SubjectKeuring, fullService, StateOutOfScope, "employee:out_of_scope_keuring"},
		{"UWV deskundigenoordeel: UWV route", SubjectUWV, fullService, StateOutOfScope, "employee:out_of_scope_uwv"},
		{"employer contracts another party: referral", SubjectVerzuim,
			Employer{ID: "gamma", Contract: ContractOther, SOParty: "Second Opinion Partners, 030-1234567", NoticeEmail: "hr@gamma.example"},
			StateReferred, "employee:referred"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRun(t)
			effs := r.do(Request{From: RoleEmployee, Employee: Person{Name: "Jan", Email: "jan@mail.example"},
				Employer: &tt.employer, OriginalPhysician: &orig, Subject: tt.subject, Question: "Klopt het advies?"})
			if r.c.State != tt.want {
				t.Fatalf("state %s, want %s", r.c.State, tt.want)
			}
			if got := mailNames(mailsTo(effs, RoleEmployee)); !slices.Contains(got, tt.mail) {
				t.Errorf("employee got %v, want %s", got, tt.mail)
			}
			if len(mailsTo(effs, RoleEmployer)) > 0 {
				t.Errorf("the employer heard of an employee's request: %v", templates(effs))
			}
			if tt.want == StateReferred && mailsTo(effs, RoleEmployee)[0].Data["party"] != tt.employer.SOParty {
				t.Errorf("referral does not name the party")
			}
			if tt.want == StateIntake {
				in := mailsTo(effs, RolePhysician)
				if len(in) != 1 || in[0].Template != "intake" || !in[0].Medical || in[0].Question == 0 {
					t.Errorf("intake mail to the physician: %+v", in)
				}
			}
		})
	}
}

func TestRequestByEmployerInformsEmployer(t *testing.T) {
	r := newRun(t)
	e := otherContr
	effs := r.do(Request{From: RoleEmployer, Employee: Person{Name: "Jan", Email: "jan@mail.example"},
		Employer: &e, OriginalPhysician: &orig, Subject: SubjectPAGO, Question: "?"})
	if !r.c.EmployerKnows {
		t.Fatal("an employer's own request: the employer knows")
	}
	if got := templates(effs); !slices.Contains(got, "employer:acknowledgement_employer") || !slices.Contains(got, "employee:acknowledgement") {
		t.Errorf("mails %v", got)
	}
}

func TestMissingFieldsAreAskedOnce(t *testing.T) {
	r := newRun(t)
	e := fullService
	effs := r.do(Request{From: RoleEmployee, Employee: Person{Email: "jan@mail.example"}, Employer: &e})
	if r.c.State != StateIncomplete {
		t.Fatalf("state %s", r.c.State)
	}
	m := mailsTo(effs, RoleEmployee)
	if len(m) != 1 || m[0].Template != "request_missing" || m[0].Question == 0 {
		t.Fatalf("mails %v", templates(effs))
	}
	if got := m[0].Data["missing"]; got != "employee_name,original_physician,subject,question" {
		t.Errorf("missing = %q", got)
	}
	// A second incomplete answer is not asked again: the backoffice takes over.
	effs = r.do(Request{From: RoleEmployee, Employee: Person{Name: "Jan"}})
	if len(mails(effs)) != 0 || len(alerts(effs)) != 1 {
		t.Errorf("second incomplete answer: mails %v alerts %v", templates(effs), alerts(effs))
	}
	effs = r.do(Request{From: RoleEmployee, OriginalPhysician: &orig, Subject: SubjectVerzuim, Question: "Waarom?"})
	if r.c.State != StateIntake || r.c.Employee.Name != "Jan" {
		t.Errorf("completed request: state %s, name %q", r.c.State, r.c.Employee.Name)
	}
}

func TestRefusalByOriginalPhysician(t *testing.T) {
	for _, by := range []Role{RoleEmployee, RoleEmployer} {
		t.Run("requested by "+string(by), func(t *testing.T) {
			r := newRun(t)
			e := fullService
			effs := r.do(Request{From: by, Employee: Person{Name: "Jan", Email: "jan@mail.example"}, Employer: &e,
				OriginalPhysician: &orig, Subject: SubjectVerzuim, Question: "?", Earlier: Earlier{Completed: 1, Withdrawn: 2}})
			if got := mailsTo(effs, RolePhysician)[0].Data["earlier_requests"]; got != "3" {
				t.Errorf("the intake shows %q earlier requests, want 3", got)
			}
			if err := r.try(IntakeAnswer{Refuse: true}); !errors.Is(err, ErrInvalid) {
				t.Errorf("a refusal without reasons: %v", err)
			}
			effs = r.do(IntakeAnswer{Refuse: true, Reason: "Derde verzoek over hetzelfde advies binnen een jaar"})
			if r.c.State != StateRefused {
				t.Fatalf("state %s", r.c.State)
			}
			emp := mailsTo(effs, RoleEmployee)
			if len(emp) != 1 || emp[0].Template != "refused" || !emp[0].Medical {
				t.Errorf("employee mail %+v: the reason is the physician's statement, encrypted only", emp)
			}
			gotEmployer := len(mailsTo(effs, RoleEmployer)) > 0
			if gotEmployer != (by == RoleEmployer) {
				t.Errorf("employer informed = %v for a request by %s", gotEmployer, by)
			}
		})
	}
}

func TestProposalIsIndependent(t *testing.T) {
	r := newRun(t)
	r.toChoosing(fullService)
	if r.c.State != StateChoosing {
		t.Fatalf("state %s", r.c.State)
	}
	var names []string
	for _, p := range r.c.Proposed {
		names = append(names, p.Name)
	}
	// Same arbodienst excluded; pool members before the non-pool physician.
	if want := []string{so1.Name, so2.Name}; !slices.Equal(names, want) {
		t.Errorf("proposed %v, want %v", names, want)
	}
	m := mailsTo(r.last, RoleEmployee)
	if len(m) != 1 || m[0].Template != "proposal" || m[0].Data["payer_1"] != "provider" {
		t.Errorf("proposal mail %+v", m)
	}
	// The backoffice cannot propose a physician of the same arbodienst.
	err := r.try(Propose{Physicians: []Physician{so1, sameArbo}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "same arbodienst") {
		t.Errorf("propose same arbodienst: %v", err)
	}
	if err := r.try(Propose{Physicians: []Physician{so1, so2, outside}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("propose three: %v", err)
	}
	r.do(Propose{Physicians: []Physician{so2}})
	if len(r.c.Proposed) != 1 || r.c.Proposed[0].ID != so2.ID {
		t.Errorf("backoffice proposal not taken: %+v", r.c.Proposed)
	}
}

// The original physician confirms the question first and sends the
// documents in a later mail: those documents complete the intake, and the
// employee gets the proposal as if both had come together.
func TestDocumentsAfterTheConfirmationLeadToTheProposal(t *testing.T) {
	r := newRun(t)
	r.request(fullService)
	effs := r.do(IntakeAnswer{Candidates: pool})
	if r.c.State != StateIntake || !slices.Contains(templates(effs), "physician:intake_documents") {
		t.Fatalf("confirmed without documents: state %s, mails %v", r.c.State, templates(effs))
	}
	effs = r.do(Documents{Documents: []Document{doc1}, Candidates: pool})
	if r.c.State != StateChoosing || len(r.c.Proposed) == 0 {
		t.Fatalf("state %s, proposed %v", r.c.State, r.c.Proposed)
	}
	if m := mailsTo(effs, RoleEmployee); len(m) != 1 || m[0].Template != "proposal" {
		t.Errorf("employee mails %v", templates(effs))
	}
	if a := alerts(effs); len(a) != 0 {
		t.Errorf("alerts %v", a)
	}
}

func TestProposalWithOnlyOneIndependentPhysician(t *testing.T) {
	r := newRun(t)
	r.request(fullService)
	r.do(IntakeAnswer{Documents: []Document{doc1}, Candidates: []Physician{sameArbo, so2}})
	if len(r.c.Proposed) != 1 || r.c.Proposed[0].ID != so2.ID {
		t.Errorf("proposed %+v", r.c.Proposed)
	}
	r2 := newRun(t)
	r2.request(fullService)
	effs := r2.do(IntakeAnswer{Documents: []Document{doc1}, Candidates: []Physician{sameArbo}})
	if len(r2.c.Proposed) != 0 || len(alerts(effs)) != 1 || len(mailsTo(effs, RoleEmployee)) != 0 {
		t.Errorf("no independent physician: proposed %v, alerts %v, mails %v", r2.c.Proposed, alerts(effs), templates(effs))
	}
}

func TestEmployeeNamesAPhysician(t *testing.T) {
	t.Run("same arbodienst is refused with the reason", func(t *testing.T) {
		r := newRun(t)
		r.toChoosing(fullService)
		effs := r.do(Choice{Other: &sameArbo})
		if r.c.State != StateChoosing || r.c.Chosen != nil {
			t.Fatalf("state %s chosen %v", r.c.State, r.c.Chosen)
		}
		m := mailsTo(effs, RoleEmployee)
		if len(m) != 1 || m[0].Template != "choice_not_independent" || m[0].Question == 0 || m[0].Data["reason"] != "same_arbodienst" {
			t.Errorf("mails %v", templates(effs))
		}
	})
	// The employee is told what is true of the physician they named.
	t.Run("the original physician is refused as such", func(t *testing.T) {
		r := newRun(t)
		r.toChoosing(fullService)
		effs := r.do(Choice{Other: &orig})
		m := mailsTo(effs, RoleEmployee)
		if r.c.Chosen != nil || len(m) != 1 || m[0].Template != "choice_not_independent" || m[0].Data["reason"] != "original" {
			t.Errorf("chosen %v, mails %v", r.c.Chosen, m)
		}
	})
	t.Run("a physician who declined the case is refused", func(t *testing.T) {
		r := newRun(t)
		r.toAccepting(fullService)
		r.do(Acceptance{Accept: false})
		r.do(Acceptance{Accept: false})
		r.do(Propose{Physicians: []Physician{outside}})
		named := so1
		named.Email = strings.ToUpper(named.Email)
		effs := r.do(Choice{Other: &named})
		m := mailsTo(effs, RoleEmployee)
		if r.c.Chosen != nil || r.c.State != StateChoosing || len(m) != 1 || m[0].Template != "choice_not_independent" || m[0].Data["reason"] != "declined" {
			t.Errorf("state %s chosen %v, mails %v", r.c.State, r.c.Chosen, m)
		}
		if len(mailsTo(effs, RoleSO)) != 0 {
			t.Error("the physician who declined was asked again")
		}
	})
	t.Run("outside the pool asks the employer", func(t *testing.T) {
		r := newRun(t)
		r.toChoosing(otherContr)
		effs := r.do(Choice{Other: &outside})
		if r.c.State != StateEmployerApproval {
			t.Fatalf("state %s", r.c.State)
		}
		if m := mailsTo(effs, RoleEmployer); len(m) != 1 || m[0].Template != "employer_approval" {
			t.Errorf("mails %v", templates(effs))
		}
	})
}

func TestWhoPays(t *testing.T) {
	tests := []struct {
		name     string
		inPool   bool
		contract Contract
		approval Approval
		want     Payer
	}{
		{"pool, full-service contract: the provider", true, ContractFullService, ApprovalNone, PayerProvider},
		{"pool, other contract: the employer", true, ContractOther, ApprovalNone, PayerEmployer},
		{"outside the pool, approved: the employer", false, ContractFullService, ApprovalApproved, PayerEmployer},
		{"outside the pool, not approved: the employee", false, ContractOther, ApprovalDeclined, PayerEmployee},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, why := WhoPays(tt.inPool, tt.contract, tt.approval); got != tt.want || why == "" {
				t.Errorf("WhoPays = %s (%q), want %s", got, why, tt.want)
			}
		})
	}
	// The same table, through the procedure.
	for _, approved := range []bool{true, false} {
		r := newRun(t)
		r.toChoosing(otherContr)
		r.do(Choice{Other: &outside})
		effs := r.do(EmployerApproval{Approved: approved})
		want := PayerEmployee
		if approved {
			want = PayerEmployer
		}
		if r.c.Payer != want || r.c.State != StateAuthorising {
			t.Errorf("approved=%v: payer %s state %s", approved, r.c.Payer, r.c.State)
		}
		if got := len(mailsTo(effs, RoleEmployee)) == 2; got == approved {
			t.Errorf("approved=%v: employee mails %v", approved, templates(effs))
		}
	}
}

func TestChoiceWithin48Hours(t *testing.T) {
	r := newRun(t)
	r.toChoosing(fullService)
	asked := r.now
	var remind, escalate time.Time
	for _, d := range r.c.Deadlines {
		if d.Step == StepChoice && d.Kind == Remind {
			remind = d.Due
		}
		if d.Step == StepChoice && d.Kind == Escalate {
			escalate = d.Due
		}
	}
	if remind != asked.Add(24*time.Hour) || escalate != asked.Add(48*time.Hour) {
		t.Fatalf("reminder %v escalation %v, want 24 h and 48 clock hours after %v", remind, escalate, asked)
	}
	// A deadline not yet due is refused.
	if err := r.try(DeadlineReached{Step: StepChoice, Kind: Escalate}); !errors.Is(err, ErrUnexpected) {
		t.Errorf("early deadline: %v", err)
	}
	effs := r.fire(StepChoice, Remind)
	m := mailsTo(effs, RoleEmployee)
	if len(m) != 1 || m[0].Template != "reminder" || !m[0].Reminder || m[0].Question != r.c.Questions[len(r.c.Questions)-1].ID {
		t.Errorf("reminder: %+v", m)
	}
	effs = r.fire(StepChoice, Escalate)
	if len(alerts(effs)) != 1 || r.c.State != StateChoosing {
		t.Errorf("escalation: alerts %v state %s", alerts(effs), r.c.State)
	}
	// The case stays under watch after the escalation.
	if _, ok := r.c.NextDeadline(); !ok {
		t.Error("no deadline after the escalation")
	}
	// A late choice still counts.
	r.do(Choice{Index: 2})
	if r.c.State != StateAuthorising || r.c.Chosen.ID != so2.ID {
		t.Errorf("late choice: state %s chosen %v", r.c.State, r.c.Chosen)
	}
}

func TestNothingMedicalLeavesWithoutBothSignatures(t *testing.T) {
	r := newRun(t)
	r.toAuthorising(fullService)
	// The form goes to both, with the exact documents.
	var rendered bool
	for _, e := range r.last {
		if _, ok := e.(RenderForm); ok {
			rendered = true
		}
	}
	if !rendered || !slices.Equal(r.c.Authorised, []string{doc1.SHA256, doc2.SHA256}) {
		t.Fatalf("form rendered %v authorised %v", rendered, r.c.Authorised)
	}
	for _, in := range []Input{Acceptance{Accept: true, KeyUsable: true}, Advice{NoSubstantive: true}, Approve{}} {
		if err := r.try(in); !errors.Is(err, ErrUnexpected) {
			t.Errorf("%s before the signatures: %v", in.inputName(), err)
		}
	}
	effs := r.do(Signature{Role: RoleEmployee, Agreed: true})
	if len(disclosures(effs)) != 0 || r.c.State != StateAuthorising {
		t.Fatalf("after the employee alone: state %s disclosures %v", r.c.State, disclosures(effs))
	}
	effs = r.do(Signature{Role: RolePhysician, Agreed: true})
	if r.c.State != StateAccepting || len(disclosures(effs)) != 0 {
		t.Fatalf("after both: state %s disclosures %v", r.c.State, disclosures(effs))
	}
	if m := mailsTo(effs, RoleSO); len(m) != 1 || m[0].Template != "so_request" || m[0].Medical || len(m[0].Documents) != 0 {
		t.Errorf("acceptance request %+v", m)
	}
	effs = r.do(Acceptance{Accept: true, KeyUsable: true})
	d := disclosures(effs)
	if len(d) != 1 || d[0].To != RoleSO || !slices.Equal(d[0].Documents, []string{doc1.SHA256, doc2.SHA256}) || !strings.Contains(d[0].Consent, "machtiging") {
		t.Errorf("disclosure %+v", d)
	}
}

func TestEmployeeRefusesToSign(t *testing.T) {
	r := newRun(t)
	r.toAuthorising(fullService)
	effs := r.do(Signature{Role: RoleEmployee, Agreed: false})
	if r.c.State != StateWithdrawn || len(disclosures(r.all)) != 0 {
		t.Errorf("state %s", r.c.State)
	}
	if len(mailsTo(effs, RoleEmployer)) != 0 {
		t.Error("the employer heard of it")
	}
}

func TestLateDocumentNeedsNewForm(t *testing.T) {
	r := newRun(t)
	r.toAuthorising(fullService)
	r.do(Signature{Role: RoleEmployee, Agreed: true})
	effs := r.do(Documents{Documents: []Document{doc3}})
	if r.c.FormVersion != 2 || r.c.EmployeeConsent != nil || len(mailsTo(effs, RoleEmployee)) != 1 {
		t.Fatalf("form v%d consent %v mails %v", r.c.FormVersion, r.c.EmployeeConsent, templates(effs))
	}
	r.do(Signature{Role: RoleEmployee, Agreed: true})
	r.do(Signature{Role: RolePhysician, Agreed: true})
	effs = r.do(Acceptance{Accept: true, KeyUsable: true})
	if d := disclosures(effs); len(d) != 1 || len(d[0].Documents) != 3 {
		t.Errorf("forwarded %+v", d)
	}
}

func TestOnlyAuthorisedDocumentsAreForwarded(t *testing.T) {
	r := newRun(t)
	r.toAccepting(fullService)
	// A document that arrives after the signatures is not on the form and
	// cannot be added any more.
	if err := r.try(Documents{Documents: []Document{doc3}}); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("late document: %v", err)
	}
	r.c.Documents = append(r.c.Documents, doc3) // even if it were there
	effs := r.do(Acceptance{Accept: true, KeyUsable: true})
	for _, m := range mailsTo(effs, RoleSO) {
		if slices.Contains(m.Documents, doc3.SHA256) {
			t.Fatal("an unauthorised document was forwarded")
		}
	}
}

func TestUnavailablePhysicianAndBackup(t *testing.T) {
	r := newRun(t)
	r.toAccepting(fullService)
	effs := r.do(Acceptance{Accept: false, Reason: "vakantie"})
	if r.c.Chosen.ID != so2.ID || r.c.State != StateAccepting {
		t.Fatalf("backup not asked: chosen %v state %s", r.c.Chosen, r.c.State)
	}
	if m := mailsTo(effs, RoleSO); len(m) != 1 || m[0].Email != so2.Email {
		t.Errorf("acceptance request to backup: %+v", m)
	}
	// The backup declines too: back to the backoffice for a new proposal.
	effs = r.do(Acceptance{Accept: false})
	if r.c.State != StateChoosing || len(alerts(effs)) != 1 {
		t.Fatalf("state %s alerts %v", r.c.State, alerts(effs))
	}
	r.do(Propose{Physicians: []Physician{outside}})
	r.do(Choice{Index: 1})
	if r.c.State != StateEmployerApproval {
		t.Errorf("state %s", r.c.State)
	}
}

func TestNoAnswerFromSOPhysicianMovesToBackup(t *testing.T) {
	r := newRun(t)
	r.toAccepting(fullService)
	r.fire(StepAcceptance, Remind)
	r.fire(StepAcceptance, Escalate)
	if r.c.Chosen.ID != so2.ID {
		t.Errorf("chosen %v", r.c.Chosen)
	}
}

func TestConsultWithin15Workdays(t *testing.T) {
	r := newRun(t)
	r.toAccepting(fullService)
	// Signed on Monday 2 March 2026; 15 working days later is Monday 23 March.
	want := time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC)
	if !r.c.ConsultTarget.Equal(want) {
		t.Fatalf("consult target %v, want %v", r.c.ConsultTarget, want)
	}
	effs := r.do(Acceptance{Accept: true, KeyUsable: true, ConsultAt: want.Add(48 * time.Hour)})
	if len(alerts(effs)) != 1 || !strings.Contains(alerts(effs)[0], "after the target") {
		t.Errorf("late consult not flagged: %v", alerts(effs))
	}
	if m := mailsTo(effs, RoleEmployee); len(m) != 1 || m[0].Template != "consult_planned" {
		t.Errorf("employee mails %v", templates(effs))
	}
}

func TestMissingKeyHoldsTheForwarding(t *testing.T) {
	r := newRun(t)
	r.toAccepting(fullService)
	effs := r.do(Acceptance{Accept: true, KeyUsable: false})
	if len(disclosures(effs)) != 0 || r.c.Forwarded {
		t.Fatal("forwarded without a usable key")
	}
	m := mailsTo(effs, RoleSO)
	if !slices.ContainsFunc(m, func(m Mail) bool { return m.Template == "key_request" && !m.Medical && len(m.Documents) == 0 }) {
		t.Errorf("no content-free key request: %v", templates(effs))
	}
	if len(alerts(effs)) != 1 || r.c.WaitingKey != so1.Email {
		t.Errorf("alerts %v waiting %q", alerts(effs), r.c.WaitingKey)
	}
	if err := r.try(KeyAvailable{Email: "other@x.example"}); !errors.Is(err, ErrUnexpected) {
		t.Errorf("key for someone else: %v", err)
	}
	effs = r.do(KeyAvailable{Email: strings.ToUpper(so1.Email)})
	if d := disclosures(effs); len(d) != 1 || !r.c.Forwarded || r.c.WaitingKey != "" {
		t.Errorf("after the key: disclosures %v", d)
	}
}

func TestFeedbackConsent(t *testing.T) {
	for _, by := range []Role{RoleEmployee, RoleEmployer} {
		for _, tt := range []struct{ physician, employer bool }{{true, true}, {true, false}, {false, true}, {false, false}} {
			name := string(by) + " request/physician " + yesNo(tt.physician) + "/employer " + yesNo(tt.employer)
			t.Run(name, func(t *testing.T) {
				r := newRun(t)
				e := fullService
				r.do(Request{From: by, Employee: Person{Name: "Jan", Email: "jan@mail.example"}, Employer: &e,
					OriginalPhysician: &orig, Subject: SubjectVerzuim, Question: "?"})
				r.do(IntakeAnswer{Documents: []Document{doc1}, Candidates: pool})
				r.do(Choice{Index: 1})
				r.do(Signature{Role: RoleEmployee, Agreed: true})
				r.do(Signature{Role: RolePhysician, Agreed: true})
				r.do(Acceptance{Accept: true, KeyUsable: true, ConsultAt: r.now.Add(time.Hour)})
				r.do(Advice{Documents: []Document{{Title: "Advies", SHA256: doc3.SHA256}}})
				effs := r.do(Feedback{Physician: tt.physician, Employer: tt.employer})
				if r.c.State != StateCompleted {
					t.Fatalf("state %s", r.c.State)
				}
				phys := mailsTo(effs, RolePhysician)
				if len(phys) != 1 || phys[0].Advice != tt.physician {
					t.Errorf("own physician: %v", templates(effs))
				}
				emp := mailsTo(effs, RoleEmployer)
				knows := by == RoleEmployer || tt.employer
				switch {
				case !knows && len(emp) != 0:
					t.Errorf("the employer heard of it: %v", templates(effs))
				case knows && (len(emp) != 1 || emp[0].Advice != tt.employer):
					t.Errorf("employer: %v", templates(effs))
				}
				if m := mailsTo(effs, RoleEmployee); len(m) != 1 || m[0].Template != "completion_employee" {
					t.Errorf("no follow-up offer: %v", templates(effs))
				}
			})
		}
	}
}

func TestNoFeedbackAnswerMeansNoSharing(t *testing.T) {
	r := newRun(t)
	r.toFeedback(otherContr)
	r.fire(StepFeedback, Remind)
	effs := r.fire(StepFeedback, Escalate)
	if r.c.State != StateCompleted || r.c.FeedbackPhysician || r.c.FeedbackEmployer {
		t.Fatalf("state %s", r.c.State)
	}
	for _, m := range mails(effs) {
		if m.Advice && m.To != RoleEmployee {
			t.Errorf("advice shared without an answer: %s", m.Template)
		}
	}
	if len(mailsTo(effs, RoleEmployer)) != 0 {
		t.Error("the employer heard of it")
	}
}

func TestNoSubstantiveAdvice(t *testing.T) {
	r := newRun(t)
	r.toAdvising(fullService)
	effs := r.do(Advice{NoSubstantive: true})
	if r.c.State != StateCompleted || !r.c.NoAdvice {
		t.Fatalf("state %s", r.c.State)
	}
	if got := templates(effs); !slices.Contains(got, "physician:completion_physician") || !slices.Contains(got, "employee:completion_employee") {
		t.Errorf("mails %v", got)
	}
}

func TestWithdrawalAtEveryStage(t *testing.T) {
	stages := []struct {
		name string
		to   func(r *run)
	}{
		{"incomplete", func(r *run) { e := fullService; r.do(Request{Employee: Person{Email: "j@x.example"}, Employer: &e}) }},
		{"intake", func(r *run) { r.request(fullService) }},
		{"choosing", func(r *run) { r.toChoosing(fullService) }},
		{"employer approval", func(r *run) { r.toChoosing(otherContr); r.do(Choice{Other: &outside}) }},
		{"authorising", func(r *run) { r.toAuthorising(fullService) }},
		{"accepting", func(r *run) { r.toAccepting(fullService) }},
		{"advising", func(r *run) { r.toAdvising(fullService) }},
		{"feedback", func(r *run) { r.toFeedback(fullService) }},
	}
	for _, st := range stages {
		t.Run(st.name, func(t *testing.T) {
			r := newRun(t)
			st.to(r)
			knew := r.c.EmployerKnows
			wasSO := r.c.State == StateAccepting || r.c.State == StateAdvising
			if err := r.try(Withdraw{By: RoleEmployer}); !errors.Is(err, ErrInvalid) {
				t.Errorf("withdrawal by the employer: %v", err)
			}
			effs := r.do(Withdraw{By: RoleEmployee})
			if r.c.State != StateWithdrawn {
				t.Fatalf("state %s", r.c.State)
			}
			if (len(mailsTo(effs, RoleEmployer)) > 0) != knew {
				t.Errorf("employer mail %v, employer knew: %v", templates(effs), knew)
			}
			if (len(mailsTo(effs, RoleSO)) > 0) != wasSO {
				t.Errorf("SO physician mail %v", templates(effs))
			}
			if err := r.try(Choice{Index: 1}); !errors.Is(err, ErrClosed) {
				t.Errorf("input after withdrawal: %v", err)
			}
		})
	}
}

func TestUnclearAnswerAsksAgain(t *testing.T) {
	r := newRun(t)
	r.toChoosing(fullService)
	q := r.c.Questions[len(r.c.Questions)-1]
	effs := r.do(Unclear{Role: RoleEmployee, Question: q.ID, Why: "two choices"})
	if m := mailsTo(effs, RoleEmployee); len(m) != 1 || m[0].Template != "unclear" || m[0].Question != q.ID {
		t.Errorf("follow-up %+v", m)
	}
	if r.c.State != StateChoosing {
		t.Errorf("state %s", r.c.State)
	}
	if err := r.try(Unclear{Role: RoleEmployee, Question: 999}); !errors.Is(err, ErrUnexpected) {
		t.Errorf("unclear on a closed question: %v", err)
	}
}

func TestRetention(t *testing.T) {
	r := newRun(t)
	r.d.Policy.RetentionYears = 15
	r.toFeedback(fullService)
	r.do(Feedback{Physician: true})
	closed := r.now
	if err := r.try(Purge{}); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("purge before the retention ended: %v", err)
	}
	d, _ := r.c.NextDeadline()
	if d.Step != StepRetention || !d.Due.Equal(closed.AddDate(15, 0, 0)) {
		t.Fatalf("retention deadline %+v", d)
	}
	effs := r.fire(StepRetention, Expire)
	if r.c.State != StatePurged || r.c.Employee.Email != "" || r.c.Question != "" || len(r.c.Documents) != 0 || r.c.Outcome == "" {
		t.Errorf("after purge: %+v", r.c)
	}
	var purged, record bool
	for _, e := range effs {
		switch e := e.(type) {
		case PurgeData:
			purged = true
		case Audit:
			record = record || e.Event == "purged"
		}
	}
	if !purged || !record {
		t.Errorf("purge %v deletion record %v", purged, record)
	}
	if err := r.try(Purge{}); !errors.Is(err, ErrClosed) {
		t.Errorf("second purge: %v", err)
	}
}

// A retention raised after a case closed moves its purge to the new end:
// the deadline that fires at the old end neither purges the case nor stays
// due.
func TestRetentionRaisedAfterClosing(t *testing.T) {
	r := newRun(t)
	r.d.Policy.RetentionYears = 15
	r.toFeedback(fullService)
	r.do(Feedback{Physician: true})
	closed := r.now
	r.d.Policy.RetentionYears = 20
	effs := r.fire(StepRetention, Expire)
	if r.c.State != StateCompleted {
		t.Fatalf("state %s after the old retention ended, want completed still", r.c.State)
	}
	d, ok := r.c.NextDeadline()
	if !ok || d.Step != StepRetention || d.Kind != Expire || !d.Due.Equal(closed.AddDate(20, 0, 0)) {
		t.Fatalf("retention deadline %+v, %v; want expiry 20 years after closing", d, ok)
	}
	var extended bool
	for _, e := range effs {
		switch e := e.(type) {
		case PurgeData:
			t.Error("purged at the old end of the retention")
		case Audit:
			extended = extended || e.Event == "retention extended"
		}
	}
	if !extended {
		t.Error("no audit entry for the extended retention")
	}
	r.fire(StepRetention, Expire)
	if r.c.State != StatePurged {
		t.Errorf("state %s after the new retention ended, want purged", r.c.State)
	}
}

func TestDefaultRetentionIs20Years(t *testing.T) {
	r := newRun(t)
	r.do(Request{Employee: Person{Name: "J", Email: "j@x.example"}, Employer: &fullService, OriginalPhysician: &orig, Subject: SubjectUWV, Question: "?"})
	d, _ := r.c.NextDeadline()
	if !d.Due.Equal(t0.AddDate(20, 0, 0)) {
		t.Errorf("retention until %v", d.Due)
	}
}

func TestDecideDoesNotChangeItsArgument(t *testing.T) {
	r := newRun(t)
	r.toAuthorising(fullService)
	before := r.c.clone()
	d := r.d
	if _, _, err := d.Decide(r.c, Signature{Role: RoleEmployee, Agreed: true}, r.now); err != nil {
		t.Fatal(err)
	}
	if r.c.EmployeeConsent != nil || len(r.c.Questions) != len(before.Questions) || r.c.Questions[len(r.c.Questions)-1].Open != before.Questions[len(before.Questions)-1].Open {
		t.Error("Decide changed the case it was given")
	}
}

func TestWithheldMedicalMailIsSentWhenAKeyArrives(t *testing.T) {
	r := newRun(t)
	r.toFeedback(fullService)
	effs := r.do(Feedback{Physician: true})
	adv := mailsTo(effs, RolePhysician)
	if len(adv) != 1 || !adv[0].Advice {
		t.Fatalf("completion to the physician %v", mailNames(adv))
	}
	// The engine found no usable key for the physician at sending time.
	r.do(KeyMissing{Mail: adv[0], Reason: "key expired"})
	if r.c.State != StateCompleted || len(r.c.Withheld) != 1 {
		t.Fatalf("state %s withheld %d", r.c.State, len(r.c.Withheld))
	}
	// A made-up withheld mail is refused: advice the employee did not
	// consent to share with the employer.
	forged := adv[0]
	forged.To, forged.Email = RoleEmployer, fullService.NoticeEmail
	if err := r.try(KeyMissing{Mail: forged}); !errors.Is(err, ErrInvalid) {
		t.Errorf("forged withheld mail: %v", err)
	}
	if err := r.try(KeyAvailable{Email: "someone@else.example"}); !errors.Is(err, ErrUnexpected) {
		t.Errorf("key for someone else: %v", err)
	}
	effs = r.do(KeyAvailable{Email: orig.Email})
	resent := mailsTo(effs, RolePhysician)
	if len(resent) != 1 || !resent[0].Advice || resent[0].Seq == adv[0].Seq {
		t.Fatalf("resent %+v", resent)
	}
	if d := disclosures(effs); len(d) != 1 || d[0].To != RolePhysician {
		t.Errorf("disclosure %+v", d)
	}
	if len(r.c.Withheld) != 0 {
		t.Errorf("still withheld: %d", len(r.c.Withheld))
	}
	if err := r.try(KeyAvailable{Email: orig.Email}); !errors.Is(err, ErrUnexpected) {
		t.Errorf("second key import: %v", err)
	}
}

func TestWithheldIntakeWaitsForTheKey(t *testing.T) {
	r := newRun(t)
	effs := r.do(Request{From: RoleEmployee, Employee: Person{Name: "Jan", Email: "jan@mail.example"}, Employer: &fullService,
		OriginalPhysician: &orig, Subject: SubjectVerzuim, Question: "?"})
	intake := mailsTo(effs, RolePhysician)[0]
	r.do(KeyMissing{Mail: intake, Reason: "no key on file"})
	if d, _ := r.c.NextDeadline(); d.Step != StepKey && d.Step != StepIntake {
		t.Errorf("next deadline %+v", d)
	}
	effs = r.do(KeyAvailable{Email: orig.Email})
	if m := mailsTo(effs, RolePhysician); len(m) != 1 || m[0].Template != "intake" || !m[0].Medical {
		t.Errorf("intake after the key: %v", templates(effs))
	}
	// The physician can still answer the intake question.
	r.do(IntakeAnswer{Documents: []Document{doc1}, Candidates: pool})
	if r.c.State != StateChoosing {
		t.Errorf("state %s", r.c.State)
	}
}

// A withdrawal ends all sharing: medical mail withheld for want of a key
// is dropped, not sent when the key comes.
func TestWithdrawalDropsWithheldMail(t *testing.T) {
	r := newRun(t)
	effs := r.do(Request{From: RoleEmployee, Employee: Person{Name: "Jan", Email: "jan@mail.example"}, Employer: &fullService,
		OriginalPhysician: &orig, Subject: SubjectVerzuim, Question: "Mag ik mijn eigen werk doen?"})
	intake := mailsTo(effs, RolePhysician)[0]
	r.do(KeyMissing{Mail: intake, Reason: "no key on file"})
	effs = r.do(Withdraw{By: RoleEmployee})
	if r.c.State != StateWithdrawn || len(r.c.Withheld) != 0 {
		t.Fatalf("state %s, %d mails still withheld", r.c.State, len(r.c.Withheld))
	}
	var dropped bool
	for _, e := range effs {
		if a, ok := e.(Audit); ok && a.Event == "withheld mail dropped" {
			dropped = true
		}
	}
	if !dropped {
		t.Error("no audit entry for the dropped mail")
	}
	if err := r.try(KeyAvailable{Email: orig.Email}); !errors.Is(err, ErrUnexpected) {
		t.Errorf("key after the withdrawal: %v, want nothing to send", err)
	}
}

func TestResentMailKeepsItsOpenQuestion(t *testing.T) {
	r := newRun(t)
	effs := r.do(Request{From: RoleEmployee, Employee: Person{Name: "Jan", Email: "jan@mail.example"}, Employer: &fullService,
		OriginalPhysician: &orig, Subject: SubjectVerzuim, Question: "?"})
	intake := mailsTo(effs, RolePhysician)[0]
	r.do(KeyMissing{Mail: intake})
	effs = r.do(KeyAvailable{Email: orig.Email})
	if m := mailsTo(effs, RolePhysician); len(m) != 1 || m[0].Question != intake.Question {
		t.Errorf("resent intake asks question %d, want %d", m[0].Question, intake.Question)
	}
}

// With policy.manual_check every complete authorisation waits for the
// backoffice: the chosen physician is asked only after Approve.
func TestManualCheck(t *testing.T) {
	r := newRun(t)
	r.d.Policy.ManualCheck = true
	r.toAuthorising(fullService)
	r.do(Signature{Role: RoleEmployee, Agreed: true})
	effs := r.do(Signature{Role: RolePhysician, Agreed: true, Via: "pgp-signed reply"})
	if r.c.State != StateChecking || len(mailsTo(effs, RoleSO)) != 0 {
		t.Fatalf("state %s, mails %v", r.c.State, templates(effs))
	}
	if a := alerts(effs); len(a) != 1 || !strings.Contains(a[0], "manual check") {
		t.Errorf("alerts %v", a)
	}
	effs = r.do(Approve{})
	if r.c.State != StateAccepting {
		t.Fatalf("after approval: state %s", r.c.State)
	}
	if m := mailsTo(effs, RoleSO); len(m) != 1 || m[0].Template != "so_request" {
		t.Errorf("mails %v", templates(effs))
	}
}
