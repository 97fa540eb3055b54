package message

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	monthNames = map[string]time.Month{
		"januari": 1, "january": 1, "jan": 1, "februari": 2, "february": 2, "feb": 2,
		"maart": 3, "march": 3, "mrt": 3, "mar": 3, "april": 4, "apr": 4, "mei": 5, "may": 5,
		"juni": 6, "june": 6, "jun": 6, "juli": 7, "july": 7, "jul": 7, "augustus": 8, "august": 8, "aug": 8,
		"september": 9, "sept": 9, "sep": 9, "oktober": 10, "october": 10, "okt": 10, "oct": 10,
		"november": 11, "nov": 11, "december": 12, "dec": 12,
	}
	weekdayNames = map[string]time.Weekday{
		"zondag": 0, "sunday": 0, "maandag": 1, "monday": 1, "dinsdag": 2, "tuesday": 2,
		"woensdag": 3, "wednesday": 3, "donderdag": 4, "thursday": 4, "vrijdag": 5, "friday": 5,
		"zaterdag": 6, "saturday": 6,
	}
	monthAlt    = `(januari|january|jan|februari|february|feb|maart|march|mrt|mar|april|apr|mei|may|juni|june|jun|juli|july|jul|augustus|august|aug|september|sept|sep|oktober|october|okt|oct|november|nov|december|dec)`
	isoDateRE   = regexp.MustCompile(`\b(\d{4})-(\d{1,2})-(\d{1,2})\b`)
	numDateRE   = regexp.MustCompile(`\b(\d{1,2})[-/](\d{1,2})(?:[-/](\d{4}|\d{2}))?\b`)
	dotDateRE   = regexp.MustCompile(`\b(\d{1,2})\.(\d{1,2})\.(\d{4}|\d{2})\b`)
	dayMonRE    = regexp.MustCompile(`\b(\d{1,2})(?:e|ste|de|st|nd|rd|th)?\s+(?:of\s+)?` + monthAlt + `\b\.?(?:,?\s+(\d{4})\b)?`)
	monDayRE    = regexp.MustCompile(`\b` + monthAlt + `\b\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s+(\d{4})\b)?`)
	relDayRE    = regexp.MustCompile(`\b(overmorgen|morgen|tomorrow|vandaag|today)\b`)
	weekdayRE   = regexp.MustCompile(`\b(zondag|sunday|maandag|monday|dinsdag|tuesday|woensdag|wednesday|donderdag|thursday|vrijdag|friday|zaterdag|saturday)\b`)
	clockRE     = regexp.MustCompile(`\b(\d{1,2})\s*[:.uh]\s*(\d{2})\b\s*(am|pm|a\.m\.|p\.m\.)?`)
	ampmRE      = regexp.MustCompile(`\b(\d{1,2})\s*(am|pm|a\.m\.|p\.m\.)`)
	uurRE       = regexp.MustCompile(`\b(\d{1,2})\s*uur\b`)
	afternoonRE = regexp.MustCompile(`\bs (middags|avonds)\b|\b(in the (afternoon|evening))\b`)
)

type ymd struct {
	y       int // 0: not given
	m, d    int
	literal string
}

