// Package workdays owns the Dutch working-day calendar of the procedure:
// which days count as working days (werkdagen) for deadlines such as "the
// consult within 15 working days of a complete authorisation" (seed 000, step
// 5), and the office hours in which reminders may be sent.
//
// Public holidays come from github.com/rickar/cal/v2/nl (v2.1.13): Nieuwjaar,
// Tweede Paasdag, Koningsdag, Hemelvaartsdag, Tweede Pinksterdag, both
// Christmas days, and also Goede Vrijdag (Good Friday, marked public) and
// Bevrijdingsdag (Liberation Day, 5 May, in every year). Those last two are
// not general days off in Dutch working life: many collective agreements give
// Bevrijdingsdag off only in lustrum years (2025, 2030, …) and Goede Vrijdag
// not at all, so Policy makes both choices explicit. Koningsdag (King's Day)
// follows the library: 27 April, or 26 April when the 27th is a Sunday.
//
// All calendar arithmetic happens in Europe/Amsterdam, whatever the location
// of the time.Time passed in; the time zone database is embedded so that the
// package works on a machine without tzdata. The package does no I/O.
package workdays

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // Europe/Amsterdam on machines without a zoneinfo database

	"github.com/rickar/cal/v2/nl"
)

// Liberation-day policies (Policy.LiberationDay).
const (
	LiberationLustrum = "lustrum" // off only when the year is a multiple of 5 (the default)
	LiberationAlways  = "always"  // off every year
	LiberationNever   = "never"   // never off
)

// ClosedDayName is the name Holiday reports for a Policy.ExtraClosed day.
const ClosedDayName = "Sluitingsdag"

// ErrPolicy is wrapped by New for an invalid policy.
var ErrPolicy = errors.New("invalid working-day policy")

// Policy chooses the days off that are not fixed by law, and the office hours.
// The zero Policy is the common Dutch practice: Goede Vrijdag is a working
// day, Bevrijdingsdag is off in lustrum years, the office is open 09:00–17:00.
type Policy struct {
	// GoodFridayOff makes Goede Vrijdag (the Friday before Easter) a day off.
	GoodFridayOff bool
	// LiberationDay is LiberationLustrum (or ""), LiberationAlways or
	// LiberationNever: when Bevrijdingsdag (5 May) is a day off.
	LiberationDay string
	// OfficeStart and OfficeEnd bound the office hours on working days,
	// [start, end). Both zero means 09:00–17:00.
	OfficeStart, OfficeEnd TimeOfDay
	// ExtraClosed lists company closing days (e.g. 24 December) that are
	// not working days either.
	ExtraClosed []Date
}

// Calendar answers working-day questions under one Policy. It is safe for
// concurrent use.
type Calendar struct {
	p      Policy
	loc    *time.Location
	closed map[Date]bool

	mu    sync.Mutex
	years map[int]map[Date]string // holidays off under p, by year
}

// New returns the calendar for p, or an error wrapping ErrPolicy.
func New(p Policy) (*Calendar, error) {
	switch p.LiberationDay {
	case "":
		p.LiberationDay = LiberationLustrum
	case LiberationLustrum, LiberationAlways, LiberationNever:
	default:
		return nil, fmt.Errorf("%w: liberation day %q: want lustrum, always or never", ErrPolicy, p.LiberationDay)
	}
	if p.OfficeStart == 0 && p.OfficeEnd == 0 {
		p.OfficeStart, p.OfficeEnd = 9*Hour, 17*Hour
	}
	if !p.OfficeStart.valid() || !p.OfficeEnd.valid() || p.OfficeStart >= p.OfficeEnd {
		return nil, fmt.Errorf("%w: office hours %s–%s: start must be before end, both within the day", ErrPolicy, p.OfficeStart, p.OfficeEnd)
	}
	loc, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		return nil, fmt.Errorf("load time zone: %w", err)
	}
	c := &Calendar{p: p, loc: loc, closed: map[Date]bool{}, years: map[int]map[Date]string{}}
	for _, d := range p.ExtraClosed {
		if !d.valid() {
			return nil, fmt.Errorf("%w: extra closed day %v is not a date", ErrPolicy, d)
		}
		c.closed[d] = true
	}
	c.p.ExtraClosed = append([]Date(nil), p.ExtraClosed...)
	return c, nil
}

// Location returns Europe/Amsterdam, the zone all answers are given in.
func (c *Calendar) Location() *time.Location { return c.loc }

// Policy returns the policy in effect, with defaults filled in.
func (c *Calendar) Policy() Policy { return c.p }

// Holiday reports whether t's date (in Amsterdam) is a day off under the
// policy other than a weekend, and its Dutch name. Days the policy keeps as
// working days (Goede Vrijdag by default, Bevrijdingsdag outside lustrum
// years) are not reported. A holiday on a weekend is still reported.
func (c *Calendar) Holiday(t time.Time) (name string, ok bool) {
	d := DateOf(t.In(c.loc))
	return c.holiday(d)
}

