package procedure

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrClosed: the case is in a final state and takes no more input.
	ErrClosed = errors.New("case is closed")
	// ErrUnexpected: the input does not fit the case's current state (a
	// late answer, a stale deadline); the engine quarantines the message.
	ErrUnexpected = errors.New("not expected in this state")
	// ErrInvalid: the input itself is wrong (a backoffice command with a
	// physician who is not independent, a choice out of range).
	ErrInvalid = errors.New("invalid input")
)

// Expire is the deadline kind of the retention period.
const Expire DeadlineKind = "expiry"

// Decider applies the procedure under an operator's policy.
type Decider struct{ Policy Policy }

// Decide returns the case after the input and the effects to carry out.
// It never changes c. A nil c (or one with an empty State) is a new case,
// which only a Request can open. On error the case is unchanged and there
// are no effects.
func (d Decider) Decide(c *Case, in Input, now time.Time) (*Case, []Effect, error) {
	given := c
	if c == nil {
		c = &Case{}
	}
	if _, ok := in.(Request); !ok && c.State == "" {
		return given, nil, fmt.Errorf("%s: %w (no case yet)", in.inputName(), ErrUnexpected)
	}
	if c.State.Final() {
		switch in := in.(type) {
		case Purge, KeyMissing, KeyAvailable:
			// Purging is the one step out of a final state; a withheld
			// mail (the advice to the own physician, say) is still owed.
			if c.State == StatePurged {
				return given, nil, fmt.Errorf("%s: %w (%s)", in.inputName(), ErrClosed, c.State)
			}
		case DeadlineReached:
			if in.Step != StepRetention || c.State == StatePurged {
				return given, nil, fmt.Errorf("%s: %w (%s)", in.inputName(), ErrClosed, c.State)
			}
		default:
			return given, nil, fmt.Errorf("%s: %w (%s)", in.inputName(), ErrClosed, c.State)
		}
	}
	x := &decision{p: d.Policy, c: c.clone(), now: now}
	if err := x.handle(in); err != nil {
		return given, nil, err
	}
	return x.c, x.effects, nil
}

// decision collects the effects of one Decide call.
type decision struct {
	p       Policy
	c       *Case
	now     time.Time
	effects []Effect
}

func (x *decision) handle(in Input) error {
	c := x.c
	switch in := in.(type) {
	case Request:
		return x.request(in)
	case IntakeAnswer:
		if c.State != StateIntake {
			return x.unexpected(in)
		}
		return x.intake(in)
	case Documents:
		return x.documents(in)
	case Propose:
		return x.propose(in)
	case Choice:
		if c.State != StateChoosing || len(c.Proposed) == 0 {
			return x.unexpected(in)
		}
		return x.choice(in)
	case EmployerApproval:
		if c.State != StateEmployerApproval {
			return x.unexpected(in)
		}
		return x.employerApproval(in)
	case Signature:
		if c.State != StateAuthorising {
			return x.unexpected(in)
		}
		return x.signature(in)
	case Approve:
		if c.State != StateChecking {
			return x.unexpected(in)
		}
		if missing := x.incomplete(); len(missing) > 0 {
			return fmt.Errorf("%w: the authorisation is incomplete: %s", ErrInvalid, strings.Join(missing, ", "))
		}
		x.audit("checked", "backoffice check passed")
		x.requestAcceptance()
		return nil
	case Acceptance:
		if c.State != StateAccepting {
			return x.unexpected(in)
		}
		return x.acceptance(in)
	case ConsultDate:
		if c.State != StatePlanning && c.State != StateAdvising {
			return x.unexpected(in)
		}
		return x.consultDate(in.At)
	case KeyAvailable:
		return x.keyAvailable(in)
	case KeyMissing:
		return x.keyMissing(in)
	case Advice:
		if c.State != StateAdvising && c.State != StatePlanning {
			return x.unexpected(in)
		}
		return x.advice(in)
	case Feedback:
		if c.State != StateFeedback {
			return x.unexpected(in)
		}
		c.FeedbackAnswered = true
		c.FeedbackPhysician, c.FeedbackEmployer = in.Physician, in.Employer
		if in.Employer {
			// Consent to share the advice with the employer is consent to
			// let the employer know of the procedure.
			c.EmployerKnows = true
		}
		x.closeQuestions(StepFeedback)
		x.audit("feedback consent", fmt.Sprintf("own physician: %s, employer: %s", yesNo(in.Physician), yesNo(in.Employer)))
		x.complete()
		return nil
	case Unclear:
		return x.unclear(in)
	case Withdraw:
		return x.withdraw(in)
	case DeadlineReached:
		return x.deadline(in)
	case Purge:
		return x.purge()
	}
	return fmt.Errorf("%w: unknown input %T", ErrInvalid, in)
}

func (x *decision) unexpected(in Input) error {
	return fmt.Errorf("%s: %w (%s)", in.inputName(), ErrUnexpected, x.c.State)
}

// ---- step 1: the request ----

