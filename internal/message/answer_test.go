package message

import (
	"testing"
	"time"
)

var (
	testLoc  = amsterdam()
	testNow  = time.Date(2026, 12, 1, 9, 0, 0, 0, testLoc)
	testOpts = []string{"Dr. A. de Vries", "drs. Petra Bakker-Jansen"}
)

func TestParseAnswer(t *testing.T) {
	q := QuestionContext{Options: testOpts, Now: testNow, Loc: testLoc}
	tests := []struct {
		name   string
		kind   Kind
		reply  string
		want   Kind
		value  string
		backup int
	}{
		// choice
		{"choice number", KindChoice, "1", KindChoice, "1", 0},
		{"choice optie", KindChoice, "Ik kies optie 2.", KindChoice, "2", 0},
		{"choice nummer", KindChoice, "nummer 2 graag", KindChoice, "2", 0},
		{"choice surname", KindChoice, "Doe maar De Vries", KindChoice, "1", 0},
		{"choice surname diacritics case", KindChoice, "mevrouw BAKKER-JANSEN graag", KindChoice, "2", 0},
		{"choice first name", KindChoice, "Petra lijkt me prima", KindChoice, "2", 0},
		{"choice ordinal nl", KindChoice, "De tweede.", KindChoice, "2", 0},
		{"choice ordinal en", KindChoice, "I'll take the first one", KindChoice, "1", 0},
		{"choice eerste", KindChoice, "eerste", KindChoice, "1", 0},
		{"choice with backup", KindChoice, "2, en als reserve 1", KindChoice, "2", 1},
		{"choice backup colon", KindChoice, "Ik kies dr. De Vries. Backup: de tweede", KindChoice, "1", 2},
		{"choice tweede keus", KindChoice, "Voorkeur voor Bakker, tweede keus De Vries", KindChoice, "2", 1},
		{"choice other physician", KindChoice, "Ik kies liever dr. Bakker", KindChoice, "2", 0},
		{"choice not proposed", KindChoice, "Ik kies liever dr. Smit", KindChoice, "other:Smit", 0},
		{"choice two", KindChoice, "1 of 2, maakt me niet uit", KindUnclear, "", 0},
		{"choice both named", KindChoice, "De Vries en Bakker zijn allebei goed", KindUnclear, "", 0},
		{"choice maybe", KindChoice, "Misschien de eerste?", KindUnclear, "", 0},
		{"choice out of range", KindChoice, "optie 3", KindUnclear, "", 0},
		{"choice neither", KindChoice, "Geen van beiden, ik wil iemand anders", KindUnclear, "", 0},
		{"choice in eerste instantie", KindChoice, "In eerste instantie wil ik de tweede arts", KindChoice, "2", 0},
		{"choice negated", KindChoice, "Niet De Vries, doe maar Bakker", KindChoice, "2", 0},
		{"choice question only", KindChoice, "Wie van de twee is het dichtst bij?", KindUnclear, "", 0},
		{"choice nothing", KindChoice, "Bedankt voor uw bericht.", KindUnclear, "", 0},
		// yes/no
		{"yes ja", KindYesNo, "Ja", KindYesNo, "yes", 0},
		{"yes akkoord", KindYesNo, "Akkoord.", KindYesNo, "yes", 0},
		{"yes ik ga akkoord", KindYesNo, "Ik ga akkoord", KindYesNo, "yes", 0},
		{"yes geen bezwaar", KindYesNo, "Daar heb ik geen bezwaar tegen", KindYesNo, "yes", 0},
		{"yes agreed", KindYesNo, "Agreed", KindYesNo, "yes", 0},
		{"yes no objection", KindYesNo, "No objection.", KindYesNo, "yes", 0},
		{"yes with question", KindYesNo, "Ja. Wanneer hoor ik meer?", KindYesNo, "yes", 0},
		{"no nee", KindYesNo, "nee", KindYesNo, "no", 0},
		{"no niet akkoord", KindYesNo, "Niet akkoord", KindYesNo, "no", 0},
		{"no ik ga niet akkoord", KindYesNo, "Ik ga er niet mee akkoord", KindYesNo, "no", 0},
		{"no do not agree", KindYesNo, "I do not agree", KindYesNo, "no", 0},
		{"no don't agree", KindYesNo, "I don't agree with this", KindYesNo, "no", 0},
		{"no bezwaar", KindYesNo, "Ik maak bezwaar", KindYesNo, "no", 0},
		{"no zeker niet", KindYesNo, "Zeker niet!", KindYesNo, "no", 0},
		{"unclear ja nee", KindYesNo, "ja... nee", KindUnclear, "", 0},
		{"unclear misschien", KindYesNo, "misschien", KindUnclear, "", 0},
		{"unclear question", KindYesNo, "Moet ik ja zeggen?", KindUnclear, "", 0},
		{"unclear template echo", KindYesNo, "ja/nee", KindUnclear, "", 0},
		{"template echo answered", KindYesNo, "Antwoord (ja/nee): ja", KindYesNo, "yes", 0},
		// consent
		{"consent labelled", KindConsent, "bedrijfsarts: ja, werkgever: nee", KindConsent, "physician=yes,employer=no", 0},
		{"consent numbered", KindConsent, "1 ja 2 nee", KindConsent, "physician=yes,employer=no", 0},
		{"consent numbered lines", KindConsent, "1. nee\n2. ja", KindConsent, "physician=no,employer=yes", 0},
		{"consent only physician", KindConsent, "alleen mijn bedrijfsarts", KindConsent, "physician=yes,employer=no", 0},
		{"consent only employer en", KindConsent, "Only my employer", KindConsent, "physician=no,employer=yes", 0},
		{"consent both yes", KindConsent, "beide ja", KindConsent, "physician=yes,employer=yes", 0},
		{"consent ja beide", KindConsent, "Ja, allebei", KindConsent, "physician=yes,employer=yes", 0},
		{"consent neither", KindConsent, "geen van beiden", KindConsent, "physician=no,employer=no", 0},
		{"consent allebei niet", KindConsent, "allebei niet", KindConsent, "physician=no,employer=no", 0},
		{"consent wel niet", KindConsent, "Wel naar mijn bedrijfsarts, niet naar mijn werkgever", KindConsent, "physician=yes,employer=no", 0},
		{"consent mag", KindConsent, "Mijn bedrijfsarts mag het advies krijgen, mijn werkgever niet.", KindConsent, "physician=yes,employer=no", 0},
		{"consent english", KindConsent, "Physician: yes. Employer: no.", KindConsent, "physician=yes,employer=no", 0},
		{"consent bare ja", KindConsent, "ja", KindUnclear, "", 0},
		{"consent one missing", KindConsent, "bedrijfsarts ja", KindUnclear, "", 0},
		{"consent contradictory", KindConsent, "werkgever ja, werkgever nee", KindUnclear, "", 0},
		// datetime
		{"dt dutch", KindDateTime, "10 december om 14:30", KindDateTime, "2026-12-10T14:30", 0},
		{"dt numeric", KindDateTime, "10-12-2026 14.30", KindDateTime, "2026-12-10T14:30", 0},
		{"dt weekday", KindDateTime, "dinsdag 15 december 10:00", KindDateTime, "2026-12-15T10:00", 0},
		{"dt english", KindDateTime, "Dec 10, 2:30 pm", KindDateTime, "2026-12-10T14:30", 0},
		{"dt uur", KindDateTime, "Op 3 januari om 9 uur", KindDateTime, "2027-01-03T09:00", 0},
		{"dt iso", KindDateTime, "2026-12-11 09:15", KindDateTime, "2026-12-11T09:15", 0},
		{"dt wrong weekday", KindDateTime, "maandag 15 december 10:00", KindUnclear, "", 0},
		{"dt past", KindDateTime, "1 november 2026 om 10:00", KindUnclear, "", 0},
		{"dt no time", KindDateTime, "10 december", KindUnclear, "", 0},
		{"dt no date", KindDateTime, "om 14:30", KindUnclear, "", 0},
		{"dt two times", KindDateTime, "10 december om 10:00 of 14:00", KindUnclear, "", 0},
		{"dt invalid", KindDateTime, "31-02-2027 10:00", KindUnclear, "", 0},
		// refusal
		{"refusal confirm", KindRefusal, "Ik bevestig de vraagstelling.", KindRefusal, "confirmed", 0},
		{"refusal", KindRefusal, "Ik weiger dit verzoek: het is de derde aanvraag binnen een half jaar over dezelfde kwestie.", KindRefusal, "Ik weiger dit verzoek: het is de derde aanvraag binnen een half jaar over dezelfde kwestie.", 0},
		{"refusal without reason", KindRefusal, "Ik weiger.", KindUnclear, "", 0},
		{"refusal niet akkoord is refusal", KindRefusal, "Niet akkoord, want er loopt al een deskundigenoordeel bij het UWV.", KindRefusal, "Niet akkoord, want er loopt al een deskundigenoordeel bij het UWV.", 0},
		// question
		{"question", KindQuestion, "Wie betaalt de reiskosten?", KindQuestion, "Wie betaalt de reiskosten?", 0},
		{"empty", KindQuestion, "  ", KindUnclear, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ParseAnswer(tt.kind, tt.reply, q)
			if a.Kind != tt.want || a.Value != tt.value || a.Backup != tt.backup {
				t.Errorf("ParseAnswer(%s, %q) = kind %q value %q backup %d (why %q); want %q %q %d",
					tt.kind, tt.reply, a.Kind, a.Value, a.Backup, a.Why, tt.want, tt.value, tt.backup)
			}
			if a.Kind == KindUnclear && a.Why == "" {
				t.Errorf("unclear answer without Why")
			}
		})
	}
}