func (c *Calendar) holiday(d Date) (string, bool) {
	c.mu.Lock()
	hs, ok := c.years[d.Year]
	if !ok {
		hs = c.yearHolidays(d.Year)
		c.years[d.Year] = hs
	}
	c.mu.Unlock()
	if name, ok := hs[d]; ok {
		return name, true
	}
	if c.closed[d] {
		return ClosedDayName, true
	}
	return "", false
}

func (c *Calendar) yearHolidays(year int) map[Date]string {
	hs := make(map[Date]string, len(nl.Holidays))
	for _, h := range nl.Holidays {
		switch h {
		case nl.GoedeVrijdag:
			if !c.p.GoodFridayOff {
				continue
			}
		case nl.BevrijdingsDag:
			if c.p.LiberationDay == LiberationNever || (c.p.LiberationDay == LiberationLustrum && year%5 != 0) {
				continue
			}
		}
		_, observed := h.Calc(year)
		if observed.IsZero() {
			continue
		}
		hs[DateOf(observed)] = h.Name
	}
	return hs
}

// isWorkday reports whether date d is a working day.
func (c *Calendar) isWorkday(d Date) bool {
	switch d.Weekday() {
	case time.Saturday, time.Sunday:
		return false
	}
	_, off := c.holiday(d)
	return !off
}

// IsWorkday reports whether t falls on a working day in Amsterdam: Monday to
// Friday, not a public holiday under the policy, not an extra closed day.
func (c *Calendar) IsWorkday(t time.Time) bool {
	return c.isWorkday(DateOf(t.In(c.loc)))
}

// AddWorkdays returns the moment n working days after t: starting from t's
// date in Amsterdam, it steps day by day and counts only working days; the
// result is the n-th working day counted, at t's Amsterdam wall-clock time
// (a summer-time change in between does not shift the clock time). t's own
// date never counts, so from Friday 10:00 or from Saturday, one working day
// later is Monday (10:00, or the Saturday's clock time). A negative n counts
// backwards; n == 0 returns t (in Amsterdam).
func (c *Calendar) AddWorkdays(t time.Time, n int) time.Time {
	t = t.In(c.loc)
	d := DateOf(t)
	step := 1
	if n < 0 {
		step, n = -1, -n
	}
	for n > 0 {
		d = d.AddDays(step)
		if c.isWorkday(d) {
			n--
		}
	}
	return d.At(t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), c.loc)
}

// WorkdaysBetween counts the working days d with a's date < d <= b's date (in
// Amsterdam), so that WorkdaysBetween(t, AddWorkdays(t, n)) == n. It is
// negative when b's date is before a's.
func (c *Calendar) WorkdaysBetween(a, b time.Time) int {
	da, db := DateOf(a.In(c.loc)), DateOf(b.In(c.loc))
	sign := 1
	if db.Before(da) {
		da, db, sign = db, da, -1
	}
	// Whole weeks have 5 weekdays; only holidays and the remainder need a walk.
	days := db.Sub(da)
	weeks := days / 7
	n := weeks * 5
	d := da.AddDays(weeks * 7)
	for d.Before(db) {
		d = d.AddDays(1)
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
			n++
		}
	}
	// Subtract weekday holidays and closed days within (da, db].
	for y := da.Year; y <= db.Year; y++ {
		for _, h := range c.offDays(y) {
			if da.Before(h) && !db.Before(h) {
				if wd := h.Weekday(); wd != time.Saturday && wd != time.Sunday {
					n--
				}
			}
		}
	}
	return sign * n
}

// offDays lists the distinct days off of a year (holidays and closed days).
func (c *Calendar) offDays(year int) []Date {
	c.mu.Lock()
	hs, ok := c.years[year]
	if !ok {
		hs = c.yearHolidays(year)
		c.years[year] = hs
	}
	c.mu.Unlock()
	seen := make(map[Date]bool, len(hs)+len(c.closed))
	var out []Date
	for d := range hs {
		seen[d] = true
		out = append(out, d)
	}
	for d := range c.closed {
		if d.Year == year && !seen[d] {
			out = append(out, d)
		}
	}
	return out
}

// InOfficeHours reports whether t is on a working day within the office
// hours [OfficeStart, OfficeEnd) in Amsterdam.
func (c *Calendar) InOfficeHours(t time.Time) bool {
	t = t.In(c.loc)
	if !c.IsWorkday(t) {
		return false
	}
	tod := timeOfDayOf(t)
	return tod >= c.p.OfficeStart && tod < c.p.OfficeEnd
}

// NextOfficeTime returns t itself (in Amsterdam) if it is within office hours
// on a working day, else the next opening: OfficeStart on the same day if t
// is before it on a working day, otherwise OfficeStart on the next working day.
func (c *Calendar) NextOfficeTime(t time.Time) time.Time {
	t = t.In(c.loc)
	d := DateOf(t)
	if c.isWorkday(d) {
		tod := timeOfDayOf(t)
		if tod >= c.p.OfficeStart && tod < c.p.OfficeEnd {
			return t
		}
		if tod < c.p.OfficeStart {
			return c.p.OfficeStart.on(d, c.loc)
		}
	}
	for {
		d = d.AddDays(1)
		if c.isWorkday(d) {
			return c.p.OfficeStart.on(d, c.loc)
		}
	}
}