func (x *decision) request(in Request) error {
	c := x.c
	switch c.State {
	case "":
		c.State = StateIncomplete
		c.CreatedAt = x.now
		c.RequestedBy = in.From
		if in.From != RoleEmployer {
			c.RequestedBy = RoleEmployee
		}
		// The employer knows of the procedure if they asked for it.
		c.EmployerKnows = c.RequestedBy == RoleEmployer
		c.Earlier, c.EarlierRequests = in.Earlier, in.Earlier.Total()
		x.audit("request", fmt.Sprintf("requested by %s; earlier requests: %d", c.RequestedBy, c.EarlierRequests))
	case StateIncomplete:
		x.audit("request completed", "missing fields supplied")
	default:
		return x.unexpected(in)
	}
	merge(c, in)
	if c.Lang == "" {
		c.Lang = "nl"
	}
	if c.Employee.Lang == "" {
		c.Employee.Lang = c.Lang
	}

	// Out of scope: explain the right route.
	if c.Subject == SubjectKeuring || c.Subject == SubjectUWV {
		tmpl := "out_of_scope_keuring"
		if c.Subject == SubjectUWV {
			tmpl = "out_of_scope_uwv"
		}
		x.closeQuestions("")
		x.notify(RoleEmployee, tmpl, nil)
		if c.RequestedBy == RoleEmployer {
			x.notify(RoleEmployer, tmpl, nil)
		}
		x.close(StateOutOfScope, "out of scope: "+string(c.Subject))
		return nil
	}
	// The employer's contract names another second-opinion party.
	if c.Employer.SOParty != "" {
		x.closeQuestions("")
		x.notify(RoleEmployee, "referred", map[string]string{"party": c.Employer.SOParty})
		if c.RequestedBy == RoleEmployer {
			x.notify(RoleEmployer, "referred", map[string]string{"party": c.Employer.SOParty})
		}
		x.close(StateReferred, "referred to "+c.Employer.SOParty)
		return nil
	}
	if missing := missingFields(c); len(missing) > 0 {
		if c.MissingAsked {
			// Asked once already: the backoffice takes it from here.
			x.alert("request still incomplete: " + strings.Join(missing, ", "))
			x.wait(StepRequest)
			return nil
		}
		c.MissingAsked = true
		x.askMail(c.RequestedBy, KindRequest, StepRequest, Mail{Template: "request_missing",
			Data: map[string]string{"missing": strings.Join(missing, ",")}})
		x.wait(StepRequest)
		return nil
	}
	x.clear(StepRequest)
	x.closeQuestions(StepRequest)
	// The acknowledgement explains the procedure: the own physician's advice
	// holds meanwhile, the request is not anonymous, the own physician
	// stays the employee's physician.
	x.notify(RoleEmployee, "acknowledgement", nil)
	if c.RequestedBy == RoleEmployer {
		x.notify(RoleEmployer, "acknowledgement_employer", nil)
	}
	c.State = StateIntake
	x.askMail(RolePhysician, KindIntake, StepIntake, Mail{
		Template: "intake",
		Medical:  true, // carries the employee's question
		Data:     map[string]string{"earlier_requests": strconv.Itoa(c.EarlierRequests)},
	})
	x.wait(StepIntake)
	return nil
}

func merge(c *Case, in Request) {
	if in.Employee.Name != "" {
		c.Employee.Name = in.Employee.Name
	}
	if in.Employee.Email != "" {
		c.Employee.Email = strings.ToLower(in.Employee.Email)
	}
	if in.Employee.DateOfBirth != "" {
		c.Employee.DateOfBirth = in.Employee.DateOfBirth
	}
	if in.Employee.Lang != "" {
		c.Employee.Lang = in.Employee.Lang
		c.Lang = in.Employee.Lang
	}
	if in.Employer != nil {
		c.Employer = *in.Employer
	}
	if in.OriginalPhysician != nil {
		c.OriginalPhysician = *in.OriginalPhysician
	}
	if in.Subject != "" {
		c.Subject = in.Subject
	}
	if strings.TrimSpace(in.Question) != "" {
		c.Question = strings.TrimSpace(in.Question)
	}
}

func missingFields(c *Case) []string {
	var m []string
	if c.Employee.Name == "" {
		m = append(m, "employee_name")
	}
	if c.Employee.Email == "" {
		m = append(m, "employee_email")
	}
	if c.OriginalPhysician.Email == "" {
		m = append(m, "original_physician")
	}
	if c.Employer.ID == "" {
		m = append(m, "employer")
	}
	if !c.Subject.Known() {
		m = append(m, "subject")
	}
	if c.Question == "" {
		m = append(m, "question")
	}
	return m
}

// ---- step 2: intake with the original physician ----

func (x *decision) intake(in IntakeAnswer) error {
	c := x.c
	if in.Refuse {
		reason := strings.TrimSpace(in.Reason)
		if reason == "" {
			return fmt.Errorf("%w: a refusal needs its weighty reasons", ErrInvalid)
		}
		x.closeQuestions("")
		x.audit("refused", fmt.Sprintf("refused by the original physician; earlier requests: %d", c.EarlierRequests))
		// The reason is the physician's statement: medical, encrypted only.
		x.mail(RoleEmployee, Mail{Template: "refused", Medical: true, Data: map[string]string{"reason": reason}})
		if c.EmployerKnows {
			x.notify(RoleEmployer, "refused_employer", nil)
		}
		x.close(StateRefused, "refused by the original physician")
		return nil
	}
	if q := strings.TrimSpace(in.Question); q != "" {
		c.Question = q
	}
	c.QuestionConfirmed = true
	x.addDocuments(in.Documents)
	x.audit("intake", fmt.Sprintf("question confirmed; %d documents", len(c.Documents)))
	if len(c.Documents) == 0 {
		x.askMail(RolePhysician, KindIntake, StepIntake, Mail{Template: "intake_documents"})
		x.wait(StepIntake)
		return nil
	}
	x.clear(StepIntake)
	x.closeQuestions(StepIntake)
	x.proposeFrom(in.Candidates)
	return nil
}

func (x *decision) documents(in Documents) error {
	c := x.c
	docs := in.Documents
	if len(docs) == 0 {
		return fmt.Errorf("%w: no documents", ErrInvalid)
	}
	switch c.State {
	case StateIntake:
		x.addDocuments(docs)
		x.audit("documents", fmt.Sprintf("%d documents", len(c.Documents)))
		if c.QuestionConfirmed {
			x.clear(StepIntake)
			x.closeQuestions(StepIntake)
			x.proposeFrom(in.Candidates)
		}
		return nil
	case StateChoosing, StateEmployerApproval:
		x.addDocuments(docs)
		x.audit("documents", fmt.Sprintf("%d documents", len(c.Documents)))
		return nil
	case StateAuthorising:
		before := len(c.Documents)
		x.addDocuments(docs)
		if len(c.Documents) == before {
			return nil
		}
		// The form lists exactly what is shared: a new document needs a
		// new form and new signatures.
		x.audit("documents", fmt.Sprintf("%d documents; new form needed", len(c.Documents)))
		x.authorise()
		return nil
	}
	return fmt.Errorf("documents: %w (%s)", ErrUnexpected, c.State)
}

