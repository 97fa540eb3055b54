package message

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var (
	// Titles and name particles are not what tells physicians apart.
	nameNoise = set("dr", "drs", "mr", "mw", "mevr", "mevrouw", "dhr", "heer", "meneer", "prof", "ir", "ing", "arts",
		"bedrijfsarts", "dokter", "de", "van", "der", "den", "ten", "ter", "te", "het", "t", "vd", "op", "in", "la", "le", "du", "mrs", "ms")
	ordinals = map[string]int{
		"eerste": 1, "1e": 1, "1ste": 1, "first": 1, "1st": 1, "eerstgenoemde": 1, "bovenste": 1, "former": 1,
		"tweede": 2, "2e": 2, "2de": 2, "second": 2, "2nd": 2, "tweedgenoemde": 2,
		"derde": 3, "3e": 3, "3de": 3, "third": 3, "3rd": 3,
		"vierde": 4, "4e": 4, "4de": 4, "fourth": 4, "4th": 4,
		"vijfde": 5, "5e": 5, "5de": 5, "fifth": 5, "5th": 5,
	}
	lastWords = set("laatste", "last", "latter", "laatstgenoemde", "onderste")
	// An ordinal followed by one of these is no choice: "in eerste
	// instantie", "de eerste keer", "first of all".
	ordinalSkip = set("instantie", "keer", "plaats", "of", "time", "week", "dag", "afspraak", "gesprek", "vraag", "stap", "step", "mail", "bericht")
	// A number followed by one of these is a quantity or a date.
	numberSkip = set("uur", "uren", "dag", "dagen", "week", "weken", "maand", "maanden", "jaar", "jaren", "km", "minuten", "min",
		"hours", "hour", "days", "day", "weeks", "months", "years", "kinderen", "keer", "times", "pm", "am",
		"januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober", "november", "december",
		"jan", "feb", "mrt", "apr", "jun", "jul", "aug", "sep", "okt", "nov", "dec", "january", "february", "march", "may", "june", "july", "august", "october")
	strongNumber = set("optie", "nummer", "nr", "keuze", "option", "number", "no", "choice", "arts", "kandidaat", "voorstel")
	backupRE     = regexp.MustCompile(`\b((als|in|ter|as( a)?) )?(reserve|back ?up|tweede keus|tweede keuze|second choice|2e keus|2e keuze|alternatief|fallback|plan b)\b|\b(en |or |of )?(anders|otherwise|if not|als dat niet (kan|lukt|gaat)|mocht dat niet (kunnen|lukken|gaan)|indien niet beschikbaar|als (hij|zij|ze|die) niet (kan|beschikbaar is)|if (s?he|they) (is|are) (not |un)available)\b`)
	noneRE       = regexp.MustCompile(`\b(geen van (beide|beiden|de twee|tweeen|allen|hen|hun)|neither|none of|niet een van|geen enkele|allebei niet|beide niet)\b`)
	// "dr. Bakker", "dokter Van Dam", "mevrouw J. de Wit": a physician by
	// name, titled, as written (capitals matter here).
	titledNameRE = regexp.MustCompile(`(?:^|[^\p{L}])(?i:dr|drs|dokter|doctor|mevrouw|mevr|mw|meneer|dhr|de heer|prof)\.?\s+((?:\p{Lu}\.\s*)*(?:(?i:van|de|der|den|ter|ten|te|van 't)\s+)*\p{Lu}[\p{L}'-]+(?:[ -]\p{Lu}[\p{L}'-]+)?)`)
)

type optionKeys struct {
	keys map[string]int // folded name word → 1-based option, -1 if shared
}

func newOptionKeys(options []string) optionKeys {
	k := optionKeys{keys: map[string]int{}}
	for i, o := range options {
		for _, w := range words(fold(o)) {
			if isSep(w) || nameNoise[w] || len(w) < 3 {
				continue
			}
			if prev, ok := k.keys[w]; ok && prev != i+1 {
				k.keys[w] = -1
			} else {
				k.keys[w] = i + 1
			}
		}
	}
	return k
}

// nameOption returns the option a written name refers to, 0 for none.
func (k optionKeys) nameOption(name string) int {
	found := 0
	for _, w := range words(fold(name)) {
		if n := k.keys[w]; n > 0 {
			if found != 0 && found != n {
				return -1
			}
			found = n
		}
	}
	return found
}