// Holidays lists the days off under the policy in year, sorted by date,
// weekends excluded unless a holiday falls on one. For display and checks.
func (c *Calendar) Holidays(year int) []NamedDate {
	var out []NamedDate
	for _, d := range c.offDays(year) {
		name, _ := c.holiday(d)
		out = append(out, NamedDate{Date: d, Name: name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Date.Before(out[j].Date) })
	return out
}

// NamedDate is a day off with its name.
type NamedDate struct {
	Date Date
	Name string
}

// Date is a calendar day without a time or zone.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// DateOf returns t's date in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

// ParseDate parses "2006-01-02".
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return Date{}, fmt.Errorf("date %q: want YYYY-MM-DD", s)
	}
	return DateOf(t), nil
}

// String formats d as "2006-01-02".
func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day) }

// MarshalText implements encoding.TextMarshaler.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler ("2006-01-02").
func (d *Date) UnmarshalText(b []byte) error {
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func (d Date) utc() time.Time { return time.Date(d.Year, d.Month, d.Day, 12, 0, 0, 0, time.UTC) }

func (d Date) valid() bool { return DateOf(d.utc()) == d }

// Weekday returns the day of the week of d.
func (d Date) Weekday() time.Weekday { return d.utc().Weekday() }

// AddDays returns d moved by n days.
func (d Date) AddDays(n int) Date { return DateOf(d.utc().AddDate(0, 0, n)) }

// Before reports whether d is before e.
func (d Date) Before(e Date) bool { return d.utc().Before(e.utc()) }

// Sub returns the number of days from e to d.
func (d Date) Sub(e Date) int { return int(d.utc().Sub(e.utc()).Hours()) / 24 }

// At returns d at the given wall-clock time in loc.
func (d Date) At(hour, min, sec, nsec int, loc *time.Location) time.Time {
	return time.Date(d.Year, d.Month, d.Day, hour, min, sec, nsec, loc)
}

// TimeOfDay is a wall-clock time as minutes after midnight (0–1440; 24:00 is
// allowed as the end of office hours).
type TimeOfDay int

// Hour is one hour as a TimeOfDay.
const Hour TimeOfDay = 60

// ParseTimeOfDay parses "HH:MM" (24-hour clock; "24:00" allowed).
func ParseTimeOfDay(s string) (TimeOfDay, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("time of day %q: want HH:MM", s)
	}
	return TimeOfDay(hh*60 + mm), nil
}

// String formats t as "HH:MM".
func (t TimeOfDay) String() string { return fmt.Sprintf("%02d:%02d", int(t)/60, int(t)%60) }

// MarshalText implements encoding.TextMarshaler.
func (t TimeOfDay) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler ("HH:MM").
func (t *TimeOfDay) UnmarshalText(b []byte) error {
	v, err := ParseTimeOfDay(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

func (t TimeOfDay) valid() bool { return t >= 0 && t <= 24*Hour }

func (t TimeOfDay) on(d Date, loc *time.Location) time.Time {
	return d.At(int(t)/60, int(t)%60, 0, 0, loc)
}

func timeOfDayOf(t time.Time) TimeOfDay { return TimeOfDay(t.Hour()*60 + t.Minute()) }

// Span is a waiting time: either clock time ("48h") or a number of working
// days ("5 workdays"). Exactly one of the fields is non-zero in a valid span.
type Span struct {
	Clock    time.Duration
	Workdays int
}

// ParseSpan parses a Go duration ("48h", "90m") or "N workdays" (also
// "N workday", "Nwd").
func ParseSpan(s string) (Span, error) {
	s = strings.TrimSpace(s)
	for _, suf := range []string{"workdays", "workday", "wd"} {
		if num, ok := strings.CutSuffix(s, suf); ok {
			n, err := strconv.Atoi(strings.TrimSpace(num))
			if err != nil || n <= 0 {
				return Span{}, fmt.Errorf("span %q: want a positive number of workdays", s)
			}
			return Span{Workdays: n}, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Span{}, fmt.Errorf("span %q: want a positive duration like 48h or a count like 5 workdays", s)
	}
	return Span{Clock: d}, nil
}

// String formats s as ParseSpan reads it.
func (s Span) String() string {
	if s.Workdays != 0 {
		return fmt.Sprintf("%d workdays", s.Workdays)
	}
	return s.Clock.String()
}

// IsZero reports whether s is empty.
func (s Span) IsZero() bool { return s.Clock == 0 && s.Workdays == 0 }

// MarshalText implements encoding.TextMarshaler.
func (s Span) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Span) UnmarshalText(b []byte) error {
	v, err := ParseSpan(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// After returns the moment s after t: t plus the clock time, or
// AddWorkdays(t, s.Workdays) for a working-day span.
func (c *Calendar) After(t time.Time, s Span) time.Time {
	if s.Workdays != 0 {
		return c.AddWorkdays(t, s.Workdays)
	}
	return t.Add(s.Clock)
}
