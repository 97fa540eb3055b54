package message

import (
	"regexp"
	"strings"
)

// Markers of quoted history, signatures and disclaimers, as the clients
// our users have write them (Outlook desktop/web/mobile, Gmail, Apple Mail
// and iPhone, Thunderbird), in Dutch and English.
var (
	// "-----Oorspronkelijk bericht-----", "---------- Forwarded message ---------".
	separatorRE = regexp.MustCompile(`(?i)^\s*-{2,}\s*(original message|oorspronkelijk bericht|oorspronkelijke bericht|origineel bericht|forwarded message|doorgestuurd bericht|doorgestuurde bericht|reply message|antwoordbericht)\s*-{2,}\s*$`)
	// Apple Mail: "Begin forwarded message:", "Begin doorgestuurd bericht:".
	forwardLineRE = regexp.MustCompile(`(?i)^\s*(begin forwarded message|begin doorgestuurd bericht|doorgestuurd bericht|forwarded message)\s*:\s*$`)
	// An Outlook header line: "Van: …", "*From:* …".
	fromFieldRE = regexp.MustCompile(`(?i)^\s*\*?(van|from)\s*:\*?\s*\S`)
	// The fields that follow it.
	otherFieldRE = regexp.MustCompile(`(?i)^\s*\*?(verzonden|sent|datum|date|aan|to|cc|onderwerp|subject|beantwoorden|reply-to)\s*:`)
	// Attribution lines (Gmail, Apple Mail, Thunderbird): "Op … schreef …:",
	// "Op … heeft … het volgende geschreven:", "On … wrote:". Tested on the
	// line joined with the next, as Gmail wraps long ones.
	attributionRE = regexp.MustCompile(`(?i)^\s*(op|on|am|le)\s.*\d.*(schreef|wrote|geschreven|schrieb|a écrit)\b[^:]{0,80}:\s*$`)
	underscoreRE  = regexp.MustCompile(`^\s*_{10,}\s*$`)
	// Mobile footers: "Verstuurd vanaf mijn iPhone", "Sent from Outlook for Android".
	mobileRE = regexp.MustCompile(`(?i)^\s*(verstuurd|verzonden|sent|gestuurd|get|download|haal)\b.{0,30}\b(vanaf|van|from|met|with|via|for|voor)\b.{0,40}\b(iphone|ipad|ios|android|outlook|samsung|galaxy|mobile|mobiel|smartphone|tablet|blackberry|mail)\b.{0,30}$`)
	// Disclaimers start a paragraph with one of these.
	disclaimerRE = regexp.MustCompile(`(?i)^\s*(disclaimer\b|confidentiality notice|dit e-?mail(bericht)? is (uitsluitend|alleen|vertrouwelijk)|dit bericht is (uitsluitend|alleen|vertrouwelijk)|de informatie (verzonden )?(in|met) dit e-?mail|deze e-?mail is (uitsluitend|alleen|vertrouwelijk)|this e-?mail (message )?(and any|is confidential|is intended|may contain)|this message (and any|is confidential|is intended|may contain)|the information (contained )?in this e-?mail)`)
	// Sign-offs, alone on their line or followed by a name.
	signoffRE = regexp.MustCompile(`(?i)^\s*(met )?(vriendelijke|hartelijke|collegiale|beste|warme|zonnige|fijne)? ?(groet|groeten|groetjes)\b[,.!]?.{0,40}$|^\s*(mvg|m\.v\.g\.?|vr\.? ?gr\.?|gr\.?|grt\.?|groet|groeten|groetjes|hgr)[,.!]?\s*(\p{L}.{0,30})?$|^\s*(kind|best|warm|many|with kind|with best)? ?(regards|wishes)\b[,.!]?.{0,40}$|^\s*(best|cheers|thanks|thank you|many thanks|bedankt|dank je( wel)?|dank u( wel)?|alvast bedankt|sincerely|yours sincerely|yours truly|hoogachtend)[,.!]?\s*$`)
)

// ExtractReply returns the new text of a reply: text without quoted
// history (Outlook header blocks, attribution lines, "-----Original
// Message-----" separators, "> " quotes), without signatures ("-- "), mobile
// footers, disclaimers and the sign-off with what follows it. A reply
// written below the quote (bottom-posting) is found when nothing new stands
// above it. The result has no leading or trailing empty lines.
func ExtractReply(text string) string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(text, "\n")
	cut := historyStart(lines)
	top := clean(lines[:cut])
	if strings.TrimSpace(top) != "" || cut == len(lines) {
		return top
	}
	// Bottom-posting: nothing new above the history. Take the unquoted
	// text that follows a block of "> " quotes, up to the next history.
	rest := lines[cut+1:]
	var below []string
	seenQuote := false
	for _, l := range rest {
		if isQuote(l) {
			seenQuote = true
			continue
		}
		if seenQuote {
			below = append(below, l)
		}
	}
	if len(below) == 0 {
		return ""
	}
	return clean(below[:historyStart(below)])
}

func isQuote(l string) bool { return strings.HasPrefix(strings.TrimLeft(l, " \t"), ">") }