func (x *decision) addDocuments(docs []Document) {
	for _, d := range docs {
		if !slices.ContainsFunc(x.c.Documents, func(e Document) bool { return e.SHA256 == d.SHA256 }) {
			x.c.Documents = append(x.c.Documents, d)
		}
	}
}

// ---- step 3: the proposal ----

// Independent reports whether p may give the second opinion on c: another
// arbodienst than the original physician's (Arbobesluit art. 2.14d).
func Independent(c *Case, p Physician) error {
	switch dependence(c, p) {
	case "original":
		return fmt.Errorf("%s is the original physician", p.Name)
	case "same_arbodienst":
		return fmt.Errorf("%s works for the same arbodienst (%s) as the original physician; the second-opinion physician must be independent (Arbobesluit art. 2.14d)", p.Name, p.Arbodienst)
	}
	return nil
}

// dependence says why p is not independent of the original physician of
// c: "original" (p is that physician) or "same_arbodienst"; "" when p is
// independent.
func dependence(c *Case, p Physician) string {
	if strings.EqualFold(p.Email, c.OriginalPhysician.Email) || p.ID != "" && p.ID == c.OriginalPhysician.ID {
		return "original"
	}
	if p.Arbodienst != "" && p.Arbodienst == c.OriginalPhysician.Arbodienst {
		return "same_arbodienst"
	}
	return ""
}

// SelectCandidates picks up to max independent physicians for a proposal:
// pool members first, then those who write the employee's language, in the
// given order otherwise. Physicians who declined the case are skipped.
func SelectCandidates(c *Case, all []Physician, max int) []Physician {
	var ok []Physician
	for _, p := range all {
		if Independent(c, p) != nil || c.declined(p.Email) {
			continue
		}
		ok = append(ok, p)
	}
	rank := func(p Physician) int {
		r := 0
		if !p.InPool {
			r += 2
		}
		if p.Lang != "" && c.Lang != "" && p.Lang != c.Lang {
			r++
		}
		return r
	}
	slices.SortStableFunc(ok, func(a, b Physician) int { return rank(a) - rank(b) })
	if len(ok) > max {
		ok = ok[:max]
	}
	return ok
}

func (x *decision) maxProposed() int {
	if x.p.MaxProposed < 1 || x.p.MaxProposed > 2 {
		return 2
	}
	return x.p.MaxProposed
}

func (x *decision) proposeFrom(candidates []Physician) {
	c := x.c
	sel := SelectCandidates(c, candidates, x.maxProposed())
	if len(sel) == 0 {
		c.State = StateChoosing
		c.Proposed = nil
		x.alert("no independent physician available for a proposal; propose with 'case propose'")
		x.wait(StepCheck)
		return
	}
	x.offer(sel)
}

func (x *decision) propose(in Propose) error {
	c := x.c
	switch c.State {
	case StateChoosing, StateEmployerApproval, StateAuthorising, StateChecking, StateAccepting:
	case StateIntake:
		if !c.QuestionConfirmed || len(c.Documents) == 0 {
			return fmt.Errorf("proposal: %w: the intake is not complete", ErrUnexpected)
		}
	default:
		return x.unexpected(in)
	}
	if n := len(in.Physicians); n < 1 || n > 2 {
		return fmt.Errorf("%w: propose 1 or 2 physicians, not %d", ErrInvalid, n)
	}
	for _, p := range in.Physicians {
		if err := Independent(c, p); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	x.clearAll()
	x.closeQuestions("")
	x.audit("proposal", "by the backoffice")
	x.offer(in.Physicians)
	return nil
}

// offer sends the proposal and waits 48 hours for the choice.
func (x *decision) offer(ps []Physician) {
	c := x.c
	c.Proposed = append([]Physician(nil), ps...)
	c.Chosen, c.Backup = nil, nil
	c.EmployerApproval = ApprovalNone
	c.Payer, c.PayerReason = "", ""
	c.EmployeeConsent, c.PhysicianCosign = nil, nil
	c.State = StateChoosing
	data := map[string]string{"count": strconv.Itoa(len(ps))}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
		payer, why := WhoPays(p.InPool, c.Employer.Contract, ApprovalNone)
		k := strconv.Itoa(i + 1)
		data["payer_"+k] = string(payer)
		data["payer_reason_"+k] = why
	}
	x.audit("proposal", strings.Join(names, "; "))
	x.clear(StepCheck)
	x.askMail(RoleEmployee, KindChoice, StepChoice, Mail{Template: "proposal", Data: data})
	x.wait(StepChoice)
}

// WhoPays applies the provider's table: a pool (LPBSO) physician is paid by
// the provider under a full-service contract, else by the employer; a
// physician outside the pool by the employer if they approved, else by the
// employee. While approval is pending the answer is the employer.
func WhoPays(inPool bool, contract Contract, approval Approval) (Payer, string) {
	switch {
	case inPool && contract == ContractFullService:
		return PayerProvider, "pool physician, full-service contract"
	case inPool:
		return PayerEmployer, "pool physician, other contract"
	case approval == ApprovalDeclined:
		return PayerEmployee, "outside the pool, employer did not approve"
	default:
		return PayerEmployer, "outside the pool, employer approves the costs"
	}
}

