package store

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"secondopinion/internal/procedure"
)

// BenchmarkApply commits decisions with fsync on (synchronous=FULL, WAL):
// each decision updates a case, replaces its deadlines, appends two audit
// entries to the chain and queues one mail.
func BenchmarkApply(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	c, err := s.Apply(ctx, Decision{Case: newCase(b, s, procedure.StateChoosing, t0), Now: t0})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c.Deadlines = []procedure.Deadline{
			{Step: procedure.StepChoice, Kind: procedure.Remind, Due: t0.Add(time.Duration(i) * time.Minute)},
			{Step: procedure.StepChoice, Kind: procedure.Escalate, Due: t0.Add(time.Duration(i)*time.Minute + time.Hour)},
		}
		c, err = s.Apply(ctx, Decision{Case: c, Now: t0,
			Audit:  []AuditEntry{{Event: "reminder", Detail: "choice"}, {Event: "mail", Detail: "reminder"}},
			Outbox: []OutboxRow{{MessageID: fmt.Sprintf("<%d@so>", i), From: "so@x", To: []string{"jan@x"}, Body: body}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkSweep100k finds the due deadlines among 100 000 open cases, each
// with two deadlines, of which 100 are due.
func BenchmarkSweep100k(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	const n = 100_000
	// Fill in bulk, in one transaction, bypassing Apply for speed.
	err := s.tx(ctx, func(tx *writeTx) error {
		data, _ := json.Marshal(procedure.Case{State: procedure.StateChoosing})
		for i := 1; i <= n; i++ {
			due := t0.Add(time.Duration(i) * time.Minute)
			if _, err := tx.Exec(`INSERT INTO cases(id, ref, state, version, next_due, created_at, updated_at, data) VALUES (?, ?, 'choosing', 1, ?, ?, ?, ?)`,
				i, fmt.Sprintf("SO-2026-%06d", i), ms(due), ms(t0), ms(t0), data); err != nil {
				return err
			}
			for _, k := range []struct {
				kind string
				d    time.Time
			}{{"reminder", due}, {"escalation", due.Add(48 * time.Hour)}} {
				if _, err := tx.Exec(`INSERT INTO deadlines(case_id, step, kind, due) VALUES (?, 'choice', ?, ?)`, i, k.kind, ms(k.d)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	now := t0.Add(100 * time.Minute)
	b.ResetTimer()
	for b.Loop() {
		due, err := s.DueDeadlines(ctx, now, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(due) != 100 {
			b.Fatalf("%d due", len(due))
		}
	}
}

// BenchmarkOutboxMarks records one mail's delivery as the worker does, with
// fsync on: 'sending' before the first byte, 'sent' after the server's
// reply; for mail kept in its row, small and large.
func BenchmarkOutboxMarks(b *testing.B) {
	for _, size := range []int{4 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			body := make([]byte, size)
			var ids []int64
			for i := range 2000 {
				if err := s.Enqueue(ctx, OutboxRow{MessageID: fmt.Sprintf("<%d@so>", i), From: "so@x", To: []string{"jan@x"}, Body: body}, t0); err != nil {
					b.Fatal(err)
				}
			}
			items, err := s.DueOutbox(ctx, t0, 2000)
			if err != nil {
				b.Fatal(err)
			}
			for _, it := range items {
				ids = append(ids, it.ID)
			}
			b.ResetTimer()
			n := 0
			for b.Loop() {
				if n == len(ids) {
					b.Fatal("out of queued mail")
				}
				id := ids[n]
				n++
				if err := s.OutboxSending(ctx, id, t0); err != nil {
					b.Fatal(err)
				}
				if err := s.OutboxSent(ctx, id, t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/mail")
		})
	}
}

// BenchmarkPolls runs the queries the daemon repeats while it waits for
// work (mail to decide, mail to send, deadlines due) on an empty store:
// what one round of polling costs once the statements are kept compiled.
func BenchmarkPolls(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.PendingInbound(ctx, 64); err != nil {
			b.Fatal(err)
		}
		if _, err := s.DueOutbox(ctx, t0, 32); err != nil {
			b.Fatal(err)
		}
		if _, err := s.DueDeadlines(ctx, t0, 32); err != nil {
			b.Fatal(err)
		}
	}
}
