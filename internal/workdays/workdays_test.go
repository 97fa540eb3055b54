package workdays

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var ams = func() *time.Location {
	l, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		panic(err)
	}
	return l
}()

func at(y int, m time.Month, d, hh, mm int) time.Time {
	return time.Date(y, m, d, hh, mm, 0, 0, ams)
}

func newCal(t *testing.T, p Policy) *Calendar {
	t.Helper()
	c, err := New(p)
	if err != nil {
		t.Fatalf("New(%+v): %v", p, err)
	}
	return c
}

func TestHolidays(t *testing.T) {
	deflt := Policy{}
	gf := Policy{GoodFridayOff: true}
	always := Policy{LiberationDay: LiberationAlways}
	never := Policy{LiberationDay: LiberationNever}
	closed := Policy{ExtraClosed: []Date{{2026, time.December, 24}}}
	tests := []struct {
		name    string
		policy  Policy
		day     time.Time
		workday bool
		holiday string // "" = not a holiday
	}{
		{"Koningsdag 2026 on a Monday", deflt, at(2026, 4, 27, 10, 0), false, "Koningsdag"},
		{"Koningsdag 2025 moves to Saturday 26 April", deflt, at(2025, 4, 26, 10, 0), false, "Koningsdag"},
		{"27 April 2025 is a plain Sunday", deflt, at(2025, 4, 27, 10, 0), false, ""},
		{"Koningsdag 2024 on a Saturday stays", deflt, at(2024, 4, 27, 10, 0), false, "Koningsdag"},
		{"day before Koningsdag 2026 works", deflt, at(2026, 4, 24, 10, 0), true, ""},
		{"Eerste Kerstdag 2025", deflt, at(2025, 12, 25, 10, 0), false, "Eerste Kerstdag"},
		{"Tweede Kerstdag 2025", deflt, at(2025, 12, 26, 10, 0), false, "Tweede Kerstdag"},
		{"Tweede Kerstdag 2026 on a Saturday", deflt, at(2026, 12, 26, 10, 0), false, "Tweede Kerstdag"},
		{"Nieuwjaarsdag 2026", deflt, at(2026, 1, 1, 10, 0), false, "Nieuwjaarsdag"},
		{"2 January 2026 works", deflt, at(2026, 1, 2, 10, 0), true, ""},
		{"Tweede Paasdag 2026", deflt, at(2026, 4, 6, 10, 0), false, "Tweede Paasdag"},
		{"Tweede Paasdag 2025", deflt, at(2025, 4, 21, 10, 0), false, "Tweede Paasdag"},
		{"Hemelvaartsdag 2026", deflt, at(2026, 5, 14, 10, 0), false, "Hemelvaartsdag"},
		{"Friday after Hemelvaart works", deflt, at(2026, 5, 15, 10, 0), true, ""},
		{"Tweede Pinksterdag 2026", deflt, at(2026, 5, 25, 10, 0), false, "Tweede Pinksterdag"},
		{"Goede Vrijdag 2026 works by default", deflt, at(2026, 4, 3, 10, 0), true, ""},
		{"Goede Vrijdag 2026 off by policy", gf, at(2026, 4, 3, 10, 0), false, "Goede Vrijdag"},
		{"Bevrijdingsdag 2025 lustrum off", deflt, at(2025, 5, 5, 10, 0), false, "Bevrijdingsdag"},
		{"Bevrijdingsdag 2026 works by default", deflt, at(2026, 5, 5, 10, 0), true, ""},
		{"Monday after Bevrijdingsdag 2030 (a Sunday) works", deflt, at(2030, 5, 6, 10, 0), true, ""},
		{"Bevrijdingsdag 2026 always off", always, at(2026, 5, 5, 10, 0), false, "Bevrijdingsdag"},
		{"Bevrijdingsdag 2025 never off", never, at(2025, 5, 5, 10, 0), true, ""},
		{"Saturday", deflt, at(2026, 3, 7, 10, 0), false, ""},
		{"Sunday", deflt, at(2026, 3, 8, 10, 0), false, ""},
		{"Monday", deflt, at(2026, 3, 9, 10, 0), true, ""},
		{"company closing day", closed, at(2026, 12, 24, 10, 0), false, ClosedDayName},
		{"closing day only in its year", closed, at(2027, 12, 24, 10, 0), true, ""},
		{"UTC late evening is Amsterdam's next day (Koningsdag)", deflt, time.Date(2026, 4, 26, 22, 30, 0, 0, time.UTC), false, "Koningsdag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCal(t, tt.policy)
			if got := c.IsWorkday(tt.day); got != tt.workday {
				t.Errorf("IsWorkday(%s) = %v, want %v", tt.day.Format(time.DateOnly), got, tt.workday)
			}
			name, ok := c.Holiday(tt.day)
			if ok != (tt.holiday != "") || name != tt.holiday {
				t.Errorf("Holiday(%s) = %q, %v; want %q", tt.day.Format(time.DateOnly), name, ok, tt.holiday)
			}
		})
	}
}