func (x *decision) choice(in Choice) error {
	c := x.c
	var chosen Physician
	switch {
	case in.Other != nil:
		why, reason := dependence(c, *in.Other), in.Other.Name+" declined this case"
		if why != "" {
			reason = Independent(c, *in.Other).Error()
		} else if c.declined(in.Other.Email) {
			why = "declined"
		}
		if why != "" {
			// A valid answer, refused with its reason: ask again.
			x.audit("choice refused", reason)
			x.askMail(RoleEmployee, KindChoice, StepChoice, Mail{Template: "choice_not_independent",
				Data: map[string]string{"name": in.Other.Name, "reason": why}})
			return nil
		}
		chosen = *in.Other
	case in.Index >= 1 && in.Index <= len(c.Proposed):
		chosen = c.Proposed[in.Index-1]
	default:
		return fmt.Errorf("%w: choice %d of %d", ErrInvalid, in.Index, len(c.Proposed))
	}
	c.Chosen = &chosen
	c.Backup = nil
	if in.Backup >= 1 && in.Backup <= len(c.Proposed) && c.Proposed[in.Backup-1].Email != chosen.Email {
		b := c.Proposed[in.Backup-1]
		c.Backup = &b
	}
	x.clear(StepChoice)
	x.closeQuestions(StepChoice)
	detail := chosen.Name
	if c.Backup != nil {
		detail += "; backup " + c.Backup.Name
	}
	x.audit("choice", detail)
	if !chosen.InPool {
		// Outside the pool the employer is asked to approve the costs; the
		// proposal told the employee that this informs the employer.
		c.EmployerKnows = true
		c.EmployerApproval = ApprovalPending
		c.State = StateEmployerApproval
		x.askMail(RoleEmployer, KindYesNo, StepApproval, Mail{Template: "employer_approval",
			Data: map[string]string{"physician": chosen.Name}})
		x.wait(StepApproval)
		return nil
	}
	c.Payer, c.PayerReason = WhoPays(true, c.Employer.Contract, ApprovalNone)
	x.authorise()
	return nil
}

func (x *decision) employerApproval(in EmployerApproval) error {
	c := x.c
	c.EmployerApproval = ApprovalDeclined
	if in.Approved {
		c.EmployerApproval = ApprovalApproved
	}
	c.Payer, c.PayerReason = WhoPays(false, c.Employer.Contract, c.EmployerApproval)
	x.clear(StepApproval)
	x.closeQuestions(StepApproval)
	x.audit("employer approval", string(c.EmployerApproval))
	if !in.Approved {
		x.notify(RoleEmployee, "approval_declined", nil)
	}
	x.authorise()
	return nil
}

// ---- step 4: the authorisation (machtiging) ----

// authorise renders a new form listing exactly the documents now known and
// asks the employee and the original physician to sign it.
func (x *decision) authorise() {
	c := x.c
	c.FormVersion++
	c.Authorised = nil
	for _, d := range c.Documents {
		c.Authorised = append(c.Authorised, d.SHA256)
	}
	c.EmployeeConsent, c.PhysicianCosign = nil, nil
	c.State = StateAuthorising
	x.emit(RenderForm{Version: c.FormVersion})
	x.audit("form", fmt.Sprintf("version %d; documents %s; payer %s", c.FormVersion, strings.Join(short(c.Authorised), " "), c.Payer))
	// The form lists the question and the documents' titles. The employee
	// gets it in ordinary mail — it is their own authorisation, and most
	// employees have no key; the physician always has one, so their copy
	// travels encrypted.
	x.askMail(RoleEmployee, KindYesNo, StepEmployeeSign, Mail{Template: "form_employee", Form: true})
	x.askMail(RolePhysician, KindYesNo, StepPhysicianSign, Mail{Template: "form_physician", Form: true, Medical: true})
	x.wait(StepEmployeeSign)
	x.wait(StepPhysicianSign)
}

func (x *decision) signature(in Signature) error {
	c := x.c
	via := in.Via
	if via == "" {
		via = "reply"
	}
	switch in.Role {
	case RoleEmployee:
		if c.EmployeeConsent != nil {
			return fmt.Errorf("employee signature: %w (already signed)", ErrUnexpected)
		}
		x.clear(StepEmployeeSign)
		x.closeQuestions(StepEmployeeSign)
		if !in.Agreed {
			// Without the machtiging the request cannot be handled.
			x.audit("authorisation refused", "the employee did not sign the form")
			x.notifyAll("withdrawn", nil)
			x.close(StateWithdrawn, "the employee did not authorise the sharing of medical information")
			return nil
		}
		c.EmployeeConsent = &Consent{At: x.now, Via: via}
		x.audit("employee signed", fmt.Sprintf("form version %d via %s", c.FormVersion, via))
	case RolePhysician:
		if c.PhysicianCosign != nil {
			return fmt.Errorf("physician signature: %w (already signed)", ErrUnexpected)
		}
		if !in.Agreed {
			x.audit("co-signature refused", "the original physician did not co-sign")
			x.alert("the original physician did not co-sign the form")
			x.wait(StepPhysicianSign)
			return nil
		}
		x.clear(StepPhysicianSign)
		x.closeQuestions(StepPhysicianSign)
		c.PhysicianCosign = &Consent{At: x.now, Via: via}
		x.audit("physician co-signed", fmt.Sprintf("form version %d via %s", c.FormVersion, via))
	default:
		return fmt.Errorf("%w: a signature from %s", ErrInvalid, in.Role)
	}
	if c.EmployeeConsent == nil || c.PhysicianCosign == nil {
		return nil
	}
	c.AuthorisedAt = x.now
	workdays := x.p.ConsultWorkdays
	if workdays <= 0 {
		workdays = 15
	}
	c.ConsultTarget = x.p.after(x.now, Workdays(workdays))
	x.audit("authorised", fmt.Sprintf("documents %s; consult target %s", strings.Join(short(c.Authorised), " "), c.ConsultTarget.Format("2006-01-02")))
	x.setDeadline(StepConsult, Escalate, c.ConsultTarget)
	if missing := x.incomplete(); x.p.ManualCheck || len(missing) > 0 {
		c.State = StateChecking
		why := "manual check"
		if len(missing) > 0 {
			why = "incomplete: " + strings.Join(missing, ", ")
		}
		x.alert("backoffice check needed (" + why + ")")
		x.wait(StepCheck)
		return nil
	}
	x.audit("checked", "complete; checked automatically")
	x.requestAcceptance()
	return nil
}

