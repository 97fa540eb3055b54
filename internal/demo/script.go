package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"secondopinion/internal/message"
	"secondopinion/internal/rig"
)

// script plays the participants. Each step waits for the mail the daemon
// sends, and answers it the way the person would.
func (d *run) script(ctx context.Context) error {
	r0 := d.r
	employee, employee2, employer := r0.Person(rig.AddrEmployee), r0.Person(rig.AddrEmployee2), r0.Person(rig.AddrEmployer)
	original, jansen, bakker := r0.Person(rig.AddrOriginal), r0.Person(rig.AddrJansen), r0.Person(rig.AddrBakker)
	act := func(p *rig.Person, format string, a ...any) { d.tl.event(p.Name, format, a...) }
	say := func(format string, a ...any) { d.tl.event("", format, a...) }

	// A request out of scope: an aanstellingskeuring has its own route.
	act(employee2, "asks for a second opinion on a pre-employment examination")
	if err := r0.Send(ctx, employee2, r0.Info.Address(), "Second opinion aanstellingskeuring",
		"Hallo,\n\nIk ben afgekeurd bij de aanstellingskeuring voor mijn nieuwe baan en wil een second opinion.\n\n"+
			"Naam: Łukasz Kowalski\nWerkgever: Acme Logistiek BV\nBedrijfsarts: A. de Vries, a.devries@arbo-noord.example\n"+
			"Onderwerp: aanstellingskeuring\nVraag: Klopt de afkeuring?\n\nGroet,\nŁukasz", "", false); err != nil {
		return err
	}
	r, err := r0.Next(ctx, employee2, "aanstellingskeuring")
	if err != nil {
		return err
	}
	act(employee2, "is told the route: %q", firstLine(r.Text(), "herkeuring"))

	// The main case, from request to completion.
	act(employee, "asks for a second opinion from the phone")
	if err := r0.Send(ctx, employee, r0.Info.Address(), "Aanvraag second opinion",
		"Goedemiddag,\n\nIk ben het niet eens met het advies van mijn bedrijfsarts over mijn re-integratie en wil graag een second opinion.\n\n"+
			"Naam: Şahin Yılmaz\nWerkgever: Acme Logistiek BV\nBedrijfsarts: A. de Vries, a.devries@arbo-noord.example\n"+
			"Onderwerp: verzuimbegeleiding\nVraag: Kan ik met mijn rugklachten mijn eigen werk als magazijnmedewerker in aangepaste vorm hervatten?\n\n"+
			"Met vriendelijke groet,\nŞahin\n\nVerstuurd vanaf mijn iPhone", "", false); err != nil {
		return err
	}
	if _, err := r0.Next(ctx, employee, "ontvangen"); err != nil {
		return err
	}
	act(employee, "receives the acknowledgement: the own physician's advice holds meanwhile; not anonymous")

	r0.Clock.Advance(3 * time.Hour)
	r, err = r0.Next(ctx, original, "vraagstelling")
	if err != nil {
		return err
	}
	act(original, "decrypts the intake (%d earlier requests shown) and confirms the question, with 2 documents, signed and encrypted", earlier(r.Text()))
	docs := []rig.File{
		{Name: "Probleemanalyse 2026-02-10.pdf", Body: fakePDF("Probleemanalyse Şahin Yılmaz, 10 februari 2026")},
		{Name: "Brief orthopeed 2026-01-28.pdf", Body: fakePDF("Brief orthopedisch chirurg, 28 januari 2026")},
	}
	if err := r0.Reply(ctx, original, r, "Akkoord met de vraagstelling.\n\nVraag: Kan werknemer met de huidige rugklachten het eigen werk als magazijnmedewerker in aangepaste vorm (zonder tillen boven 10 kg) hervatten?\n\nBijgevoegd de probleemanalyse en de brief van de orthopeed.\n\nMet collegiale groet,\nA. de Vries, bedrijfsarts", true, docs...); err != nil {
		return err
	}
	r, err = r0.Next(ctx, employee, "kies")
	if err != nil {
		return err
	}
	act(employee, "gets the proposal (%s) ... and forgets to answer", strings.Join(proposed(r.Text()), ", "))

	r0.Clock.Advance(25 * time.Hour)
	say("the clock moves 25 hours; the sweep finds the reminder due")
	if _, err := r0.Engine.Sweep(ctx); err != nil {
		return err
	}
	r, err = r0.Next(ctx, employee, "herinnering")
	if err != nil {
		return err
	}
	act(employee, "gets the reminder and answers: \"Sorry, vergeten! Ik kies nummer 2, en als reserve 1.\"")
	if err := r0.Reply(ctx, employee, r, "Sorry, vergeten! Ik kies nummer 2, en als reserve 1.\n\nGroet Şahin\n\nVerstuurd vanaf mijn iPhone", false); err != nil {
		return err
	}

	r, err = r0.Next(ctx, employee, "machtigingsformulier")
	if err != nil {
		return err
	}
	if err := d.saveForm(r, "employee"); err != nil {
		return err
	}
	act(employee, "reads the machtigingsformulier (forms/) and replies AKKOORD")
	r0.Clock.Advance(2 * time.Hour)
	if err := r0.Reply(ctx, employee, r, "Akkoord", false); err != nil {
		return err
	}
	r, err = r0.Next(ctx, original, "medeondertekening")
	if err != nil {
		return err
	}
	act(original, "co-signs with a PGP-signed AKKOORD")
	if err := r0.Reply(ctx, original, r, "AKKOORD\n\nA. de Vries", true); err != nil {
		return err
	}

	r, err = r0.Next(ctx, jansen, "second opinion doen")
	if err != nil {
		return err
	}
	act(jansen, "is asked to take the case, and is unavailable")
	r0.Clock.Advance(3 * time.Hour)
	if err := r0.Reply(ctx, jansen, r, "Nee, helaas. Ik ben de komende drie weken afwezig.\n\nC. Jansen", false); err != nil {
		return err
	}
	r, err = r0.Next(ctx, bakker, "second opinion doen")
	if err != nil {
		return err
	}
	act(bakker, "the backup, accepts: \"Ja, consult op dinsdag 10 maart om 14:30.\"")
	if err := r0.Reply(ctx, bakker, r, "Ja, ik neem de second opinion aan. Consult op dinsdag 10 maart om 14:30.\n\nB. Bakker", false); err != nil {
		return err
	}
	r, err = r0.Next(ctx, bakker, "medische stukken")
	if err != nil {
		return err
	}
	act(bakker, "decrypts the forwarded question and %d documents; hashes match the form: %v", len(r.Inner.Attachments), hashesMatch(r, docs))
	if _, err := r0.Next(ctx, employee, "gepland"); err != nil {
		return err
	}
	act(employee, "is told the consult is planned")
	r, err = r0.Next(ctx, bakker, "advies")
	if err != nil {
		return err
	}

	r0.Clock.Set(time.Date(2026, 3, 10, 16, 30, 0, 0, rig.Amsterdam))
	act(bakker, "after the consult, sends the advice, signed and encrypted")
	if err := r0.Reply(ctx, bakker, r, "Hierbij mijn advies na het consult van vandaag.\n\nB. Bakker", true,
		rig.File{Name: "Advies second opinion.pdf", Body: fakePDF("Advies: hervatting eigen werk in aangepaste vorm is mogelijk")}); err != nil {
		return err
	}
	if _, err := r0.Next(ctx, employee, "beveiligd", "advies van uw second opinion"); err != nil {
		return err
	}
	act(employee, "has no PGP key: gets a content-free notice, never the advice in clear")
	r, err = r0.Next(ctx, employee, "gedeeld")
	if err != nil {
		return err
	}
	r0.Clock.Advance(20 * time.Hour)
	act(employee, "consents: \"bedrijfsarts: ja, werkgever: nee\"")
	if err := r0.Reply(ctx, employee, r, "bedrijfsarts: ja, werkgever: nee\n\nŞahin", false); err != nil {
		return err
	}
	r, err = r0.Next(ctx, original, "afgerond")
	if err != nil {
		return err
	}
	act(original, "receives the completion notice with the advice, encrypted (%d attachment)", len(r.Inner.Attachments))
	if _, err := r0.Next(ctx, employee, "afgerond"); err != nil {
		return err
	}
	act(employee, "is offered a follow-up with the own physician")
	if n := len(r0.World.Inbox(rig.AddrEmployer)); n != 0 {
		return fmt.Errorf("the employer received %d mails without the employee's consent", n)
	}
	act(employer, "heard nothing: the employee did not consent and the employer did not ask")
	return nil
}

