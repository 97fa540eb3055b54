package workdays_test

import (
	"fmt"
	"time"

	"secondopinion/internal/workdays"
)

// The consult must take place within 15 working days of a complete
// authorisation; Christmas and New Year do not count.
func ExampleCalendar_AddWorkdays() {
	cal, err := workdays.New(workdays.Policy{})
	if err != nil {
		panic(err)
	}
	ams := cal.Location()
	authorised := time.Date(2025, 12, 15, 14, 30, 0, 0, ams)
	fmt.Println(cal.AddWorkdays(authorised, 15).Format("Mon 2006-01-02 15:04"))
	// Output: Thu 2026-01-08 14:30
}

func ExampleCalendar_Holiday() {
	cal, _ := workdays.New(workdays.Policy{LiberationDay: workdays.LiberationLustrum})
	for _, d := range []string{"2025-04-26", "2025-05-05", "2026-05-05", "2026-04-03"} {
		t, _ := time.ParseInLocation(time.DateOnly, d, cal.Location())
		name, ok := cal.Holiday(t)
		fmt.Println(d, name, ok)
	}
	// Output:
	// 2025-04-26 Koningsdag true
	// 2025-05-05 Bevrijdingsdag true
	// 2026-05-05  false
	// 2026-04-03  false
}

// Reminders go out in office hours only: a deadline reached on Friday
// evening sends its reminder on Monday morning.
func ExampleCalendar_NextOfficeTime() {
	cal, _ := workdays.New(workdays.Policy{OfficeStart: 9 * workdays.Hour, OfficeEnd: 17 * workdays.Hour})
	friday := time.Date(2026, 3, 6, 18, 0, 0, 0, cal.Location())
	fmt.Println(cal.NextOfficeTime(friday).Format("Mon 15:04"))
	// Output: Mon 09:00
}

func ExampleParseSpan() {
	for _, s := range []string{"48h", "5 workdays"} {
		sp, _ := workdays.ParseSpan(s)
		fmt.Printf("%s: clock %v, workdays %d\n", sp, sp.Clock, sp.Workdays)
	}
	// Output:
	// 48h0m0s: clock 48h0m0s, workdays 0
	// 5 workdays: clock 0s, workdays 5
}