// incomplete lists what the backoffice check misses.
func (x *decision) incomplete() []string {
	c := x.c
	var m []string
	if c.Chosen == nil {
		m = append(m, "no physician chosen")
	}
	if c.Question == "" {
		m = append(m, "no question")
	}
	if len(c.Authorised) == 0 {
		m = append(m, "no documents")
	}
	if c.Payer == "" {
		m = append(m, "payer unknown")
	}
	if c.EmployeeConsent == nil {
		m = append(m, "employee signature missing")
	}
	if c.PhysicianCosign == nil {
		m = append(m, "physician co-signature missing")
	}
	return m
}

// ---- step 5: acceptance and planning ----

func (x *decision) requestAcceptance() {
	c := x.c
	x.clear(StepCheck)
	c.State = StateAccepting
	x.askMail(RoleSO, KindYesNo, StepAcceptance, Mail{Template: "so_request",
		Data: map[string]string{"target": c.ConsultTarget.Format("2006-01-02")}})
	x.wait(StepAcceptance)
}

func (x *decision) acceptance(in Acceptance) error {
	c := x.c
	x.clear(StepAcceptance)
	x.closeQuestions(StepAcceptance)
	if !in.Accept {
		x.audit("declined", fmt.Sprintf("%s is unavailable", c.Chosen.Name))
		x.nextPhysician()
		return nil
	}
	c.AcceptedAt = x.now
	x.audit("accepted", c.Chosen.Name)
	if !in.KeyUsable {
		c.WaitingKey = c.Chosen.Email
	}
	x.forward()
	if !in.ConsultAt.IsZero() {
		return x.consultDate(in.ConsultAt)
	}
	c.State = StatePlanning
	x.askMail(RoleSO, KindDateTime, StepConsultDate, Mail{Template: "consult_date_question"})
	x.wait(StepConsultDate)
	return nil
}

// nextPhysician moves to the backup physician, or back to a new proposal.
func (x *decision) nextPhysician() {
	c := x.c
	c.Declined = append(c.Declined, c.Chosen.Email)
	if c.Backup != nil && !c.declined(c.Backup.Email) {
		b := *c.Backup
		c.Chosen, c.Backup = &b, nil
		x.audit("backup", b.Name)
		// The form named the backup, so the authorisation covers them.
		x.requestAcceptance()
		return
	}
	x.alert(fmt.Sprintf("%s is unavailable and there is no backup: a new proposal is needed", c.Chosen.Name))
	c.Chosen = nil
	c.Proposed = nil
	c.State = StateChoosing
	x.wait(StepCheck)
}

// ---- step 6: forwarding ----

// forward sends the question and exactly the authorised documents,
// encrypted, to the chosen physician — or, without a usable key, a
// content-free request for one.
func (x *decision) forward() {
	c := x.c
	if c.Forwarded {
		return
	}
	if c.WaitingKey != "" {
		x.notify(RoleSO, "key_request", nil)
		x.alert("no usable PGP key for " + c.WaitingKey + "; the case waits until one is imported")
		x.wait(StepKey)
		return
	}
	var docs []string
	for _, sha := range c.Authorised {
		if c.isAuthorised(sha) {
			docs = append(docs, sha)
		}
	}
	x.mail(RoleSO, Mail{Template: "forward", Medical: true, Documents: docs,
		Disclosure: &Disclosure{Documents: docs, Consent: x.consentText()}})
	c.Forwarded = true
}

func (x *decision) consentText() string {
	c := x.c
	return fmt.Sprintf("machtiging form v%d: employee %s (%s), physician %s (%s)",
		c.FormVersion, c.EmployeeConsent.At.UTC().Format(time.RFC3339), c.EmployeeConsent.Via,
		c.PhysicianCosign.At.UTC().Format(time.RFC3339), c.PhysicianCosign.Via)
}

func (x *decision) consultDate(at time.Time) error {
	c := x.c
	if !at.After(x.now) {
		return fmt.Errorf("%w: the consult date %s is not in the future", ErrInvalid, at.Format("2006-01-02 15:04"))
	}
	c.ConsultAt = at
	x.clear(StepConsultDate)
	x.closeQuestions(StepConsultDate)
	x.audit("consult planned", at.Format("2006-01-02 15:04"))
	if !c.ConsultTarget.IsZero() && at.After(c.ConsultTarget) {
		x.alert(fmt.Sprintf("consult on %s is after the target of %d working days (%s)",
			at.Format("2006-01-02"), x.p.ConsultWorkdays, c.ConsultTarget.Format("2006-01-02")))
	}
	x.notify(RoleEmployee, "consult_planned", map[string]string{"consult_at": at.Format(time.RFC3339)})
	c.State = StateAdvising
	x.clear(StepConsult)
	// The advice comes as a PGP-signed reply to this mail.
	x.askMail(RoleSO, KindAdvice, StepAdvice, Mail{Template: "advice_request",
		Data: map[string]string{"consult_at": at.Format(time.RFC3339)}})
	t := x.timing(StepAdvice)
	x.setDeadline(StepAdvice, Remind, x.p.after(at, t.Remind))
	x.setDeadline(StepAdvice, Escalate, x.p.after(at, t.Escalate))
	return nil
}