func TestBevrijdingsdag2030(t *testing.T) {
	c := newCal(t, Policy{})
	// 5 May 2030 is a Sunday: off, but no working day lost.
	if name, ok := c.Holiday(at(2030, 5, 5, 10, 0)); !ok || name != "Bevrijdingsdag" {
		t.Errorf("Holiday(2030-05-05) = %q, %v; want Bevrijdingsdag", name, ok)
	}
}

func TestAddWorkdays(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		from   time.Time
		n      int
		want   time.Time
	}{
		{"15 working days across Christmas and New Year", Policy{}, at(2025, 12, 15, 14, 30), 15, at(2026, 1, 8, 14, 30)},
		{"same with a closing day on 24 December", Policy{ExtraClosed: []Date{{2025, 12, 24}}}, at(2025, 12, 15, 14, 30), 15, at(2026, 1, 9, 14, 30)},
		{"Friday to Monday", Policy{}, at(2026, 3, 6, 10, 0), 1, at(2026, 3, 9, 10, 0)},
		{"from Saturday, one working day is Monday", Policy{}, at(2026, 3, 7, 20, 0), 1, at(2026, 3, 9, 20, 0)},
		{"zero is the same moment", Policy{}, at(2026, 3, 7, 20, 0), 0, at(2026, 3, 7, 20, 0)},
		{"over Easter 2026 default", Policy{}, at(2026, 4, 2, 9, 0), 2, at(2026, 4, 7, 9, 0)},
		{"over Easter 2026 with Goede Vrijdag off", Policy{GoodFridayOff: true}, at(2026, 4, 2, 9, 0), 2, at(2026, 4, 8, 9, 0)},
		{"over Koningsdag 2026", Policy{}, at(2026, 4, 24, 9, 0), 1, at(2026, 4, 28, 9, 0)},
		{"over Bevrijdingsdag 2025", Policy{}, at(2025, 5, 2, 9, 0), 1, at(2025, 5, 6, 9, 0)},
		{"over Bevrijdingsdag 2026", Policy{}, at(2026, 5, 4, 9, 0), 1, at(2026, 5, 5, 9, 0)},
		{"DST start keeps 10:00", Policy{}, at(2026, 3, 27, 10, 0), 1, at(2026, 3, 30, 10, 0)},
		{"DST end keeps 10:00", Policy{}, at(2026, 10, 23, 10, 0), 1, at(2026, 10, 26, 10, 0)},
		{"backwards over a weekend", Policy{}, at(2026, 3, 9, 10, 0), -1, at(2026, 3, 6, 10, 0)},
		{"backwards over Christmas", Policy{}, at(2025, 12, 29, 8, 0), -2, at(2025, 12, 23, 8, 0)},
		{"input in UTC answers in Amsterdam time", Policy{}, time.Date(2026, 3, 27, 9, 0, 0, 0, time.UTC), 1, at(2026, 3, 30, 10, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCal(t, tt.policy)
			got := c.AddWorkdays(tt.from, tt.n)
			if !got.Equal(tt.want) || got.Location() != c.Location() {
				t.Errorf("AddWorkdays(%s, %d) = %s, want %s", tt.from, tt.n, got, tt.want)
			}
			if between := c.WorkdaysBetween(tt.from, got); between != tt.n {
				t.Errorf("WorkdaysBetween(%s, %s) = %d, want %d", tt.from, got, between, tt.n)
			}
		})
	}
}

