package message

import (
	"strings"
	"testing"
	"time"
)

func TestExtractReply(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"outlook nl", "Optie 2 graag.\n\nMet vriendelijke groet,\nJan Jansen\nAfdeling Logistiek\n\nVan: Second opinion <so+abc@example.nl>\nVerzonden: dinsdag 1 december 2026 10:00\nAan: Jan Jansen <jan@example.nl>\nOnderwerp: [SO-2026-0042] Keuze arts\n\nWelke arts kiest u? 1 of 2\n", "Optie 2 graag."},
		{"outlook en", "Yes.\n\nFrom: Second opinion <so@example.nl>\nSent: Tuesday, December 1, 2026 10:00 AM\nTo: Jan\nSubject: question\n\nDo you agree? yes/no", "Yes."},
		{"outlook web underscores", "Nee\n\n________________________________\nVan: Second opinion\nVerzonden: dinsdag\nAan: Jan\n", "Nee"},
		{"oorspronkelijk bericht", "Ja hoor\n\n-----Oorspronkelijk bericht-----\nVan: x\nJa of nee?", "Ja hoor"},
		{"original message", "Agreed\n-----Original Message-----\nFrom: x\n", "Agreed"},
		{"gmail nl wrapped", "De eerste.\n\nOp di 1 dec. 2026 om 10:00 schreef Second opinion <\nso+abc@example.nl>:\n\n> Welke arts kiest u: de eerste of de tweede?\n", "De eerste."},
		{"gmail en", "Yes\n\nOn Tue, Dec 1, 2026 at 10:00 AM Second opinion <so@example.nl> wrote:\n> Do you agree?\n", "Yes"},
		{"apple nl", "Akkoord\n\nVerstuurd vanaf mijn iPhone\n\n> Op 1 dec. 2026 om 10:00 heeft Second opinion <so@example.nl> het volgende geschreven:\n>\n> Gaat u akkoord?\n", "Akkoord"},
		{"apple en", "Sure, the second one.\n\nSent from my iPhone\n\n> On Dec 1, 2026, at 10:00, Second opinion <so@example.nl> wrote:\n> \n> Which one?", "Sure, the second one."},
		{"signature dash", "Nummer 1\n-- \nJan Jansen\n06-12345678", "Nummer 1"},
		{"sign-off mvg", "Ja prima\n\nMvg,\nPiet", "Ja prima"},
		{"sign-off groet inline", "De tweede\nGroet, Kees", "De tweede"},
		{"kind regards", "Both yes.\n\nKind regards,\nJohn Smith\nACME Ltd.", "Both yes."},
		{"disclaimer nl", "Nee.\n\nDit e-mailbericht is uitsluitend bestemd voor de geadresseerde(n). Als dit bericht niet voor u bestemd is, wordt u verzocht de afzender hiervan op de hoogte te stellen.", "Nee."},
		{"disclaimer en", "Agreed.\n\nThis e-mail and any attachments are confidential and may be privileged.", "Agreed."},
		{"bottom posting", "Op 1 dec. 2026 om 10:00 schreef Second opinion <so@example.nl>:\n> Welke arts kiest u?\n> 1 of 2\n\nDe tweede graag.\n", "De tweede graag."},
		{"quote then answer no attribution", "> Gaat u akkoord?\n\nJa\n", "Ja"},
		{"interleaved keeps own text", "Hallo,\n\nIk kies de eerste.\n", "Hallo,\n\nIk kies de eerste."},
		{"forward marker", "Zie hieronder.\n\n---------- Forwarded message ---------\nFrom: Jan <jan@example.nl>\nDate: Tue\nSubject: x\n\ntekst", "Zie hieronder."},
		{"outlook mobile", "Ja\n\nVerzonden met Outlook voor Android\n________________________________\nFrom: Second opinion\nSent: Tuesday\nTo: x\nSubject: y\n", "Ja"},
		{"text mentioning van not a header", "Van mij mag het.\nAan de werkgever niet.", "Van mij mag het.\nAan de werkgever niet."},
		{"crlf", "Ja\r\n\r\nOn Tue, Dec 1, 2026 at 10:00 AM X <x@y.nl> wrote:\r\n> q\r\n", "Ja"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExtractReply(tt.in); got != tt.want {
				t.Errorf("ExtractReply:\n%s\ngot  %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"paragraphs", "<html><head><style>p{}</style></head><body><p>Ja&nbsp;graag</p><p>Groet</p></body></html>", "Ja graag\n\nGroet\n"},
		{"br and entities", "Optie&nbsp;2<br>Caf&eacute; &amp; co", "Optie 2\nCafé & co\n"},
		{"blockquote", "<div>Nee</div><blockquote><div>Vraag?</div></blockquote>", "Nee\n> Vraag?\n"},
		{"hr", "Ja<hr><b>Van:</b> x", "Ja\n________________________________\nVan: x\n"},
		{"list", "<ul><li>een</li><li>twee</li></ul>", "- een\n- twee\n"},
		{"comment and script", "<!-- x --><script>alert(1)</script>tekst", "tekst\n"},
		{"lone lt", "1 < 2", "1 < 2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HTMLToText(tt.in); got != tt.want {
				t.Errorf("HTMLToText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestPathologicalInputIsFast(t *testing.T) {
	n := 100000
	if raceEnabled {
		n = 10000 // the race detector slows regexp matching twentyfold
	}
	tests := []struct {
		name string
		f    func()
	}{
		{"unterminated tags", func() { HTMLToText(strings.Repeat(`<a "`, 2*n)) }},
		{"unclosed styles", func() { HTMLToText(strings.Repeat(`<style>x`, n)) }},
		{"many quote lines", func() { ExtractReply(strings.Repeat(">\n\n\n", n)) }},
		{"many sign-offs", func() { ExtractReply(strings.Repeat("groet\n\n\n", n)) }},
		{"long answer", func() { ParseAnswer(KindYesNo, strings.Repeat("liever niet ", n), QuestionContext{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			tt.f()
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
