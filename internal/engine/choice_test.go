package engine_test

import (
	"strings"
	"testing"

	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
)

// An employee may name a physician who was not proposed. Only a
// second-opinion physician of the registry can be chosen that way: naming
// a physician the registry knows only as an employee's own physician gets
// the unclear-answer mail, and the case goes on waiting for a choice.
func TestEmployeeNamesAPhysicianByRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.openChoosing()
	q := e.question(rig.AddrEmployee, "kies")
	in := e.deliver(e.plain("Şahin Yılmaz", rig.AddrEmployee, q.replyTo(t), "Re: "+q.Msg.Subject, "Ik kies liever dr. A. de Vries.", q.Msg.MessageID))
	if in.Status != store.InboundProcessed {
		t.Fatalf("reply: %s %q", in.Status, in.Reason)
	}
	got := e.caseOf(c.ID, procedure.StateChoosing)
	if got.Chosen != nil {
		t.Fatalf("chosen %s, who is registered only as an employee's own physician", got.Chosen.Name)
	}
	if again := e.question(rig.AddrEmployee, "begrepen uw antwoord niet"); !strings.Contains(again.Msg.Subject, c.Ref) {
		t.Errorf("follow-up %q is not about the case", again.Msg.Subject)
	}
}
