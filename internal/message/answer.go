package message

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Kind is the kind of question a mail asked, and so the kind of answer
// expected. KindUnclear is the answer kind when the reply does not answer
// the question unambiguously.
type Kind string

// The question kinds.
const (
	KindChoice   Kind = "choice"   // which proposed physician (and a backup)
	KindYesNo    Kind = "yesno"    // agree or not
	KindConsent  Kind = "consent"  // may the advice go to the own physician, to the employer
	KindDateTime Kind = "datetime" // date and time of the consult
	KindRefusal  Kind = "refusal"  // the original physician confirms the question or refuses with reasons
	KindQuestion Kind = "question" // free text
	KindUnclear  Kind = "unclear"
)

// maxAnswerBytes bounds the reply text read as a short answer.
const maxAnswerBytes = 16 << 10

// Kinds lists the question kinds in the order of the documentation.
var Kinds = []Kind{KindChoice, KindYesNo, KindConsent, KindDateTime, KindRefusal, KindQuestion}

// QuestionContext is what the question said that the answer refers to.
type QuestionContext struct {
	Options []string       // the proposed physicians' names, in the order listed
	Now     time.Time      // when the answer is read; dates before it are refused
	Loc     *time.Location // the consult's time zone; nil means Europe/Amsterdam
}

// Answer is the answer found in a reply. Kind is the question's kind, or
// KindUnclear with Why set. Value is the canonical form ("2",
// "other:Dr. Bakker", "yes", "physician=yes,employer=no",
// "2026-12-10T14:30", the refusal reason, the question text).
type Answer struct {
	Kind  Kind
	Value string
	Why   string // for KindUnclear: what made it unclear (English, for the backoffice)

	Choice    int    // choice: 1-based index into Options, 0 for another physician
	Backup    int    // choice: 1-based backup, 0 if none
	OtherName string // choice: a physician named who was not proposed

	Yes bool // yesno: the answer; refusal: the physician confirms the question

	Physician bool // consent: the advice may go to the own physician
	Employer  bool // consent: the advice may go to the employer

	Time time.Time // datetime, in QuestionContext.Loc

	Text string // the reply text the answer was read from
}

// ParseAnswer reads the answer to a question of kind k from reply, which
// must be the extracted new text (ExtractReply) so that quoted history and
// signatures never count. It never guesses: ambiguous, contradictory or
// hesitant answers come back as KindUnclear with Why.
func ParseAnswer(k Kind, reply string, q QuestionContext) Answer {
	reply = strings.TrimSpace(reply)
	if reply == "" {
		return unclear(reply, "empty reply")
	}
	if k != KindQuestion && k != KindRefusal && len(reply) > maxAnswerBytes {
		// An answer to one question is short; a long text is a letter
		// for a person to read, and would be slow to search.
		return unclear(reply, fmt.Sprintf("reply too long (%d bytes) to read as an answer", len(reply)))
	}
	if k == KindRefusal && len(reply) > 4*maxAnswerBytes {
		return unclear(reply, fmt.Sprintf("reply too long (%d bytes) to read as an answer", len(reply)))
	}
	var a Answer
	switch k {
	case KindChoice:
		a = parseChoice(reply, q)
	case KindYesNo:
		a = parseYesNo(reply)
	case KindConsent:
		a = parseConsent(reply)
	case KindDateTime:
		a = parseDateTime(reply, q)
	case KindRefusal:
		a = parseRefusal(reply)
	case KindQuestion:
		a = Answer{Kind: KindQuestion, Value: reply}
	default:
		a = unclear(reply, fmt.Sprintf("unknown question kind %q", k))
	}
	a.Text = reply
	return a
}

func unclear(text, why string) Answer {
	return Answer{Kind: KindUnclear, Why: why, Text: text}
}