// keyMissing keeps a medical mail that could not be encrypted, after
// checking that it is one the procedure itself would send now.
func (x *decision) keyMissing(in KeyMissing) error {
	c, m := x.c, in.Mail
	if !m.Medical || m.Email == "" {
		return fmt.Errorf("%w: only a medical mail is withheld", ErrInvalid)
	}
	for _, sha := range m.Documents {
		if m.To != RoleSO || !c.isAuthorised(sha) {
			return fmt.Errorf("%w: document %s is not authorised for %s", ErrInvalid, sha, m.To)
		}
	}
	if m.Advice && (m.To == RolePhysician && !c.FeedbackPhysician || m.To == RoleEmployer && !c.FeedbackEmployer || m.To == RoleSO) {
		return fmt.Errorf("%w: the advice is not consented for %s", ErrInvalid, m.To)
	}
	for _, w := range c.Withheld {
		if w.Seq == m.Seq {
			return nil
		}
	}
	c.Withheld = append(c.Withheld, m)
	x.audit("withheld", fmt.Sprintf("%s to %s kept until a usable key for %s is imported (%s)", m.Template, m.To, m.Email, in.Reason))
	if !c.State.Final() {
		x.wait(StepKey)
	}
	return nil
}

// keyAvailable sends what waited for a key for the address: the forward to
// the SO physician, and any withheld medical mail.
func (x *decision) keyAvailable(in KeyAvailable) error {
	c := x.c
	var keep []Mail
	var due []Mail
	for _, w := range c.Withheld {
		if strings.EqualFold(w.Email, in.Email) {
			due = append(due, w)
		} else {
			keep = append(keep, w)
		}
	}
	waiting := c.WaitingKey != "" && strings.EqualFold(c.WaitingKey, in.Email)
	if !waiting && len(due) == 0 {
		return x.unexpected(in)
	}
	x.audit("key available", in.Email)
	c.Withheld = keep
	for _, w := range due {
		email, _, _ := x.recipient(w.To)
		if !strings.EqualFold(email, w.Email) {
			// The role's address changed since (another SO physician):
			// the mail is not for the new one.
			x.audit("withheld mail dropped", fmt.Sprintf("%s for %s: the %s is now %s", w.Template, w.Email, w.To, email))
			continue
		}
		m := w
		if _, open := c.OpenQuestion(w.Question); !open {
			m.Question = 0 // its question was answered or closed meanwhile
		}
		// The mail carries its disclosure as decided then; it is
		// recorded now, when it leaves.
		x.mail(w.To, m)
	}
	if waiting {
		c.WaitingKey = ""
		x.forward()
	}
	if c.WaitingKey == "" && len(c.Withheld) == 0 {
		x.clear(StepKey)
	}
	return nil
}

// ---- step 7 and 8: the advice and the feedback consent ----

func (x *decision) advice(in Advice) error {
	c := x.c
	if c.State == StatePlanning {
		// Advice without a planned date: the consult took place.
		x.clear(StepConsultDate)
		x.closeQuestions(StepConsultDate)
	}
	x.clear(StepAdvice, StepConsult)
	x.closeQuestions(StepAdvice)
	c.AdviceAt = x.now
	if in.NoSubstantive {
		c.NoAdvice = true
		x.audit("advice", "no substantive advice follows")
		x.complete()
		return nil
	}
	if len(in.Documents) == 0 {
		return fmt.Errorf("%w: an advice without a document", ErrInvalid)
	}
	c.Advice = append([]Document(nil), in.Documents...)
	x.audit("advice", fmt.Sprintf("%d documents", len(in.Documents)))
	// The employee receives the advice (their own data), encrypted.
	x.mail(RoleEmployee, Mail{Template: "advice_employee", Medical: true, Advice: true,
		Disclosure: &Disclosure{Documents: shas(c.Advice), Consent: "the employee's own advice"}})
	c.State = StateFeedback
	x.askMail(RoleEmployee, KindConsent, StepFeedback, Mail{Template: "feedback_question"})
	x.wait(StepFeedback)
	return nil
}

// complete sends both completion notices in the same step, each exactly as
// the employee consented, and offers a follow-up with the own physician.
func (x *decision) complete() {
	c := x.c
	share := !c.NoAdvice && len(c.Advice) > 0
	if share && c.FeedbackPhysician {
		x.mail(RolePhysician, Mail{Template: "completion_physician_advice", Medical: true, Advice: true,
			Disclosure: &Disclosure{Documents: shas(c.Advice), Consent: "feedback consent of the employee"}})
	} else {
		x.notify(RolePhysician, "completion_physician", x.completionData())
	}
	switch {
	case !c.EmployerKnows:
		x.audit("employer not informed", "the employee did not consent and the employer did not ask")
	case share && c.FeedbackEmployer:
		x.mail(RoleEmployer, Mail{Template: "completion_employer_advice", Medical: true, Advice: true,
			Disclosure: &Disclosure{Documents: shas(c.Advice), Consent: "feedback consent of the employee"}})
	default:
		x.notify(RoleEmployer, "completion_employer", x.completionData())
	}
	x.notify(RoleEmployee, "completion_employee", x.completionData())
	x.close(StateCompleted, map[bool]string{true: "completed without substantive advice", false: "completed"}[c.NoAdvice])
}

func (x *decision) completionData() map[string]string {
	c := x.c
	return map[string]string{
		"no_advice":          yesNo(c.NoAdvice),
		"feedback_answered":  yesNo(c.FeedbackAnswered),
		"feedback_physician": yesNo(c.FeedbackPhysician),
		"feedback_employer":  yesNo(c.FeedbackEmployer),
	}
}

// ---- withdrawal, unclear answers, deadlines, purge ----

