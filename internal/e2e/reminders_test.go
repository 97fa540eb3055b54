package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
)

func at(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, rig.Amsterdam)
}

// sweepAt moves the clock to t and runs the deadline sweep once, as the
// cron schedule would; it returns how many deadlines fired, once every
// mail it caused is delivered.
func (e *env) sweepAt(t time.Time) int {
	e.t.Helper()
	e.r.Clock.Set(t)
	n, err := e.r.Engine.Sweep(e.ctx)
	if err != nil {
		e.t.Fatalf("sweep at %s: %v", t.Format("Mon 2 Jan 15:04"), err)
	}
	e.settle()
	return n
}

// count is how many mails of a template addr received.
func (e *env) count(addr, template string) int {
	n := 0
	for _, m := range e.received()[addr] {
		if m.template == template {
			n++
		}
	}
	return n
}

// expectCounts asserts the number of mails of each template per address,
// after a sweep at a moment described by when.
func (e *env) expectCounts(when string, want map[string]map[string]int) {
	e.t.Helper()
	for addr, ts := range want {
		for tmpl, n := range ts {
			if got := e.count(addr, tmpl); got != n {
				e.t.Errorf("%s: %s has %d × %s, want %d", when, addr, got, tmpl, n)
			}
		}
	}
}

type reminderCase struct {
	name  string
	start time.Time
	run   func(e *env)
}

func reminderCases() []reminderCase {
	return []reminderCase{
		{
			// Step 3: the employee chooses within 48 hours; a reminder
			// after 24, the backoffice is alerted after 48.
			name: "choice_48_hours", start: at(2026, 3, 2, 9, 0),
			run: func(e *env) {
				prop := e.choosing() // proposal at Mon 2 Mar 10:00
				if !strings.Contains(prop.Text(), "woensdag 4 maart 2026 om 10:00") {
					e.t.Errorf("the proposal does not ask for the choice within 48 hours (by Wed 4 March 10:00):\n%s", prop.Text())
				}
				p := e.p
				e.sweepAt(at(2026, 3, 3, 9, 59))
				e.expectCounts("after 23h59", map[string]map[string]int{p.employee: {"reminder": 0}, p.backoffice: {"alert": 0}})
				e.sweepAt(at(2026, 3, 3, 10, 1))
				e.expectCounts("after 24h", map[string]map[string]int{p.employee: {"reminder": 1}, p.backoffice: {"alert": 0}})
				e.sweepAt(at(2026, 3, 3, 15, 0))
				e.expectCounts("later that day", map[string]map[string]int{p.employee: {"reminder": 1}})
				e.sweepAt(at(2026, 3, 4, 10, 1))
				e.expectCounts("after 48h", map[string]map[string]int{p.employee: {"reminder": 1}, p.backoffice: {"alert": 1}})
				al := e.next(p.backoffice, "Aandacht")
				if !strings.Contains(al.Text(), "48") {
					e.t.Errorf("the escalation does not say the 48 hours passed:\n%s", al.Text())
				}
				// The reminder still takes an answer.
				rem := e.next(p.employee, "Herinnering")
				e.reply(p.employee, rem, "Sorry! Nummer 2 graag.", false)
				e.next(p.employee, "machtigingsformulier")
				if c := e.theCase(); c.Chosen == nil || c.Chosen.Email != p.jansen {
					e.t.Errorf("the answer to the reminder chose %+v, want C. Jansen", c.Chosen)
				}
			},
		},
		{
			// Step 4: signatures are reminded after 2 working days; the
			// form goes out on a Friday, so the weekend does not count.
			name: "signatures_2_working_days", start: at(2026, 3, 6, 9, 0),
			run: func(e *env) {
				prop := e.choosing()
				e.reply(e.p.employee, prop, "1", false) // form at Fri 6 Mar 10:00
				e.next(e.p.employee, "machtigingsformulier")
				p := e.p
				e.sweepAt(at(2026, 3, 9, 16, 0)) // Monday: 1 working day
				e.expectCounts("Monday", map[string]map[string]int{p.employee: {"reminder": 0}, p.original: {"reminder": 0}})
				e.sweepAt(at(2026, 3, 10, 10, 1)) // Tuesday: 2 working days
				e.expectCounts("Tuesday", map[string]map[string]int{p.employee: {"reminder": 1}, p.original: {"reminder": 1}})
				rem := e.next(p.original, "Herinnering")
				if rem.Msg.Encrypted || strings.Contains(rem.Text(), "QCONF-"+p.tag) {
					e.t.Error("the physician's reminder must be a content-free plain notice")
				}
				// One signature in: only the other is reminded again.
				e.reply(p.employee, e.next(p.employee, "Herinnering"), "Akkoord", false)
				e.waitFor(func(c *procedure.Case) bool { return c.EmployeeConsent != nil }, "the employee's consent")
				e.sweepAt(at(2026, 3, 13, 10, 1))
				e.expectCounts("Friday", map[string]map[string]int{p.employee: {"reminder": 1}})
			},
		},
		{
			// Step 5: the consult within 15 working days, Koningsdag
			// (Monday 27 April 2026) excluded: authorised on Thursday 16
			// April, the target is Friday 8 May.
			name: "consult_target_koningsdag", start: at(2026, 4, 16, 9, 0),
			run: func(e *env) { consultTarget(e, at(2026, 5, 8, 0, 0), "8 mei 2026") },
		},
		{
			// Christmas (Friday 25 December 2026) and New Year's Day (Friday
			// 1 January 2027) excluded: authorised on Thursday 17 December,
			// the target is Monday 11 January 2027.
			name: "consult_target_christmas", start: at(2026, 12, 17, 9, 0),
			run: func(e *env) { consultTarget(e, at(2027, 1, 11, 0, 0), "11 januari 2027") },
		},
		{
			// The daemon was down for a week while both signatures were
			// awaited: one sweep sends exactly one reminder per waiting
			// step, not one per missed day.
			name: "catch_up_after_downtime", start: at(2026, 3, 2, 9, 0),
			run: func(e *env) {
				prop := e.choosing()
				e.reply(e.p.employee, prop, "1", false) // form at Mon 2 Mar 10:00
				e.next(e.p.employee, "machtigingsformulier")
				e.settle()
				p := e.p
				if n := e.sweepAt(at(2026, 3, 9, 10, 30)); n == 0 {
					e.t.Error("the sweep after a week fired nothing")
				}
				e.expectCounts("after a week down", map[string]map[string]int{p.employee: {"reminder": 1}, p.original: {"reminder": 1}})
				if n := e.sweepAt(at(2026, 3, 9, 10, 31)); n != 0 {
					e.t.Errorf("a second sweep a minute later fired %d deadlines", n)
				}
				e.expectCounts("a minute later", map[string]map[string]int{p.employee: {"reminder": 1}, p.original: {"reminder": 1}})
			},
		},
		{
			// Reminders wait for office hours on a working day: due on
			// Tuesday 21:00, none at 22:00, sent at 09:00 on Wednesday.
			name: "office_hours", start: at(2026, 3, 2, 20, 0),
			run: func(e *env) {
				e.choosing() // proposal at Mon 2 Mar 21:00
				p := e.p
				if n := e.sweepAt(at(2026, 3, 3, 22, 0)); n != 0 {
					e.t.Errorf("the sweep at 22:00 fired %d deadlines", n)
				}
				e.expectCounts("Tuesday 22:00", map[string]map[string]int{p.employee: {"reminder": 0}})
				e.sweepAt(at(2026, 3, 4, 8, 59))
				e.expectCounts("Wednesday 08:59", map[string]map[string]int{p.employee: {"reminder": 0}})
				e.sweepAt(at(2026, 3, 4, 9, 0))
				e.expectCounts("Wednesday 09:00", map[string]map[string]int{p.employee: {"reminder": 1}, p.backoffice: {"alert": 0}})
			},
		},
	}
}