// fold lower-cases s, strips diacritics and apostrophes, so that
// "Één", "één" and "een" compare equal and "don't" becomes "dont".
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range strings.ToLower(s) {
		switch r {
		case '\'', '’', '‘', '`', '´':
			continue
		case '“', '”', '„':
			r = '"'
		case '\u00a0':
			r = ' '
		}
		if d, ok := diacritics[r]; ok {
			b.WriteString(d)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var diacritics = map[rune]string{
	'à': "a", 'á': "a", 'â': "a", 'ã': "a", 'ä': "a", 'å': "a", 'æ': "ae",
	'ç': "c", 'è': "e", 'é': "e", 'ê': "e", 'ë': "e", 'ì': "i", 'í': "i",
	'î': "i", 'ï': "i", 'ñ': "n", 'ò': "o", 'ó': "o", 'ô': "o", 'õ': "o",
	'ö': "o", 'ø': "o", 'ù': "u", 'ú': "u", 'û': "u", 'ü': "u", 'ý': "y",
	'ÿ': "y", 'ß': "ss", 'ĳ': "ij", 'ş': "s", 'ğ': "g", 'ı': "i", 'ł': "l",
	'č': "c", 'ć': "c", 'š': "s", 'ž': "z", 'ř': "r", 'ń': "n", 'ő': "o", 'ű': "u",
}

// words splits folded text into words (letters and digits); every other
// character that separates clauses becomes its own token: "," ";" "."
// ":" "!" "?" "/" "(" ")" and "\n".
func words(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, s[start:i])
			start = -1
		}
		if strings.ContainsRune(",;.:!?/()\n", r) {
			out = append(out, string(r))
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

func isSep(t string) bool { return len(t) == 1 && strings.Contains(",;.:!?/()\n", t) }

// sentences splits text into sentences and drops the ones that are
// questions: "Moet ik ja zeggen?" answers nothing. asked reports whether
// any question was dropped.
func sentences(text string) (kept []string, asked bool) {
	var cur strings.Builder
	flush := func(end rune) {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		if end == '?' {
			asked = true
			return
		}
		kept = append(kept, s)
	}
	rs := []rune(text)
	for i, r := range rs {
		cur.WriteRune(r)
		switch r {
		case '?', '!', '\n':
			flush(r)
		case '.':
			// Not in numbers ("14.30") or after abbreviations ("dr.", "dec.").
			if i+1 < len(rs) && rs[i+1] == ' ' && !abbrevBefore(rs[:i]) {
				flush(r)
			}
		}
	}
	flush(0)
	return kept, asked
}

var abbrevs = set("dr", "drs", "mr", "mw", "mevr", "dhr", "prof", "ir", "ing", "nr", "no", "st", "bijv", "evt", "ca", "oa",
	"jan", "feb", "mrt", "apr", "jun", "jul", "aug", "sep", "sept", "okt", "oct", "nov", "dec", "ma", "di", "wo", "do", "vr", "za", "zo")

// abbrevBefore reports whether rs ends with an abbreviation or an initial.
func abbrevBefore(rs []rune) bool {
	i := len(rs)
	for i > 0 && unicode.IsLetter(rs[i-1]) {
		i--
	}
	w := fold(string(rs[i:]))
	return w == "" || len([]rune(w)) == 1 || abbrevs[w]
}

var (
	yesWords = set("ja", "jazeker", "jawel", "jep", "jaa", "yes", "yep", "yeah", "yup", "ok", "oke", "okay", "okee",
		"akkoord", "accoord", "agreed", "agree", "prima", "eens", "toestemming", "consent", "accept", "accepted",
		"accepteer", "accepteren", "aanvaard", "aanvaarden", "zeker", "sure", "certainly", "absoluut", "absolutely",
		"natuurlijk", "uiteraard", "instemmen", "correct", "klopt", "goedgekeurd", "approve", "approved", "fine", "graag")
	noWords = set("nee", "neen", "nope", "nah", "weiger", "weigeren", "refuse", "decline", "oneens", "disagree",
		"bezwaar", "bezwaren", "objection", "objections", "object", "afgewezen", "afwijzen", "reject")
	// Words that are only an answer when negated: "geen probleem" is yes,
	// "probleem" alone is nothing.
	negOnlyWords = set("probleem", "problemen", "problem", "problems", "punt", "issue", "issues", "bezwaarlijk")
	negators     = set("niet", "geen", "not", "no", "dont", "doesnt", "didnt", "cannot", "cant", "wont", "never", "nooit", "nimmer", "nee")
	// Standalone answers that are also negators.
	standaloneNo = set("nee", "neen", "no", "nope", "nah")
	hesitantRE   = regexp.MustCompile(`\b(misschien|wellicht|twijfel\w*|weet (ik )?(het )?(nog )?niet|nog niet zeker|niet zeker|geen idee|maybe|perhaps|not sure|unsure|dont know|do not know|no idea|denk er(over)? (nog )?over na|think about it|mwah|weet niet)\b`)
	// Echoes of the question's own answer hints: "(ja/nee)", "yes or no".
	echoRE = regexp.MustCompile(`\b(ja ?/ ?nee|ja of nee|yes ?/ ?no|yes or no|akkoord ?/ ?niet akkoord|ja ?/ ?ne)\b`)
	// Fixed phrases, checked before single words.
	noPhraseRE  = regexp.MustCompile(`\b((zeker|absoluut|helemaal|echt|natuurlijk|uiteraard|beslist|certainly|absolutely|definitely|of course) (niet|not)|liever niet|rather not|geen akkoord|not agreed|niet mee eens|niet eens|not ok|niet ok|niet oke|niet goed|no way|geen toestemming|no consent|geen prima)\b`)
	yesPhraseRE = regexp.MustCompile(`\b(is goed|vind ik goed|dat is goed|ga ik mee akkoord|stem (ik |daarmee |hiermee )?(in|toe)|go ahead|ga je gang|ga uw gang|doe maar|that is fine|thats fine|sounds good|klinkt goed|in orde)\b`)
)

func set(ws ...string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

type signal struct {
	yes bool
	w   string
}

// polarity finds the yes and no signals in folded text, resolving
// negation: a negator up to three words before a yes word makes it no
// ("niet akkoord", "I do not agree"), before a no word makes it yes
// ("geen bezwaar", "no objection").
func polarity(folded string) []signal {
	folded = echoRE.ReplaceAllString(folded, " ")
	var sigs []signal
	// Phrases first; blank them so their words do not count again.
	for _, p := range []struct {
		re  *regexp.Regexp
		yes bool
	}{{noPhraseRE, false}, {yesPhraseRE, true}} {
		matches := p.re.FindAllStringIndex(folded, -1)
		if matches == nil {
			continue
		}
		b := []byte(folded)
		for _, m := range matches {
			sigs = append(sigs, signal{yes: p.yes, w: folded[m[0]:m[1]]})
			for i := m[0]; i < m[1]; i++ {
				b[i] = ' '
			}
		}
		folded = string(b)
	}
	ws := words(folded)
	consumed := make([]bool, len(ws))
	for i, w := range ws {
		yes, no, negOnly := yesWords[w], noWords[w], negOnlyWords[w]
		if !yes && !no && !negOnly {
			continue
		}
		if standaloneNo[w] {
			continue // handled below
		}
		neg := false
		for j := i - 1; j >= 0 && j >= i-3; j-- {
			if isSep(ws[j]) {
				break
			}
			if negators[ws[j]] && !consumed[j] {
				neg, consumed[j] = true, true
				break
			}
		}
		switch {
		case negOnly && !neg:
			continue
		case negOnly:
			sigs = append(sigs, signal{yes: true, w: w})
		default:
			sigs = append(sigs, signal{yes: yes != neg, w: w})
		}
	}
	for i, w := range ws {
		if standaloneNo[w] && !consumed[i] {
			// "no" right before a noun it negates ("no objection") was
			// consumed above; otherwise it is an answer.
			sigs = append(sigs, signal{yes: false, w: w})
		}
	}
	return sigs
}

func parseYesNo(reply string) Answer {
	kept, asked := sentences(reply)
	folded := fold(strings.Join(kept, "\n"))
	if m := hesitantRE.FindString(folded); m != "" {
		return unclear(reply, fmt.Sprintf("hesitant answer (%q)", m))
	}
	var yes, no []string
	for _, s := range polarity(folded) {
		if s.yes {
			yes = append(yes, s.w)
		} else {
			no = append(no, s.w)
		}
	}
	switch {
	case len(yes) > 0 && len(no) > 0:
		return unclear(reply, fmt.Sprintf("contradictory answer (%q and %q)", yes[0], no[0]))
	case len(yes) > 0:
		return Answer{Kind: KindYesNo, Value: "yes", Yes: true}
	case len(no) > 0:
		return Answer{Kind: KindYesNo, Value: "no"}
	case asked:
		return unclear(reply, "the reply asks a question instead of answering")
	default:
		return unclear(reply, "no yes or no found")
	}
}