func (x *decision) withdraw(in Withdraw) error {
	if in.By != RoleEmployee && in.By != RoleBackoffice {
		return fmt.Errorf("%w: only the employee (or the backoffice for them) may withdraw", ErrInvalid)
	}
	reason := strings.TrimSpace(in.Reason)
	if reason == "" {
		reason = "withdrawn by the employee"
	}
	x.audit("withdrawn", fmt.Sprintf("by %s in state %s", in.By, x.c.State))
	x.notifyAll("withdrawn", nil)
	x.close(StateWithdrawn, reason)
	return nil
}

// notifyAll tells everyone involved so far that the case ended; the
// employer only if they may know of it.
func (x *decision) notifyAll(tmpl string, data map[string]string) {
	c := x.c
	x.notify(RoleEmployee, tmpl, data)
	if c.State != StateIncomplete {
		x.notify(RolePhysician, tmpl, data)
	}
	if c.Chosen != nil && (c.State == StateAccepting || c.State == StatePlanning || c.State == StateAdvising) {
		x.notify(RoleSO, tmpl, data)
	}
	if c.EmployerKnows {
		x.notify(RoleEmployer, tmpl, data)
	}
}

func (x *decision) unclear(in Unclear) error {
	q, ok := x.c.OpenQuestion(in.Question)
	if !ok || q.Role != in.Role {
		return fmt.Errorf("unclear answer: %w (question %d not open)", ErrUnexpected, in.Question)
	}
	x.audit("unclear answer", fmt.Sprintf("%s on %s: %s", in.Role, q.Step, in.Why))
	x.mail(q.Role, Mail{Template: "unclear", Question: q.ID, Reminder: false,
		Data: map[string]string{"step": string(q.Step), "kind": string(q.Kind)}})
	return nil
}

func (x *decision) deadline(in DeadlineReached) error {
	c := x.c
	i := slices.IndexFunc(c.Deadlines, func(d Deadline) bool { return d.Step == in.Step && d.Kind == in.Kind })
	if i < 0 {
		return fmt.Errorf("deadline %s %s: %w (not set)", in.Step, in.Kind, ErrUnexpected)
	}
	due := c.Deadlines[i].Due
	if due.After(x.now) {
		return fmt.Errorf("deadline %s %s: %w (due %s)", in.Step, in.Kind, ErrUnexpected, due.Format(time.RFC3339))
	}
	c.Deadlines = slices.Delete(c.Deadlines, i, i+1)
	if in.Step == StepRetention {
		if until := x.retentionEnd(); x.now.Before(until) {
			// policy.retention_years was raised after the case closed:
			// the purge waits for the longer retention.
			x.setDeadline(StepRetention, Expire, until)
			x.audit("retention extended", fmt.Sprintf("retention now %d years: purge on %s", x.retention(), until.Format("2006-01-02")))
			return nil
		}
		return x.purge()
	}
	switch in.Kind {
	case Remind:
		x.audit("reminder", string(in.Step))
		x.remind(in.Step)
		return nil
	case Escalate:
		return x.escalate(in.Step)
	}
	return fmt.Errorf("%w: deadline kind %q", ErrInvalid, in.Kind)
}

// remind re-sends the open question of the step to whoever must answer.
func (x *decision) remind(step Step) {
	for _, q := range x.c.Questions {
		if q.Open && q.Step == step {
			x.mail(q.Role, Mail{Template: "reminder", Question: q.ID, Reminder: true,
				Data: map[string]string{"step": string(step), "kind": string(q.Kind)}})
		}
	}
}

func (x *decision) escalate(step Step) error {
	c := x.c
	x.audit("escalation", string(step))
	switch step {
	case StepFeedback:
		// No answer means no sharing.
		c.FeedbackAnswered = false
		c.FeedbackPhysician, c.FeedbackEmployer = false, false
		x.closeQuestions(StepFeedback)
		x.audit("feedback consent", "no answer: nothing is shared")
		x.complete()
		return nil
	case StepAcceptance:
		if c.Backup != nil {
			x.closeQuestions(StepAcceptance)
			x.audit("declined", fmt.Sprintf("%s did not answer in time", c.Chosen.Name))
			x.nextPhysician()
			return nil
		}
	case StepChoice:
		x.alert("the employee did not choose a physician within " + x.timing(StepChoice).Escalate.String())
		x.again(step)
		return nil
	case StepConsult:
		x.alert(fmt.Sprintf("no consult within %d working days of the authorisation", x.p.ConsultWorkdays))
		return nil
	}
	x.alert("no answer in time: " + string(step))
	x.again(step)
	return nil
}

// again keeps a step that was escalated under watch: the backoffice is
// alerted again after another escalation period.
func (x *decision) again(step Step) {
	t := x.timing(step)
	x.setDeadline(step, Escalate, x.p.after(x.now, t.Escalate))
}

func (x *decision) purge() error {
	c := x.c
	if !c.State.Final() || c.State == StatePurged {
		return fmt.Errorf("purge: %w (%s)", ErrUnexpected, c.State)
	}
	until := x.retentionEnd()
	if x.now.Before(until) {
		return fmt.Errorf("purge: %w (retention until %s)", ErrUnexpected, until.Format("2006-01-02"))
	}
	x.emit(PurgeData{})
	x.audit("purged", fmt.Sprintf("retention of %d years ended; closed %s as %s", x.retention(), c.ClosedAt.Format("2006-01-02"), c.State))
	*c = Case{ID: c.ID, Ref: c.Ref, Version: c.Version, State: StatePurged, Lang: c.Lang,
		CreatedAt: c.CreatedAt, ClosedAt: c.ClosedAt, Outcome: c.Outcome, Seq: c.Seq}
	return nil
}

func (x *decision) retention() int {
	if x.p.RetentionYears > 0 {
		return x.p.RetentionYears
	}
	return 20
}

// ---- helpers: the one place for each kind of effect ----

