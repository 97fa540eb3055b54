package procedure

import (
	"slices"
	"testing"
	"time"
)

var ams, _ = time.LoadLocation("Europe/Amsterdam")

// t0 is a Monday morning.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

var (
	orig     = Physician{ID: "p-orig", Name: "A. de Vries", Email: "devries@noord.example", Arbodienst: "arbo-noord"}
	so1      = Physician{ID: "so-1", Name: "B. Bakker", Email: "bakker@zuid.example", Arbodienst: "arbo-zuid", InPool: true}
	so2      = Physician{ID: "so-2", Name: "C. Jansen", Email: "jansen@west.example", Arbodienst: "arbo-west", InPool: true}
	sameArbo = Physician{ID: "so-3", Name: "D. Visser", Email: "visser@noord.example", Arbodienst: "arbo-noord", InPool: true}
	outside  = Physician{ID: "so-4", Name: "E. Smit", Email: "smit@oost.example", Arbodienst: "arbo-oost", InPool: false}
	pool     = []Physician{sameArbo, outside, so1, so2}

	fullService = Employer{ID: "acme", Name: "Acme BV", Contract: ContractFullService, NoticeEmail: "hr@acme.example"}
	otherContr  = Employer{ID: "beta", Name: "Beta BV", Contract: ContractOther, NoticeEmail: "hr@beta.example"}

	doc1 = Document{Title: "Verslag bedrijfsarts", SHA256: "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11", Size: 100}
	doc2 = Document{Title: "Brief specialist", SHA256: "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22", Size: 200}
	doc3 = Document{Title: "Later stuk", SHA256: "cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33", Size: 300}
)

// run drives one case through Decide, checking the invariants after every
// step, as a test would see the procedure from outside.
type run struct {
	t   *testing.T
	d   Decider
	c   *Case
	now time.Time
	// last holds the effects of the latest step.
	last []Effect
	all  []Effect
}

func newRun(t *testing.T) *run {
	t.Helper()
	return &run{t: t, d: Decider{Policy: DefaultPolicy(nil)}, now: t0}
}

func (r *run) do(in Input) []Effect {
	r.t.Helper()
	if err := r.try(in); err != nil {
		r.t.Fatalf("%s in state %s: %v", in.inputName(), r.state(), err)
	}
	return r.last
}

func (r *run) try(in Input) error {
	r.t.Helper()
	prev := r.c
	c, effs, err := r.d.Decide(r.c, in, r.now)
	if err != nil {
		if c != prev {
			r.t.Fatalf("a failed Decide returned another case")
		}
		return err
	}
	if verr := checkInvariants(prev, c, effs); verr != "" {
		r.t.Fatalf("after %s: invariant broken: %s", in.inputName(), verr)
	}
	r.c, r.last = c, effs
	r.all = append(r.all, effs...)
	return nil
}

func (r *run) state() State {
	if r.c == nil {
		return ""
	}
	return r.c.State
}

func (r *run) advance(d time.Duration) { r.now = r.now.Add(d) }

// fire advances the clock to a deadline and reaches it.
func (r *run) fire(step Step, kind DeadlineKind) []Effect {
	r.t.Helper()
	i := slices.IndexFunc(r.c.Deadlines, func(d Deadline) bool { return d.Step == step && d.Kind == kind })
	if i < 0 {
		r.t.Fatalf("no %s deadline for %s in %+v", kind, step, r.c.Deadlines)
	}
	if due := r.c.Deadlines[i].Due; due.After(r.now) {
		r.now = due
	}
	return r.do(DeadlineReached{Step: step, Kind: kind})
}

func (r *run) request(e Employer) {
	r.t.Helper()
	r.do(Request{From: RoleEmployee, Employee: Person{Name: "Şahin Yılmaz", Email: "sahin@mail.example"},
		Employer: &e, OriginalPhysician: &orig, Subject: SubjectVerzuim,
		Question: "Kan ik mijn eigen werk in aangepaste vorm doen?", Earlier: Earlier{Completed: 1}})
}