// historyStart returns the index of the first line of quoted or forwarded
// history, or len(lines).
func historyStart(lines []string) int {
	for i, l := range lines {
		switch {
		case separatorRE.MatchString(l), forwardLineRE.MatchString(l):
			return i
		case underscoreRE.MatchString(l) && headerBlockAt(lines, nextNonEmpty(lines, i+1)):
			return i
		case headerBlockAt(lines, i):
			return i
		case attributionRE.MatchString(l):
			return i
		case i+1 < len(lines) && (strings.HasPrefix(strings.TrimSpace(l), "Op ") || strings.HasPrefix(strings.TrimSpace(l), "On ")) &&
			attributionRE.MatchString(l+" "+strings.TrimSpace(lines[i+1])):
			return i
		case isQuote(l) && quoteBlockFollows(lines, i):
			// A quote with no attribution line above it (or one we do not
			// know): history starts here.
			return i
		}
	}
	return len(lines)
}

// quoteBlockFollows reports whether lines[i:] is the start of a quoted
// block: two or more quoted lines, or one followed by nothing new.
func quoteBlockFollows(lines []string, i int) bool {
	j := nextNonEmpty(lines, i+1)
	return j >= len(lines) || isQuote(lines[j])
}

func nextNonEmpty(lines []string, i int) int {
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	return i
}

// headerBlockAt reports whether an Outlook-style header block ("Van:"
// followed by "Verzonden:", "Aan:", "Onderwerp:" …) starts at line i.
func headerBlockAt(lines []string, i int) bool {
	if i >= len(lines) || !fromFieldRE.MatchString(lines[i]) {
		return false
	}
	for j := i + 1; j < len(lines) && j <= i+4; j++ {
		if otherFieldRE.MatchString(lines[j]) {
			return true
		}
	}
	return false
}

// clean removes signature, footer, disclaimer, sign-off and stray quoted
// lines from the new text and trims the result.
func clean(lines []string) string {
	end := len(lines)
	for i, l := range lines {
		t := strings.TrimRight(l, " \t")
		if t == "--" || t == "-- " || l == "-- " || t == "__" || mobileRE.MatchString(l) ||
			(disclaimerRE.MatchString(l) && (i == 0 || strings.TrimSpace(lines[i-1]) == "")) {
			end = i
			break
		}
	}
	lines = lines[:end]
	// A sign-off ends the text when only a short signature follows it.
	for i, l := range lines {
		if signoffRE.MatchString(l) && tailIsSignature(lines[i+1:]) {
			lines = lines[:i]
			break
		}
	}
	var out []string
	for _, l := range lines {
		if isQuote(l) {
			continue
		}
		out = append(out, strings.TrimRight(l, " \t\u00a0"))
	}
	// Trim and collapse empty lines.
	var b strings.Builder
	empty := 0
	for _, l := range out {
		if strings.TrimSpace(l) == "" {
			empty++
			continue
		}
		if b.Len() > 0 {
			if empty > 0 {
				b.WriteString("\n\n")
			} else {
				b.WriteString("\n")
			}
		}
		empty = 0
		b.WriteString(l)
	}
	return b.String()
}

// tailIsSignature reports whether lines look like a signature block: a
// few short lines (name, function, phone, address).
func tailIsSignature(lines []string) bool {
	n := 0
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		n++
		if n > 8 || len(t) > 80 {
			return false
		}
	}
	return true
}

// inlineForward finds a forward in text ("---------- Forwarded message
// ---------", "Begin doorgestuurd bericht:" …) and reads its header lines.
func inlineForward(text string) (Forward, bool) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if !forwardLineRE.MatchString(l) && !(separatorRE.MatchString(l) && strings.Contains(strings.ToLower(l), "doorgestuurd") || separatorRE.MatchString(l) && strings.Contains(strings.ToLower(l), "forwarded")) {
			continue
		}
		var f Forward
		f.Inline = true
		j := i + 1
	fields:
		for ; j < len(lines); j++ {
			t := strings.TrimSpace(strings.TrimLeft(lines[j], "> "))
			if t == "" {
				if f.From.Address != "" || f.Subject != "" {
					j++
					break
				}
				continue
			}
			k := strings.IndexByte(t, ':')
			if k < 0 {
				break
			}
			key, val := strings.ToLower(strings.Trim(t[:k], "* ")), strings.TrimSpace(strings.Trim(t[k+1:], "* "))
			switch key {
			case "van", "from":
				f.From = looseAddress(val)
			case "onderwerp", "subject":
				f.Subject = val
			case "datum", "date", "verzonden", "sent":
				f.Date = val
			case "aan", "to", "cc", "reply-to", "beantwoorden":
			default:
				break fields
			}
		}
		var rest []string
		for _, l := range lines[min(j, len(lines)):] {
			rest = append(rest, strings.TrimPrefix(strings.TrimPrefix(l, ">"), " "))
		}
		f.Text = strings.TrimSpace(strings.Join(rest, "\n"))
		return f, true
	}
	return Forward{}, false
}

// looseAddress reads "Name <addr>" or "Name [mailto:addr]" as written in
// quoted headers.
func looseAddress(s string) Address {
	a := addrRE.FindString(s)
	name := s
	if k := strings.IndexAny(s, "<["); k >= 0 {
		name = s[:k]
	}
	name = strings.Trim(strings.TrimSpace(name), `"'`)
	if strings.EqualFold(name, a) {
		name = ""
	}
	return Address{Address: strings.ToLower(a), Name: name}
}