// TestDSTClockTime: across the summer-time change the wall clock is kept, so
// the elapsed time is one hour shorter (March) or longer (October).
func TestDSTClockTime(t *testing.T) {
	c := newCal(t, Policy{})
	tests := []struct {
		name    string
		from    time.Time
		elapsed time.Duration
	}{
		{"last Sunday of March 2026", at(2026, 3, 27, 10, 0), 3*24*time.Hour - time.Hour},
		{"last Sunday of October 2026", at(2026, 10, 23, 10, 0), 3*24*time.Hour + time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.AddWorkdays(tt.from, 1)
			if got.Hour() != 10 || got.Sub(tt.from) != tt.elapsed {
				t.Errorf("AddWorkdays = %s (%s later), want 10:00 and %s later", got, got.Sub(tt.from), tt.elapsed)
			}
		})
	}
}

func TestWorkdaysBetween(t *testing.T) {
	c := newCal(t, Policy{})
	tests := []struct {
		name string
		a, b time.Time
		want int
	}{
		{"same day", at(2026, 3, 9, 9, 0), at(2026, 3, 9, 17, 0), 0},
		{"one week", at(2026, 3, 9, 9, 0), at(2026, 3, 16, 9, 0), 5},
		{"reverse is negative", at(2026, 3, 16, 9, 0), at(2026, 3, 9, 9, 0), -5},
		{"year 2026: 261 weekdays minus 6 weekday holidays", at(2025, 12, 31, 12, 0), at(2026, 12, 31, 12, 0), 261 - 6},
		{"year 2025 with lustrum Bevrijdingsdag", at(2024, 12, 31, 12, 0), at(2025, 12, 31, 12, 0), 261 - 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.WorkdaysBetween(tt.a, tt.b); got != tt.want {
				t.Errorf("WorkdaysBetween = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestWorkdaysBetweenMatchesWalk compares the week-skipping count with a
// plain day-by-day walk over random intervals and policies.
func TestWorkdaysBetweenMatchesWalk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	policies := []Policy{{}, {GoodFridayOff: true, LiberationDay: LiberationAlways}, {ExtraClosed: []Date{{2026, 12, 24}, {2027, 5, 8}}}}
	for i := 0; i < 300; i++ {
		c := newCal(t, policies[i%len(policies)])
		a := at(2024, 1, 1, 12, 0).AddDate(0, 0, r.IntN(1500))
		b := a.AddDate(0, 0, r.IntN(400)-100)
		want := 0
		lo, hi, sign := a, b, 1
		if hi.Before(lo) {
			lo, hi, sign = hi, lo, -1
		}
		for d := lo.AddDate(0, 0, 1); !d.After(hi); d = d.AddDate(0, 0, 1) {
			if c.IsWorkday(d) {
				want++
			}
		}
		if got := c.WorkdaysBetween(a, b); got != sign*want {
			t.Fatalf("WorkdaysBetween(%s, %s) = %d, walk says %d", a, b, got, sign*want)
		}
	}
}

func TestOfficeHours(t *testing.T) {
	tests := []struct {
		name     string
		policy   Policy
		t        time.Time
		inOffice bool
		next     time.Time
	}{
		{"Monday 10:00 is open", Policy{}, at(2026, 3, 9, 10, 0), true, at(2026, 3, 9, 10, 0)},
		{"Monday 08:59 waits till 09:00", Policy{}, at(2026, 3, 9, 8, 59), false, at(2026, 3, 9, 9, 0)},
		{"Monday 17:00 is closed", Policy{}, at(2026, 3, 9, 17, 0), false, at(2026, 3, 10, 9, 0)},
		{"Friday evening waits till Monday", Policy{}, at(2026, 3, 6, 18, 0), false, at(2026, 3, 9, 9, 0)},
		{"Saturday morning waits till Monday", Policy{}, at(2026, 3, 7, 8, 0), false, at(2026, 3, 9, 9, 0)},
		{"Christmas Eve evening waits till 29 December", Policy{}, at(2025, 12, 24, 20, 0), false, at(2025, 12, 29, 9, 0)},
		{"Sunday before DST end opens Monday 09:00 CET", Policy{}, at(2026, 10, 25, 12, 0), false, at(2026, 10, 26, 9, 0)},
		{"Koningsdag morning waits a day", Policy{}, at(2026, 4, 27, 10, 0), false, at(2026, 4, 28, 9, 0)},
		{"custom hours 08:30–12:00 open", Policy{OfficeStart: 8*Hour + 30, OfficeEnd: 12 * Hour}, at(2026, 3, 9, 8, 30), true, at(2026, 3, 9, 8, 30)},
		{"custom hours afternoon closed", Policy{OfficeStart: 8*Hour + 30, OfficeEnd: 12 * Hour}, at(2026, 3, 9, 13, 0), false, at(2026, 3, 10, 8, 30)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCal(t, tt.policy)
			if got := c.InOfficeHours(tt.t); got != tt.inOffice {
				t.Errorf("InOfficeHours(%s) = %v, want %v", tt.t, got, tt.inOffice)
			}
			if got := c.NextOfficeTime(tt.t); !got.Equal(tt.next) {
				t.Errorf("NextOfficeTime(%s) = %s, want %s", tt.t, got, tt.next)
			}
		})
	}
}

func TestNewRejectsBadPolicy(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
	}{
		{"unknown liberation day", Policy{LiberationDay: "sometimes"}},
		{"end before start", Policy{OfficeStart: 17 * Hour, OfficeEnd: 9 * Hour}},
		{"end after midnight", Policy{OfficeStart: 9 * Hour, OfficeEnd: 25 * Hour}},
		{"impossible closed day", Policy{ExtraClosed: []Date{{2026, 2, 30}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.p); !errors.Is(err, ErrPolicy) {
				t.Errorf("New = %v, want ErrPolicy", err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	spans := []struct {
		in   string
		want Span
		ok   bool
	}{
		{"48h", Span{Clock: 48 * time.Hour}, true},
		{"5 workdays", Span{Workdays: 5}, true},
		{"1 workday", Span{Workdays: 1}, true},
		{"3wd", Span{Workdays: 3}, true},
		{"0 workdays", Span{}, false},
		{"-1h", Span{}, false},
		{"2 days", Span{}, false},
		{"", Span{}, false},
	}
	for _, tt := range spans {
		t.Run("span "+tt.in, func(t *testing.T) {
			got, err := ParseSpan(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParseSpan(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
			if tt.ok {
				if back, _ := ParseSpan(got.String()); back != got {
					t.Errorf("round trip %q → %q → %v", tt.in, got.String(), back)
				}
			}
		})
	}
	tods := []struct {
		in   string
		want TimeOfDay
		ok   bool
	}{
		{"09:00", 9 * Hour, true},
		{"17:30", 17*Hour + 30, true},
		{"24:00", 24 * Hour, true},
		{"9:5", 0, false},
		{"24:01", 0, false},
		{"12:60", 0, false},
		{"noon", 0, false},
	}
	for _, tt := range tods {
		t.Run("time "+tt.in, func(t *testing.T) {
			got, err := ParseTimeOfDay(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParseTimeOfDay(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
	if d, err := ParseDate("2026-12-24"); err != nil || d != (Date{2026, 12, 24}) {
		t.Errorf("ParseDate = %v, %v", d, err)
	}
	if _, err := ParseDate("2026-02-30"); err == nil {
		t.Error("ParseDate accepted 30 February")
	}
}

func TestAfter(t *testing.T) {
	c := newCal(t, Policy{})
	from := at(2026, 3, 6, 10, 0) // Friday
	if got := c.After(from, Span{Clock: 48 * time.Hour}); !got.Equal(at(2026, 3, 8, 10, 0)) {
		t.Errorf("After 48h = %s", got)
	}
	if got := c.After(from, Span{Workdays: 2}); !got.Equal(at(2026, 3, 10, 10, 0)) {
		t.Errorf("After 2 workdays = %s", got)
	}
}

func FuzzParseSpan(f *testing.F) {
	for _, s := range []string{"48h", "5 workdays", "3wd", "1h30m", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpan(s)
		if err != nil {
			return
		}
		if sp.IsZero() || (sp.Clock != 0 && sp.Workdays != 0) {
			t.Fatalf("ParseSpan(%q) = %+v: want exactly one positive part", s, sp)
		}
	})
}

func BenchmarkAddWorkdays15(b *testing.B) {
	c, _ := New(Policy{})
	t0 := at(2025, 12, 15, 14, 30)
	for b.Loop() {
		c.AddWorkdays(t0, 15)
	}
}