func (r *run) toChoosing(e Employer) {
	r.t.Helper()
	r.request(e)
	r.do(IntakeAnswer{Documents: []Document{doc1, doc2}, Candidates: pool})
}

func (r *run) toAuthorising(e Employer) {
	r.t.Helper()
	r.toChoosing(e)
	r.do(Choice{Index: 1, Backup: 2})
}

func (r *run) toAccepting(e Employer) {
	r.t.Helper()
	r.toAuthorising(e)
	r.do(Signature{Role: RoleEmployee, Agreed: true})
	r.do(Signature{Role: RolePhysician, Agreed: true, Via: "pgp-signed reply"})
}

func (r *run) toAdvising(e Employer) {
	r.t.Helper()
	r.toAccepting(e)
	r.do(Acceptance{Accept: true, KeyUsable: true, ConsultAt: r.now.Add(72 * time.Hour)})
}

func (r *run) toFeedback(e Employer) {
	r.t.Helper()
	r.toAdvising(e)
	r.advance(96 * time.Hour)
	r.do(Advice{Documents: []Document{{Title: "Advies", SHA256: "dd44dd44dd44dd44dd44dd44dd44dd44dd44dd44dd44dd44dd44dd44dd44dd44"}}})
}

func mails(effs []Effect) []Mail {
	var out []Mail
	for _, e := range effs {
		if m, ok := e.(Mail); ok {
			out = append(out, m)
		}
	}
	return out
}

func mailsTo(effs []Effect, role Role) []Mail {
	return slices.DeleteFunc(mails(effs), func(m Mail) bool { return m.To != role })
}

func templates(effs []Effect) []string { return mailNames(mails(effs)) }

func mailNames(ms []Mail) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.To)+":"+m.Template)
	}
	return out
}

func alerts(effs []Effect) []string {
	var out []string
	for _, e := range effs {
		if a, ok := e.(Alert); ok {
			out = append(out, a.Reason)
		}
	}
	return out
}

func disclosures(effs []Effect) []Disclosure {
	var out []Disclosure
	for _, e := range effs {
		if m, ok := e.(Mail); ok && m.Disclosure != nil {
			out = append(out, *m.Disclosure)
		}
	}
	return out
}

// checkInvariants returns what is wrong with one step, or "".
func checkInvariants(prev, c *Case, effs []Effect) string {
	if prev != nil && prev.State.Final() && c.State != prev.State && c.State != StatePurged {
		return "left final state " + string(prev.State) + " for " + string(c.State)
	}
	if !c.State.Final() {
		waiting := false
		for _, d := range c.Deadlines {
			if d.Step != StepRetention {
				waiting = true
			}
		}
		if !waiting {
			return "waiting state " + string(c.State) + " has no deadline"
		}
	}
	if c.State.Final() && c.State != StatePurged {
		if len(c.Deadlines) != 1 || c.Deadlines[0].Step != StepRetention {
			return "final state without exactly the retention deadline"
		}
	}
	for _, m := range mails(effs) {
		if m.Disclosure != nil && !m.Medical {
			return "a disclosure in a mail not marked medical"
		}
		if m.To == RoleEmployer && !c.EmployerKnows {
			return "mail " + m.Template + " to the employer without consent or request"
		}
		if len(m.Documents) > 0 {
			if !m.Medical {
				return "documents in a mail not marked medical"
			}
			if m.To != RoleSO || c.Chosen == nil || m.Email != c.Chosen.Email {
				return "documents to someone other than the chosen physician"
			}
			if c.EmployeeConsent == nil || c.PhysicianCosign == nil {
				return "documents forwarded without both signatures"
			}
			for _, d := range m.Documents {
				if !slices.Contains(c.Authorised, d) {
					return "document " + d + " outside the authorised set"
				}
			}
		}
		if m.Advice {
			if !m.Medical {
				return "advice in a mail not marked medical"
			}
			if m.To == RolePhysician && !c.FeedbackPhysician {
				return "advice to the own physician without consent"
			}
			if m.To == RoleEmployer && !c.FeedbackEmployer {
				return "advice to the employer without consent"
			}
		}
	}
	return ""
}