// choiceSignals finds the options a segment of a reply points at: by
// number ("2", "optie 2"), ordinal ("de tweede"), or name. others are
// names of physicians who were not proposed. bad is a number out of range.
func choiceSignals(seg string, n int, k optionKeys) (picked []int, others []string, bad string) {
	add := func(i int) {
		for _, p := range picked {
			if p == i {
				return
			}
		}
		picked = append(picked, i)
	}
	negated := func(ws []string, i int) bool {
		for j := i - 1; j >= 0 && j >= i-3; j-- {
			if isSep(ws[j]) {
				return false
			}
			if negators[ws[j]] || ws[j] == "liever" && j+1 < len(ws) && ws[j+1] == "niet" {
				return true
			}
		}
		return false
	}
	// Titled names first, so their words are not read again.
	for _, m := range titledNameRE.FindAllStringSubmatchIndex(seg, -1) {
		name := seg[m[2]:m[3]]
		ws := words(fold(seg[:m[2]]))
		if negated(ws, len(ws)) {
			seg = seg[:m[2]] + strings.Repeat(" ", m[3]-m[2]) + seg[m[3]:]
			continue
		}
		switch o := k.nameOption(name); {
		case o > 0:
			add(o)
		case o == 0:
			others = append(others, name)
		}
		seg = seg[:m[2]] + strings.Repeat(" ", m[3]-m[2]) + seg[m[3]:]
	}
	ws := words(fold(seg))
	for i, w := range ws {
		next := ""
		if i+1 < len(ws) {
			next = ws[i+1]
		}
		prev := ""
		if i > 0 {
			prev = ws[i-1]
		}
		switch {
		case isDigits(w):
			v, err := strconv.Atoi(w)
			if err != nil || numberSkip[next] || next == ":" || (next == "." && i+2 < len(ws) && isDigits(ws[i+2])) ||
				(prev == "." || prev == ":" || prev == "/") && i > 1 && isDigits(ws[i-2]) {
				continue
			}
			if strongNumber[prev] || v <= 9 {
				if negated(ws, i) {
					continue
				}
				if v < 1 || v > n {
					bad = w
					continue
				}
				add(v)
			}
		case ordinals[w] > 0 && !ordinalSkip[next]:
			if !negated(ws, i) {
				if ordinals[w] > n {
					bad = w
					continue
				}
				add(ordinals[w])
			}
		case lastWords[w] && !ordinalSkip[next]:
			if !negated(ws, i) {
				add(n)
			}
		default:
			if o := k.keys[w]; o > 0 && !negated(ws, i) {
				add(o)
			}
		}
	}
	return picked, others, bad
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func parseChoice(reply string, q QuestionContext) Answer {
	n := len(q.Options)
	if n == 0 {
		return unclear(reply, "no options were given to choose from")
	}
	kept, asked := sentences(reply)
	text := strings.Join(kept, "\n")
	folded := fold(text)
	if m := hesitantRE.FindString(folded); m != "" {
		return unclear(reply, fmt.Sprintf("hesitant answer (%q)", m))
	}
	if m := noneRE.FindString(folded); m != "" {
		return unclear(reply, fmt.Sprintf("declines the proposed physicians (%q)", m))
	}
	k := newOptionKeys(q.Options)
	primary, backup := text, ""
	// Split at the first backup marker; fold keeps byte offsets only for
	// ASCII, so split the folded text and the original alike.
	if loc := backupRE.FindStringIndex(folded); loc != nil && len(folded) == len(text) {
		primary, backup = text[:loc[0]], text[loc[1]:]
	} else if loc != nil {
		primary, backup = folded[:loc[0]], folded[loc[1]:]
	}
	picked, others, bad := choiceSignals(primary, n, k)
	switch {
	case bad != "" && len(picked) == 0:
		return unclear(reply, fmt.Sprintf("%q is not one of the %d options", bad, n))
	case len(picked) > 1:
		return unclear(reply, fmt.Sprintf("several choices (%d and %d)", picked[0], picked[1]))
	case len(picked) == 1 && len(others) > 0:
		return unclear(reply, fmt.Sprintf("both option %d and %q named", picked[0], others[0]))
	case len(picked) == 0 && len(others) > 1:
		return unclear(reply, fmt.Sprintf("several physicians named (%q and %q)", others[0], others[1]))
	case len(picked) == 0 && len(others) == 0 && asked:
		return unclear(reply, "the reply asks a question instead of choosing")
	case len(picked) == 0 && len(others) == 0:
		return unclear(reply, "no choice found")
	}
	a := Answer{Kind: KindChoice}
	if len(picked) == 1 {
		a.Choice = picked[0]
		a.Value = strconv.Itoa(a.Choice)
	} else {
		a.OtherName = others[0]
		a.Value = "other:" + others[0]
	}
	if backup != "" {
		bp, _, _ := choiceSignals(backup, n, k)
		switch {
		case len(bp) > 1:
			return unclear(reply, fmt.Sprintf("several backups (%d and %d)", bp[0], bp[1]))
		case len(bp) == 1 && bp[0] != a.Choice:
			a.Backup = bp[0]
		}
	}
	return a
}
