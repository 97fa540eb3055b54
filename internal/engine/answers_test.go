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

// An employee who takes the request back in a new mail, not a reply to
// ours, opens no second case: the mail is kept for the backoffice, and the
// open case goes on as it was (a From without a reply token cannot change
// a case).
func TestWithdrawalWithoutReferenceOpensNoCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.openIntake()
	for _, tt := range []struct{ subject, text, word string }{
		{"Second opinion", "Beste,\n\nIk trek mijn aanvraag voor een second opinion in. Het is opgelost met mijn bedrijfsarts.\n\nŞahin", "trek mijn aanvraag"},
		{"Intrekken second opinion", "Ik wil toch geen second opinion meer.", "intrekken"},
		{"Second opinion request", "I withdraw my request for a second opinion.", "withdraw"},
	} {
		before := e.snapshot()
		in := e.deliver(e.plain("Şahin Yılmaz", rig.AddrEmployee, e.info.Address(), tt.subject, tt.text, ""))
		e.quarantinedWith(before, in, "withdrawal", tt.word)
	}
}

// The original physician may confirm the question first and send the
// documents later, as the intake_documents mail asks: the employee then
// gets the proposal, and the backoffice no alert.
func TestDocumentsAfterTheConfirmation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.openIntake()
	q := e.question(rig.AddrOriginal, "vraagstelling")
	in := e.deliver(e.signed(rig.AddrOriginal, "A. de Vries", rig.AddrOriginal, q.replyTo(t), "Re: "+q.Msg.Subject,
		"BEVESTIGD\n\nDe stukken volgen.\n\nA. de Vries", q.Msg.MessageID))
	if in.Status != store.InboundProcessed {
		t.Fatalf("confirmation: %s %q", in.Status, in.Reason)
	}
	e.caseOf(c.ID, procedure.StateIntake)
	docs := e.question(rig.AddrOriginal, "medische stukken")
	before := e.snapshot()
	in = e.deliver(e.signed(rig.AddrOriginal, "A. de Vries", rig.AddrOriginal, docs.replyTo(t), "Re: "+docs.Msg.Subject,
		"Hierbij de probleemanalyse.\n\nA. de Vries", docs.Msg.MessageID,
		rig.File{Name: "Probleemanalyse.pdf", Body: []byte("%PDF-1.4 probleemanalyse")}))
	if in.Status != store.InboundProcessed {
		t.Fatalf("documents: %s %q", in.Status, in.Reason)
	}
	got := e.caseOf(c.ID, procedure.StateChoosing)
	if len(got.Proposed) == 0 {
		t.Fatal("no physicians proposed")
	}
	e.question(rig.AddrEmployee, "kies")
	if after := e.snapshot(); after.alerts != before.alerts {
		t.Errorf("alerts went from %d to %d", before.alerts, after.alerts)
	}
}
