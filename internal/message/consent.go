package message

import (
	"fmt"
	"regexp"
	"strings"
)

// The two consent questions (step 8 of the procedure): may the advice go
// to the own physician (1), and to the employer (2).
const (
	subjPhysician = 1 << iota
	subjEmployer
	subjBoth = subjPhysician | subjEmployer
)

var (
	physicianWords = set("bedrijfsarts", "arts", "physician", "doctor", "dokter", "huisarts", "occupational", "bedrijfsartsen")
	employerWords  = set("werkgever", "employer", "leidinggevende", "manager", "baas", "werkgevers", "hr", "organisatie", "company", "bedrijf")
	bothWords      = set("beide", "beiden", "allebei", "both", "tweeen", "alle")
	onlyWords      = set("alleen", "enkel", "uitsluitend", "only", "slechts")
	// Verbs that say yes in a consent answer ("mijn arts mag het zien"),
	// negated by "niet" before or after them.
	consentVerbs = set("mag", "mogen", "wel", "wil", "graag", "krijgen", "ontvangen", "informeren", "delen", "sturen", "may", "can")
	neitherRE    = regexp.MustCompile(`\b(neither|none|geen van (beide|beiden|tweeen|de twee|allen)|allebei niet|beide niet|beiden niet|aan niemand|niemand|nobody|no one)\b`)
	clauseWordRE = regexp.MustCompile(`\b(en|and|maar|but|echter|however)\b`)
)

func parseConsent(reply string) Answer {
	kept, asked := sentences(reply)
	folded := fold(strings.Join(kept, "\n"))
	if m := hesitantRE.FindString(folded); m != "" {
		return unclear(reply, fmt.Sprintf("hesitant answer (%q)", m))
	}
	folded = echoRE.ReplaceAllString(folded, " ")
	if neitherRE.MatchString(folded) && !strings.Contains(folded, "alleen") && !strings.Contains(folded, "only") {
		return consentAnswer(false, false)
	}
	// Clauses: split at , ; . newline and at "en", "maar" ….
	folded = clauseWordRE.ReplaceAllString(folded, " ; ")
	var clauses [][]string
	var cur []string
	for _, w := range words(folded) {
		if w == "," || w == ";" || w == "\n" || w == "." && !(len(cur) > 0 && isDigits(cur[len(cur)-1])) {
			clauses = append(clauses, cur)
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	clauses = append(clauses, cur)

	var yes, no int // bit sets of subjects
	var pendingSubj int
	var pendingPol *bool
	only := 0
	for _, c := range clauses {
		subj, subjs := 0, []int{}
		var pols []bool
		consumed := make([]bool, len(c))
		for i, w := range c {
			s := 0
			switch {
			case physicianWords[w] || w == "1" && !numberFollows(c, i):
				s = subjPhysician
			case employerWords[w] || w == "2" && !numberFollows(c, i):
				s = subjEmployer
			case bothWords[w]:
				s = subjBoth
			}
			if s == 0 {
				continue
			}
			for j := i - 1; j >= 0 && j >= i-4; j-- {
				if onlyWords[c[j]] {
					only |= s
				}
			}
			subj |= s
			subjs = append(subjs, s)
		}
		for _, sig := range polarity(strings.Join(c, " ")) {
			pols = append(pols, sig.yes)
		}
		// Consent verbs, negated by a nearby "niet", and a bare negation
		// of a subject ("niet mijn werkgever", "allebei niet").
		for i, w := range c {
			if !consentVerbs[w] && !(physicianWords[w] || employerWords[w] || bothWords[w] || (w == "1" || w == "2") && !numberFollows(c, i)) {
				continue
			}
			neg := false
			for j := max(0, i-3); j < len(c) && j <= i+3; j++ {
				if j != i && (c[j] == "niet" || c[j] == "not" || c[j] == "geen") && !consumed[j] {
					neg, consumed[j] = true, true
					break
				}
			}
			if consentVerbs[w] && w != "wel" || neg {
				if consentVerbs[w] || len(pols) == 0 {
					pols = append(pols, !neg)
				}
			} else if w == "wel" {
				pols = append(pols, true)
			}
		}
		switch {
		case subj == 0 && len(pols) == 0:
			continue
		case subj == 0:
			if pendingSubj != 0 {
				if !apply(&yes, &no, pendingSubj, pols) {
					return unclear(reply, "contradictory answer")
				}
				pendingSubj = 0
			} else if allSame(pols) {
				p := pols[0]
				pendingPol = &p
			} else {
				return unclear(reply, "contradictory answer")
			}
		case len(pols) == 0:
			if pendingPol != nil {
				apply(&yes, &no, subj, []bool{*pendingPol})
				pendingPol = nil
			} else if only&subj != 0 {
				// "alleen mijn bedrijfsarts" needs no yes.
				apply(&yes, &no, subj, []bool{true})
			} else {
				pendingSubj |= subj
			}
		case len(subjs) > 1 && len(subjs) == len(pols) && !allSame(pols):
			// "1 ja 2 nee": pair in order.
			for i, s := range subjs {
				if !apply(&yes, &no, s, pols[i:i+1]) {
					return unclear(reply, "contradictory answer")
				}
			}
		default:
			if !apply(&yes, &no, subj|pendingSubj, pols) {
				return unclear(reply, "contradictory answer")
			}
			pendingSubj = 0
		}
	}
	if only != 0 && only != subjBoth {
		// "alleen mijn bedrijfsarts": the other one is no.
		no |= subjBoth &^ only &^ yes
	}
	switch {
	case yes&no != 0:
		return unclear(reply, "contradictory answer")
	case yes|no == subjBoth:
		return consentAnswer(yes&subjPhysician != 0, yes&subjEmployer != 0)
	case yes|no == 0 && pendingPol != nil:
		return unclear(reply, "the answer does not say whether it is for the own physician, the employer or both")
	case yes|no == 0 && asked:
		return unclear(reply, "the reply asks a question instead of answering")
	case yes|no == 0:
		return unclear(reply, "no consent answer found")
	case yes|no == subjPhysician:
		return unclear(reply, "no answer for the employer")
	default:
		return unclear(reply, "no answer for the own physician")
	}
}

func numberFollows(c []string, i int) bool {
	return i+1 < len(c) && (numberSkip[c[i+1]] || isDigits(c[i+1]))
}

func allSame(pols []bool) bool {
	for _, p := range pols {
		if p != pols[0] {
			return false
		}
	}
	return len(pols) > 0
}

// apply records one polarity for the subjects; false if pols disagree.
func apply(yes, no *int, subj int, pols []bool) bool {
	if !allSame(pols) {
		return false
	}
	if pols[0] {
		*yes |= subj
	} else {
		*no |= subj
	}
	return true
}

func consentAnswer(physician, employer bool) Answer {
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	return Answer{
		Kind:      KindConsent,
		Value:     "physician=" + yn(physician) + ",employer=" + yn(employer),
		Physician: physician,
		Employer:  employer,
	}
}
