package procedure

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// inputFrom turns two bytes into one of every kind of input, with the
// parameters that matter varied: any role, any answer, any deadline.
func inputFrom(c *Case, a, b byte, now time.Time) Input {
	roles := []Role{RoleEmployee, RolePhysician, RoleSO, RoleEmployer, RoleBackoffice}
	subjects := []Subject{SubjectVerzuim, SubjectPAGO, SubjectBeroepsziekte, SubjectKeuring, SubjectUWV, ""}
	docs := [][]Document{nil, {doc1}, {doc1, doc2}, {doc3}}
	employers := []Employer{fullService, otherContr, {ID: "g", SOParty: "Elders", NoticeEmail: "hr@g.example"}}
	switch a % 17 {
	case 0:
		e := employers[int(b)%len(employers)]
		var op *Physician
		if b&8 == 0 {
			op = &orig
		}
		return Request{From: roles[int(b)%2*3], Employee: Person{Name: "J", Email: "j@x.example"}, Employer: &e,
			OriginalPhysician: op, Subject: subjects[int(b>>4)%len(subjects)], Question: []string{"", "?"}[b%2]}
	case 1:
		return IntakeAnswer{Refuse: b%5 == 0, Reason: "r", Documents: docs[int(b)%len(docs)], Candidates: pool[int(b>>2)%3:]}
	case 2:
		return Documents{Documents: docs[int(b)%len(docs)]}
	case 3:
		if b%4 == 0 {
			p := pool[int(b>>2)%len(pool)]
			return Choice{Other: &p}
		}
		return Choice{Index: int(b % 4), Backup: int(b>>2) % 4}
	case 4:
		return Propose{Physicians: pool[int(b)%len(pool) : int(b)%len(pool)+1]}
	case 5:
		return EmployerApproval{Approved: b%2 == 0}
	case 6:
		return Signature{Role: roles[int(b)%len(roles)], Agreed: b%7 != 0}
	case 7:
		var at time.Time
		if b%2 == 0 {
			at = now.Add(time.Duration(b) * time.Hour)
		}
		return Acceptance{Accept: b%5 != 0, ConsultAt: at, KeyUsable: b%3 != 0}
	case 8:
		return ConsultDate{At: now.Add(time.Duration(int(b)-50) * time.Hour)}
	case 9:
		emails := []string{so1.Email, so2.Email, outside.Email, orig.Email, "j@x.example", "hr@acme.example"}
		if b&1 == 0 {
			return KeyAvailable{Email: emails[int(b>>1)%len(emails)]}
		}
		// A withheld mail as the engine would report it, or a made-up one
		// the procedure must refuse.
		m := Mail{Seq: int(b), To: roles[int(b>>1)%len(roles)], Email: emails[int(b>>3)%len(emails)], Medical: b&2 != 0, Advice: b&8 != 0}
		for _, d := range docs[int(b>>4)%len(docs)] {
			m.Documents = append(m.Documents, d.SHA256)
		}
		return KeyMissing{Mail: m, Reason: "expired"}
	case 10:
		return Advice{NoSubstantive: b%3 == 0, Documents: docs[int(b)%len(docs)]}
	case 11:
		return Feedback{Physician: b&1 != 0, Employer: b&2 != 0}
	case 12:
		return Unclear{Role: roles[int(b)%len(roles)], Question: uint32(b % 8)}
	case 13:
		return Withdraw{By: roles[int(b)%len(roles)]}
	case 14:
		return Approve{}
	case 15:
		return Purge{}
	default:
		if c != nil && len(c.Deadlines) > 0 {
			d := c.Deadlines[int(b)%len(c.Deadlines)]
			return DeadlineReached{Step: d.Step, Kind: d.Kind}
		}
		return DeadlineReached{Step: StepChoice, Kind: Remind}
	}
}

// drive applies a byte sequence as inputs and reports a broken invariant.
func drive(t *testing.T, data []byte) {
	d := Decider{Policy: DefaultPolicy(nil)}
	var c *Case
	now := t0
	for i := 0; i+2 < len(data); i += 3 {
		// The third byte moves the clock: up to ~10 days, sometimes 21 years.
		now = now.Add(time.Duration(data[i+2]) * time.Hour)
		if data[i+2] == 255 {
			now = now.AddDate(21, 0, 0)
		}
		if c != nil && len(c.Deadlines) > 0 && data[i]%17 == 16 {
			if dl, _ := c.NextDeadline(); dl.Due.After(now) {
				now = dl.Due
			}
		}
		in := inputFrom(c, data[i], data[i+1], now)
		next, effs, err := d.Decide(c, in, now)
		if err != nil {
			if !errors.Is(err, ErrUnexpected) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrClosed) {
				t.Fatalf("step %d %s: untyped error %v", i/3, in.inputName(), err)
			}
			if next != c {
				t.Fatalf("step %d: a failed Decide changed the case", i/3)
			}
			continue
		}
		if msg := checkInvariants(c, next, effs); msg != "" {
			t.Fatalf("step %d %s (%s → %s): %s", i/3, in.inputName(), stateOf(c), next.State, msg)
		}
		for _, e := range effs {
			if m, ok := e.(Mail); ok && m.Disclosure != nil && m.Disclosure.To == RoleSO {
				for _, sha := range m.Disclosure.Documents {
					if !next.isAuthorised(sha) {
						t.Fatalf("step %d: disclosed %s outside the authorisation", i/3, sha)
					}
				}
			}
		}
		c = next
	}
}

func stateOf(c *Case) State {
	if c == nil {
		return "new"
	}
	return c.State
}

// TestDecideRandomSequences drives Decide with many random input sequences
// and checks the invariants after every step; FuzzDecide does the same with
// coverage guidance.
func TestDecideRandomSequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		data := make([]byte, 3*(5+rng.IntN(60)))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		// Most sequences should start with a request to get anywhere.
		data[0] = 0
		drive(t, data)
	}
}

func FuzzDecide(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1, 1, 3, 1, 1, 6, 0, 1, 6, 1, 1, 7, 2, 1, 10, 1, 50, 11, 3, 1})
	f.Add([]byte{0, 16, 0, 16, 0, 200, 16, 1, 255})
	f.Fuzz(func(t *testing.T, data []byte) { drive(t, data) })
}