func (x *decision) emit(e Effect) { x.effects = append(x.effects, e) }

func (x *decision) audit(event, detail string) { x.emit(Audit{Event: event, Detail: detail}) }

func (x *decision) alert(reason string) {
	x.emit(Alert{Reason: reason})
	x.audit("alert", reason)
}

// recipient returns the address, name and language of a role.
func (x *decision) recipient(r Role) (email, name, lang string) {
	c := x.c
	switch r {
	case RoleEmployee:
		return c.Employee.Email, c.Employee.Name, c.Employee.Lang
	case RolePhysician:
		return c.OriginalPhysician.Email, c.OriginalPhysician.Name, c.OriginalPhysician.Lang
	case RoleSO:
		if c.Chosen != nil {
			return c.Chosen.Email, c.Chosen.Name, c.Chosen.Lang
		}
	case RoleEmployer:
		return c.Employer.NoticeEmail, c.Employer.Name, c.Employer.Lang
	}
	return "", "", ""
}

// mail is the one path for outgoing mail. It refuses, by construction, to
// write to the employer before the employer may know of the procedure.
func (x *decision) mail(to Role, m Mail) {
	c := x.c
	if to == RoleEmployer && !c.EmployerKnows {
		x.audit("employer not informed", m.Template+": no consent")
		return
	}
	email, name, lang := x.recipient(to)
	if email == "" {
		x.alert(fmt.Sprintf("no address for %s (%s)", to, m.Template))
		return
	}
	if lang == "" {
		lang = c.Lang
	}
	c.Seq++
	m.Seq, m.To, m.Email, m.Name, m.Lang = c.Seq, to, email, name, lang
	if m.Disclosure != nil {
		d := *m.Disclosure
		d.To, d.Email, d.At = to, email, x.now
		m.Disclosure = &d
	}
	x.emit(m)
}

// notify sends a notice that asks nothing.
func (x *decision) notify(to Role, tmpl string, data map[string]string) {
	x.mail(to, Mail{Template: tmpl, Reminder: true, Data: data})
}

func (x *decision) askMail(to Role, kind Kind, step Step, m Mail) {
	q := x.addQuestion(to, kind, step)
	m.Question = q.ID
	x.mail(to, m)
}

// addQuestion opens a question, closing earlier ones of the same role and
// step: a reply to an old mail of the same step counts for the new one only
// through the new token.
func (x *decision) addQuestion(to Role, kind Kind, step Step) Question {
	c := x.c
	email, _, _ := x.recipient(to)
	for i := range c.Questions {
		if c.Questions[i].Open && c.Questions[i].Role == to && c.Questions[i].Step == step {
			c.Questions[i].Open = false
		}
	}
	q := Question{ID: uint32(len(c.Questions) + 1), Kind: kind, Role: to, Email: email, Step: step, Asked: x.now, Open: true}
	c.Questions = append(c.Questions, q)
	return q
}

// closeQuestions closes the open questions of a step (all steps for "").
func (x *decision) closeQuestions(step Step) {
	for i := range x.c.Questions {
		if step == "" || x.c.Questions[i].Step == step {
			x.c.Questions[i].Open = false
		}
	}
}

func (x *decision) timing(step Step) Timing {
	if t, ok := x.p.Steps[step]; ok {
		return t
	}
	return Timing{Remind: Workdays(2), Escalate: Workdays(5)}
}

// wait sets the reminder and escalation deadlines of a step from now.
func (x *decision) wait(step Step) {
	t := x.timing(step)
	x.setDeadline(step, Remind, x.p.after(x.now, t.Remind))
	x.setDeadline(step, Escalate, x.p.after(x.now, t.Escalate))
}

func (x *decision) setDeadline(step Step, kind DeadlineKind, due time.Time) {
	c := x.c
	d := Deadline{Step: step, Kind: kind, Due: due}
	if i := slices.IndexFunc(c.Deadlines, func(e Deadline) bool { return e.Step == step && e.Kind == kind }); i >= 0 {
		c.Deadlines[i] = d
	} else {
		c.Deadlines = append(c.Deadlines, d)
	}
	x.emit(SetDeadline{d})
}

func (x *decision) clear(steps ...Step) {
	c := x.c
	n := len(c.Deadlines)
	c.Deadlines = slices.DeleteFunc(c.Deadlines, func(d Deadline) bool { return slices.Contains(steps, d.Step) })
	if len(c.Deadlines) != n {
		x.emit(ClearDeadlines{Steps: steps})
	}
}

func (x *decision) clearAll() {
	if len(x.c.Deadlines) > 0 {
		x.c.Deadlines = nil
		x.emit(ClearDeadlines{})
	}
}

// close ends the case in a final state and starts the retention period.
func (x *decision) close(s State, outcome string) {
	c := x.c
	x.clearAll()
	x.closeQuestions("")
	c.WaitingKey = ""
	if s != StateCompleted {
		// A case that ends otherwise (withdrawn: "from now on we share
		// nothing") sends no medical mail it withheld for want of a key.
		// A completed case still owes the advice it was consented to.
		for _, w := range c.Withheld {
			x.audit("withheld mail dropped", fmt.Sprintf("%s for %s: the case closed as %s", w.Template, w.To, s))
		}
		c.Withheld = nil
	}
	c.State = s
	c.Outcome = outcome
	c.ClosedAt = x.now
	x.audit("closed", fmt.Sprintf("%s: %s", s, outcome))
	x.setDeadline(StepRetention, Expire, x.retentionEnd())
}

// retentionEnd is when a closed case's retention ends, under the current
// policy.
func (x *decision) retentionEnd() time.Time {
	return x.c.ClosedAt.AddDate(x.retention(), 0, 0)
}

func shas(docs []Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.SHA256
	}
	return out
}

func short(hashes []string) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		if len(h) > 16 {
			h = h[:16]
		}
		out[i] = h
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