func parseDateTime(reply string, q QuestionContext) Answer {
	loc := q.Loc
	if loc == nil {
		loc = amsterdam()
	}
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.In(loc)
	// Unlike the other kinds, a date proposed as a question ("Zou 10
	// december om 14:30 kunnen?") is an answer.
	text := fold(reply)
	asked := false
	if m := hesitantRE.FindString(text); m != "" {
		return unclear(reply, fmt.Sprintf("hesitant answer (%q)", m))
	}
	var dates []ymd
	mask := func(loc []int) {
		text = text[:loc[0]] + strings.Repeat(" ", loc[1]-loc[0]) + text[loc[1]:]
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	for _, m := range isoDateRE.FindAllStringSubmatchIndex(text, -1) {
		dates = append(dates, ymd{atoi(text[m[2]:m[3]]), atoi(text[m[4]:m[5]]), atoi(text[m[6]:m[7]]), text[m[0]:m[1]]})
		mask(m[:2])
	}
	for _, re := range []*regexp.Regexp{dotDateRE, numDateRE} {
		for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
			d := ymd{m: atoi(text[m[4]:m[5]]), d: atoi(text[m[2]:m[3]]), literal: text[m[0]:m[1]]}
			if m[6] >= 0 {
				d.y = atoi(text[m[6]:m[7]])
			}
			dates = append(dates, d)
			mask(m[:2])
		}
	}
	for _, m := range dayMonRE.FindAllStringSubmatchIndex(text, -1) {
		d := ymd{m: int(monthNames[text[m[4]:m[5]]]), d: atoi(text[m[2]:m[3]]), literal: text[m[0]:m[1]]}
		if m[6] >= 0 {
			d.y = atoi(text[m[6]:m[7]])
		}
		dates = append(dates, d)
		mask(m[:2])
	}
	for _, m := range monDayRE.FindAllStringSubmatchIndex(text, -1) {
		d := ymd{m: int(monthNames[text[m[2]:m[3]]]), d: atoi(text[m[4]:m[5]]), literal: text[m[0]:m[1]]}
		if m[6] >= 0 {
			d.y = atoi(text[m[6]:m[7]])
		}
		dates = append(dates, d)
		mask(m[:2])
	}
	for _, m := range relDayRE.FindAllStringIndex(text, -1) {
		days := map[string]int{"vandaag": 0, "today": 0, "morgen": 1, "tomorrow": 1, "overmorgen": 2}[text[m[0]:m[1]]]
		t := now.AddDate(0, 0, days)
		dates = append(dates, ymd{t.Year(), int(t.Month()), t.Day(), text[m[0]:m[1]]})
		mask(m)
	}
	var weekdays []time.Weekday
	for _, m := range weekdayRE.FindAllString(text, -1) {
		weekdays = append(weekdays, weekdayNames[m])
	}

	type hm struct{ h, m int }
	var times []hm
	pm := afternoonRE.MatchString(text)
	addTime := func(h, m int, suffix string) bool {
		switch {
		case strings.HasPrefix(suffix, "p") && h < 12:
			h += 12
		case strings.HasPrefix(suffix, "a") && h == 12:
			h = 0
		case suffix == "" && pm && h < 12:
			h += 12
		}
		if h > 23 || m > 59 || suffix != "" && (h > 23) {
			return false
		}
		for _, t := range times {
			if t == (hm{h, m}) {
				return true
			}
		}
		times = append(times, hm{h, m})
		return true
	}
	for _, m := range clockRE.FindAllStringSubmatchIndex(text, -1) {
		suffix := ""
		if m[6] >= 0 {
			suffix = text[m[6]:m[7]]
		}
		if !addTime(atoi(text[m[2]:m[3]]), atoi(text[m[4]:m[5]]), suffix) {
			return unclear(reply, fmt.Sprintf("%q is not a time", strings.TrimSpace(text[m[0]:m[1]])))
		}
		mask(m[:2])
	}
	for _, re := range []*regexp.Regexp{ampmRE, uurRE} {
		for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
			suffix := ""
			if re == ampmRE {
				suffix = text[m[4]:m[5]]
			}
			if !addTime(atoi(text[m[2]:m[3]]), 0, suffix) {
				return unclear(reply, fmt.Sprintf("%q is not a time", strings.TrimSpace(text[m[0]:m[1]])))
			}
			mask(m[:2])
		}
	}

	// Resolve dates; the same date written twice is one date.
	var resolved []time.Time
	for _, d := range dates {
		y := d.y
		if y > 0 && y < 100 {
			y += 2000
		}
		if d.m < 1 || d.m > 12 || d.d < 1 || d.d > 31 {
			return unclear(reply, fmt.Sprintf("%q is not a date", d.literal))
		}
		if y == 0 {
			// No year: the coming occurrence, this year or within half a
			// year into the next; otherwise it is a date in the past.
			y = now.Year()
			if time.Date(y, time.Month(d.m), d.d, 23, 59, 0, 0, loc).Before(now) &&
				time.Date(y+1, time.Month(d.m), d.d, 0, 0, 0, 0, loc).Before(now.AddDate(0, 6, 0)) {
				y++
			}
		}
		t := time.Date(y, time.Month(d.m), d.d, 0, 0, 0, 0, loc)
		if t.Month() != time.Month(d.m) {
			return unclear(reply, fmt.Sprintf("%q is not a date", d.literal))
		}
		dup := false
		for _, r := range resolved {
			dup = dup || r.Equal(t)
		}
		if !dup {
			resolved = append(resolved, t)
		}
	}
	switch {
	case len(resolved) > 1:
		return unclear(reply, fmt.Sprintf("several dates (%s and %s)", resolved[0].Format("2006-01-02"), resolved[1].Format("2006-01-02")))
	case len(times) > 1:
		return unclear(reply, fmt.Sprintf("several times (%02d:%02d and %02d:%02d)", times[0].h, times[0].m, times[1].h, times[1].m))
	case len(resolved) == 0 && len(weekdays) > 0:
		return unclear(reply, "a weekday but no date")
	case len(resolved) == 0 && len(times) == 0 && asked:
		return unclear(reply, "the reply asks a question instead of answering")
	case len(resolved) == 0:
		return unclear(reply, "no date found")
	case len(times) == 0:
		return unclear(reply, "no time found")
	}
	d, tm := resolved[0], times[0]
	for _, wd := range weekdays {
		if wd != d.Weekday() {
			return unclear(reply, fmt.Sprintf("%s is a %s, not a %s", d.Format("2006-01-02"), d.Weekday(), wd))
		}
	}
	t := time.Date(d.Year(), d.Month(), d.Day(), tm.h, tm.m, 0, 0, loc)
	if t.Before(now) {
		return unclear(reply, fmt.Sprintf("%s is in the past", t.Format("2006-01-02 15:04")))
	}
	return Answer{Kind: KindDateTime, Value: t.Format("2006-01-02T15:04"), Time: t}
}