// consultTarget authorises a case and checks the consult target the SO
// physician is shown and the case holds.
func consultTarget(e *env, want time.Time, shown string) {
	e.t.Helper()
	e.accepting("1")
	req := e.next(e.p.bakker, "second opinion doen")
	if !strings.Contains(req.Text(), shown) {
		e.t.Errorf("the request to the SO physician does not show the target %s:\n%s", shown, req.Text())
	}
	c := e.theCase()
	if got := c.ConsultTarget.In(rig.Amsterdam); got.Year() != want.Year() || got.YearDay() != want.YearDay() {
		e.t.Errorf("consult target %s, want %s (authorised %s)", got.Format("Mon 2 Jan 2006"), want.Format("Mon 2 Jan 2006"),
			c.AuthorisedAt.In(rig.Amsterdam).Format("Mon 2 Jan 2006 15:04"))
	}
}

// waitFor waits until the case satisfies ok.
func (e *env) waitFor(ok func(*procedure.Case) bool, what string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok(e.theCase()) {
		if time.Now().After(deadline) {
			e.t.Fatalf("waited for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReminders runs the procedure's deadlines on the clock.
func TestReminders(t *testing.T) {
	cases := reminderCases()
	be := chooseBackend(t)
	var srv *servers
	if be == realServers {
		var tags []string
		for i := range cases {
			tags = append(tags, "r"+tagOf(i))
		}
		srv = startServers(t, tags)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(c.name, func(t *testing.T) {
				e := newEnv(t, be, srv, "r"+tagOf(i), func(o *rig.Options) { o.Start = c.start })
				c.run(e)
				if !t.Failed() {
					e.checkMail(map[string][]string{"intake": {e.p.original}, "form_physician": {e.p.original}, "forward": {e.p.bakker}})
				}
				if t.Failed() {
					t.Logf("mail:\n%s", e.summary())
				}
			})
		}()
	}
	wg.Wait()
}
