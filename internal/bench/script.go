package bench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Cast is who takes part in the bench's cases besides the employees: the
// service, the original physician, and the second-opinion physicians the
// daemon may propose (by the name the proposal shows).
type Cast struct {
	Service  string // the service's address
	Original *Person
	// SO are the second-opinion physicians by name.
	SO map[string]*Person
}

// CaseScript is the happy path of one case, played by its participants:
// request → intake with the medical file (signed and encrypted) → choice →
// both signatures → acceptance with a consult date → advice (signed and
// encrypted) → feedback consent → completion.
type CaseScript struct {
	D        *Driver
	Cast     Cast
	Employee *Person
	// Attachment is the medical file's size in bytes.
	Attachment int
	// Quote makes plain replies quote the original, as mail clients do.
	Quote bool
}

// Done is what a finished case left for the checks.
type Done struct {
	Ref      string
	SO       string // the chosen physician's address
	Duration time.Duration
	// Reactions are the daemon's reaction times, one per answered step:
	// from the participant's mail accepted by SMTP to the daemon's answer
	// accepted by SMTP (the answer to both signatures is timed from the
	// later one).
	Reactions []Reaction
}

// Reaction is the daemon's reaction time in one step of a case.
type Reaction struct {
	Step string // one of ReactionSteps
	Took time.Duration
}

// ReactionSteps are the daemon's answers that are timed, in the order of a
// case, named by what the daemon sends.
var ReactionSteps = []string{"acknowledgement", "proposal", "form", "physician request", "forwarding", "feedback question", "completion"}

// Steps is how many mails the participants send per case.
const Steps = 8