// saveForm keeps the PDF form a participant received in forms/.
func (d *run) saveForm(r *rig.Received, who string) error {
	var pdf []byte
	for _, f := range r.Files {
		if strings.HasSuffix(f.Name, ".pdf") {
			pdf = f.Body
		}
	}
	if pdf == nil {
		return fmt.Errorf("no form attached to %q", r.Msg.Subject)
	}
	d.forms++
	return os.WriteFile(filepath.Join(d.o.Out, "forms", fmt.Sprintf("%s-%s.pdf", strings.ToLower(message.CaseRef(r.Msg.Subject)), who)), pdf, 0o600)
}

func firstLine(text, word string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(strings.ToLower(l), word) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func earlier(text string) int {
	for _, l := range strings.Split(text, "\n") {
		var n int
		if i := strings.Index(strings.ToLower(l), "eerdere"); i >= 0 {
			for _, f := range strings.Fields(l) {
				if _, err := fmt.Sscanf(f, "%d", &n); err == nil {
					return n
				}
			}
		}
	}
	return 0
}

func proposed(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if len(l) > 3 && (strings.HasPrefix(l, "1.") || strings.HasPrefix(l, "2.") || strings.HasPrefix(l, "1 ") || strings.HasPrefix(l, "2 ")) {
			out = append(out, l)
		}
	}
	return out
}

func hashesMatch(r *rig.Received, sent []rig.File) bool {
	if r.Inner == nil || len(r.Inner.Attachments) != len(sent) {
		return false
	}
	want := map[string]bool{}
	for _, a := range sent {
		s := sha256.Sum256(a.Body)
		want[hex.EncodeToString(s[:])] = true
	}
	for _, a := range r.Inner.Attachments {
		if !want[a.SHA256] {
			return false
		}
	}
	return true
}

// fakePDF makes a small stand-in document; its content is what a hash
// check needs, not a real report.
func fakePDF(title string) []byte {
	return []byte("%PDF-1.4\n% demo document\n% " + title + "\n%%EOF\n")
}
