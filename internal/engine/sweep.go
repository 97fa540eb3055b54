package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"secondopinion/internal/procedure"
)

// sweepBatch bounds one pass of the sweep.
const sweepBatch = 500

// Sweep reaches every due deadline through the one path. Reminders wait for
// office hours on a working day; escalations and the retention purge do
// not. Each deadline fires once and is then gone from the case, so a
// daemon that was down for a week sends one catch-up reminder per waiting
// step, never a burst.
func (e *Engine) Sweep(ctx context.Context) (int, error) {
	now := e.Now()
	due, err := e.o.Store.DueDeadlines(ctx, now, sweepBatch)
	if err != nil {
		return 0, err
	}
	office := e.o.Calendar == nil || e.o.Calendar.InOfficeHours(now)
	n := 0
	for _, d := range due {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if d.Kind == procedure.Remind && !office {
			continue
		}
		_, err := e.Handle(ctx, d.CaseID, procedure.DeadlineReached{Step: d.Step, Kind: d.Kind}, Source{Via: "deadline"})
		if errors.Is(err, procedure.ErrUnexpected) || errors.Is(err, procedure.ErrClosed) {
			// The case moved on between the query and the decision.
			continue
		}
		if err != nil {
			return n, fmt.Errorf("deadline %s %s of case %d: %w", d.Step, d.Kind, d.CaseID, err)
		}
		n++
	}
	return n, nil
}

// NextWake is when the sweep has work next: the earliest deadline, but a
// reminder due outside office hours wakes at the next office time.
func (e *Engine) NextWake(ctx context.Context) (time.Time, bool, error) {
	t, ok, err := e.o.Store.NextDeadline(ctx)
	if err != nil || !ok {
		return t, ok, err
	}
	if e.o.Calendar != nil && !e.o.Calendar.InOfficeHours(t) {
		// Escalations are not held back, but waking at most at the next
		// opening keeps the loop simple; escalations due before it are
		// caught by the periodic tick.
		if next := e.o.Calendar.NextOfficeTime(t); next.After(t) {
			return next, true, nil
		}
	}
	return t, true, nil
}

// CheckKeys judges every registry physician's key now: a key that expires
// within 30 days or is unusable is an alert; a case that waits for a key
// that has become usable resumes. It logs each (a key as a warning, a
// resumed case as information) and returns them as notes.
func (e *Engine) CheckKeys(ctx context.Context) ([]string, error) {
	now := e.Now()
	var notes []string
	for _, p := range e.Registry().Physicians {
		_, v, err := e.o.Keyring.Lookup(p.Email, now)
		switch {
		case err != nil || !v.Usable:
			reason := v.Reason
			if err != nil {
				reason = err.Error()
			}
			notes = append(notes, fmt.Sprintf("key of %s (%s) is not usable: %s", p.Name, p.Email, reason))
		case v.ExpiresSoon:
			notes = append(notes, fmt.Sprintf("key of %s (%s) expires on %s", p.Name, p.Email, v.Expires.Format("2006-01-02")))
		}
	}
	for _, n := range notes {
		e.log.Warn("key check", "note", n)
		if err := e.o.Store.AddAlert(ctx, 0, n, now); err != nil {
			return notes, err
		}
	}
	ids, err := e.o.Store.CasesWaitingForKeys(ctx)
	if err != nil {
		return notes, err
	}
	for _, id := range ids {
		c, err := e.o.Store.Case(ctx, id)
		if err != nil {
			return notes, err
		}
		for _, addr := range waitingAddresses(c) {
			if _, v, err := e.o.Keyring.Lookup(addr, now); err != nil || !v.Usable {
				continue
			}
			if _, err := e.Handle(ctx, c.ID, procedure.KeyAvailable{Email: addr}, Source{Via: "key check"}); err != nil &&
				!errors.Is(err, procedure.ErrUnexpected) {
				return notes, err
			}
			n := fmt.Sprintf("case %s resumed: a usable key for %s is on file", c.Ref, addr)
			e.log.Info("key check", "note", n)
			notes = append(notes, n)
		}
	}
	return notes, nil
}

// waitingAddresses lists the addresses a case waits for a key of.
func waitingAddresses(c *procedure.Case) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		a = strings.ToLower(a)
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(c.WaitingKey)
	for _, w := range c.Withheld {
		add(w.Email)
	}
	return out
}