func amsterdam() *time.Location {
	if loc, err := time.LoadLocation("Europe/Amsterdam"); err == nil {
		return loc
	}
	// No tzdata on this system: CET/CEST by the EU rule is not in the
	// standard library without tzdata, so fall back to fixed CET.
	return time.FixedZone("CET", 3600)
}

var (
	refuseRE  = regexp.MustCompile(`\b(weiger\w*|wijs\w* (\w+ ){0,3}af|afwijz\w*|afgewezen|niet in behandeling|zwaarwegend\w*|zwaarwichtig\w*|refus\w*|declin\w*|reject\w*|(do|can) not confirm|cannot confirm|dont confirm|niet bevestig\w*|bevestig\w* (\w+ ){0,2}niet|niet akkoord|not agree|geen akkoord|niet mee eens|oneens|ga (\w+ ){0,2}niet akkoord)\b`)
	confirmRE = regexp.MustCompile(`\b(bevestig\w*|akkoord|confirm\w*|klopt|correct|juist|ja|yes|agreed|agree|in orde|geen bezwaar|no objection|prima)\b`)
)

// parseRefusal reads the original physician's answer to the question
// (vraagstelling): confirmed, or refused for weighty reasons. A refusal
// must give its reason; the value is then the reply text.
func parseRefusal(reply string) Answer {
	kept, _ := sentences(reply)
	text := fold(strings.Join(kept, "\n"))
	refusals := refuseRE.FindAllStringIndex(text, -1)
	blanked := text
	for _, m := range refusals {
		blanked = blanked[:m[0]] + strings.Repeat(" ", m[1]-m[0]) + blanked[m[1]:]
	}
	confirms := confirmRE.FindAllString(blanked, -1)
	switch {
	case len(refusals) > 0 && len(confirms) > 0:
		return unclear(reply, fmt.Sprintf("both a refusal (%q) and a confirmation (%q)", text[refusals[0][0]:refusals[0][1]], confirms[0]))
	case len(refusals) > 0:
		rest := 0
		for _, w := range words(blanked) {
			if !isSep(w) {
				rest++
			}
		}
		if rest < 4 {
			return unclear(reply, "a refusal without its reason")
		}
		return Answer{Kind: KindRefusal, Value: reply}
	case len(confirms) > 0:
		return Answer{Kind: KindRefusal, Value: "confirmed", Yes: true}
	default:
		return unclear(reply, "neither a confirmation nor a refusal")
	}
}