// Run plays the case to completion.
func (s *CaseScript) Run(ctx context.Context) (*Done, error) {
	start := time.Now()
	d, emp, orig := s.D, s.Employee, s.Cast.Original
	fail := func(step string, err error) (*Done, error) {
		return nil, fmt.Errorf("%s: %s: %w", emp.Addr, step, err)
	}
	var sent time.Time // when the last participant mail was accepted
	var reactions []Reaction
	stamp := func(id string, err error) error {
		if err != nil {
			return err
		}
		if t, ok := d.Box.AcceptedAt(id); ok && t.After(sent) {
			sent = t
		}
		return nil
	}
	answered := func(step string, m *Mail) {
		if !sent.IsZero() && m.At.After(sent) {
			reactions = append(reactions, Reaction{Step: step, Took: m.At.Sub(sent)})
		}
		sent = time.Time{}
	}
	reply := func(p *Person, m *Mail, text string, encrypt bool, files ...File) error {
		quote := ""
		if s.Quote && !encrypt {
			if t, err := d.ReadText(p, m); err == nil {
				quote = t
			}
		}
		err := stamp(d.Reply(ctx, p, m, text, quote, encrypt, files...))
		d.Box.Release(m)
		return err
	}
	if err := stamp(d.Send(ctx, emp, s.Cast.Service, "Aanvraag second opinion",
		"Goedemiddag,\n\nIk ben het niet eens met het advies van mijn bedrijfsarts over mijn re-integratie en wil graag een second opinion.\n\n"+
			"Naam: "+emp.Name+"\nWerkgever: Acme Logistiek BV\nBedrijfsarts: "+orig.Name+", "+orig.Addr+"\n"+
			"Onderwerp: verzuimbegeleiding\nVraag: Kan ik mijn eigen werk in aangepaste vorm hervatten?\n\nMet vriendelijke groet,\n"+emp.Name, "", false)); err != nil {
		return fail("request", err)
	}
	ack, err := d.Wait(ctx, emp, "", "ontvangen")
	if err != nil {
		return fail("acknowledgement", err)
	}
	answered(ReactionSteps[0], ack)
	d.Box.Release(ack)
	ref := ack.Ref
	if ref == "" {
		return fail("acknowledgement", fmt.Errorf("no case reference in %q", ack.Subject))
	}
	intake, err := d.Wait(ctx, orig, ref, "vraagstelling")
	if err != nil {
		return fail("intake", err)
	}
	doc := File{Name: "Probleemanalyse.pdf", Body: FakePDF(s.Attachment)}
	if err := reply(orig, intake, "Akkoord met de vraagstelling.\n\nVraag: Kan werknemer het eigen werk in aangepaste vorm hervatten?\n\nBijgevoegd de probleemanalyse.\n\n"+orig.Name, true, doc); err != nil {
		return fail("intake answer", err)
	}
	prop, err := d.Wait(ctx, emp, ref, "kies")
	if err != nil {
		return fail("proposal", err)
	}
	answered(ReactionSteps[1], prop)
	text, err := d.ReadText(emp, prop)
	if err != nil {
		return fail("proposal", err)
	}
	so := s.firstProposed(text)
	if so == nil {
		return fail("proposal", fmt.Errorf("no known physician proposed first in:\n%s", text))
	}
	if err := reply(emp, prop, "Ik kies nummer 1.", false); err != nil {
		return fail("choice", err)
	}
	formE, err := d.Wait(ctx, emp, ref, "machtigingsformulier")
	if err != nil {
		return fail("form", err)
	}
	answered(ReactionSteps[2], formE)
	if err := reply(emp, formE, "Akkoord", false); err != nil {
		return fail("employee signature", err)
	}
	formP, err := d.Wait(ctx, orig, ref, "medeondertekening")
	if err != nil {
		return fail("co-signature request", err)
	}
	if err := reply(orig, formP, "AKKOORD\n\n"+orig.Name, true); err != nil {
		return fail("co-signature", err)
	}
	req, err := d.Wait(ctx, so, ref, "second opinion doen")
	if err != nil {
		return fail("acceptance request", err)
	}
	answered(ReactionSteps[3], req)
	consult := consultDate(d.Now())
	if err := reply(so, req, "Ja, ik neem de second opinion aan. Consult op "+consult.Format("2006-01-02")+" om 14:30.\n\n"+so.Name, false); err != nil {
		return fail("acceptance", err)
	}
	fwd, err := d.Wait(ctx, so, ref, "medische stukken")
	if err != nil {
		return fail("forward", err)
	}
	answered(ReactionSteps[4], fwd)
	_, files, err := d.Read(so, fwd)
	if err != nil {
		return fail("forward", err)
	}
	d.Box.Release(fwd)
	if len(files) != 1 || !bytes.Equal(files[0].Body, doc.Body) {
		return fail("forward", fmt.Errorf("%d documents forwarded, want the one medical file intact", len(files)))
	}
	adv, err := d.Wait(ctx, so, ref, "graag uw advies")
	if err != nil {
		return fail("advice request", err)
	}
	if err := reply(so, adv, "Hierbij mijn advies na het consult.\n\n"+so.Name, true,
		File{Name: "Advies second opinion.pdf", Body: FakePDF(4 << 10)}); err != nil {
		return fail("advice", err)
	}
	fb, err := d.Wait(ctx, emp, ref, "gedeeld")
	if err != nil {
		return fail("feedback question", err)
	}
	answered(ReactionSteps[5], fb)
	if err := reply(emp, fb, "bedrijfsarts: ja, werkgever: nee", false); err != nil {
		return fail("feedback consent", err)
	}
	var first *Mail
	for _, p := range []*Person{orig, emp} {
		m, err := d.Wait(ctx, p, ref, "afgerond")
		if err != nil {
			return fail("completion", err)
		}
		if first == nil || m.At.Before(first.At) {
			first = m
		}
		d.Box.Release(m)
	}
	answered(ReactionSteps[6], first)
	return &Done{Ref: ref, SO: so.Addr, Duration: time.Since(start), Reactions: reactions}, nil
}

// firstProposed finds the physician listed as "1. Name" in the proposal.
func (s *CaseScript) firstProposed(text string) *Person {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "1. "); ok {
			if p := s.Cast.SO[strings.TrimSpace(name)]; p != nil {
				return p
			}
		}
	}
	return nil
}

// consultDate is a Tuesday at least a week after now.
func consultDate(now time.Time) time.Time {
	t := now.AddDate(0, 0, 7)
	for t.Weekday() != time.Tuesday {
		t = t.AddDate(0, 0, 1)
	}
	return t
}

// FakePDF makes a stand-in medical file of about size bytes: a PDF header
// and random (incompressible) content, as a scanned report would be. The
// content comes from a randomly seeded ChaCha8 stream: as incompressible
// as crypto/rand, at a fraction of its cost per megabyte.
func FakePDF(size int) []byte {
	const head, tail = "%PDF-1.4\n% bench document\n", "%%EOF\n"
	b := make([]byte, 0, max(size, len(head)+len(tail)))
	b = append(b, head...)
	if n := size - len(head) - len(tail); n > 0 {
		var seed [32]byte
		_, _ = crand.Read(seed[:])
		_, _ = rand.NewChaCha8(seed).Read(b[len(b) : len(b)+n])
		b = b[:len(b)+n]
	}
	return append(b, tail...)
}
