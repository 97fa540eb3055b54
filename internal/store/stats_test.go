package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/procedure"
)

func TestStatsOfAnEmptyStore(t *testing.T) {
	s := open(t)
	st, err := s.Stats(context.Background(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.SchemaVersion < 1 {
		t.Errorf("schema version %d", st.SchemaVersion)
	}
	if len(st.Cases) != 0 || len(st.Overdue) != 0 || st.OutboxQueued+st.OutboxSent+st.OutboxFailed+st.OutboxDue != 0 ||
		st.InboundPending+st.Quarantined+st.AlertsOpen != 0 {
		t.Errorf("empty store counts something: %+v", st)
	}
	if !st.OutboxOldestQueued.IsZero() || !st.OutboxOldestDue.IsZero() || !st.InboundOldestPending.IsZero() {
		t.Errorf("empty store has an oldest item: %+v", st)
	}
}

func TestStatsCountWhatWaits(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	apply := func(state procedure.State, dls ...procedure.Deadline) {
		t.Helper()
		c := newCase(t, s, state, time.Time{})
		c.Deadlines = dls
		if _, err := s.Apply(ctx, Decision{Case: c, Now: t0.Add(-48 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	// Two reminders and an escalation overdue at t0, one of each still ahead.
	apply(procedure.StateChoosing, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Remind, Due: t0.Add(-3 * time.Hour)},
		procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Escalate, Due: t0.Add(time.Hour)})
	apply(procedure.StateChoosing, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Remind, Due: t0})
	apply(procedure.StateIntake, procedure.Deadline{Step: procedure.StepIntake, Kind: procedure.Escalate, Due: t0.Add(-time.Minute)},
		procedure.Deadline{Step: procedure.StepIntake, Kind: procedure.Remind, Due: t0.Add(time.Minute)})
	apply(procedure.StateCompleted, procedure.Deadline{Step: procedure.StepRetention, Kind: procedure.Expire, Due: t0.AddDate(20, 0, 0)})

	// Inbound: two pending, one quarantined, one processed.
	var ids []int64
	for i, at := range []time.Time{t0.Add(-time.Hour), t0.Add(-2 * time.Hour), t0.Add(-30 * time.Minute), t0.Add(-10 * time.Minute)} {
		raw := fmt.Sprintf("Message-ID: <in%d@x.example>\r\n\r\nbody\r\n", i)
		id, _, err := s.StoreRaw(ctx, RawMeta{UID: uint32(i + 1), ReceivedAt: at}, strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := s.MarkInbound(ctx, ids[1], InboundQuarantined, "unknown sender", 0, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkInbound(ctx, ids[2], InboundProcessed, "", 0, t0); err != nil {
		t.Fatal(err)
	}

	// Outbox: one due since t0-40m, one retrying later, one sent, one failed.
	for i, at := range []time.Time{t0.Add(-40 * time.Minute), t0.Add(-50 * time.Minute), t0.Add(-5 * time.Minute), t0.Add(-time.Minute)} {
		if err := s.Enqueue(ctx, OutboxRow{MessageID: fmt.Sprintf("<out%d@so>", i), From: "so@x", To: []string{"a@x"}, Body: []byte("m")}, at); err != nil {
			t.Fatal(err)
		}
	}
	items, err := s.DueOutbox(ctx, t0, 10)
	if err != nil || len(items) != 4 {
		t.Fatalf("due %d %v", len(items), err)
	}
	byMID := map[string]int64{}
	for _, it := range items {
		byMID[it.MessageID] = it.ID
	}
	s.OutboxRetry(ctx, byMID["<out1@so>"], t0.Add(10*time.Minute), "451 later")
	s.OutboxSent(ctx, byMID["<out2@so>"], t0)
	s.OutboxFailed(ctx, byMID["<out3@so>"], "550 no such user")

	s.AddAlert(ctx, 0, "key of x expires soon", t0)
	s.AddAlert(ctx, 0, "delivery failed for good", t0)

	st, err := s.Stats(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	wantCases := map[procedure.State]int{procedure.StateChoosing: 2, procedure.StateIntake: 1, procedure.StateCompleted: 1}
	if fmt.Sprint(st.Cases) != fmt.Sprint(wantCases) {
		t.Errorf("cases %v, want %v", st.Cases, wantCases)
	}
	wantOverdue := map[procedure.DeadlineKind]OverdueDeadlines{
		procedure.Remind:   {Count: 2, Oldest: t0.Add(-3 * time.Hour)},
		procedure.Escalate: {Count: 1, Oldest: t0.Add(-time.Minute)},
	}
	if fmt.Sprint(st.Overdue) != fmt.Sprint(wantOverdue) {
		t.Errorf("overdue %v, want %v", st.Overdue, wantOverdue)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"outbox queued", st.OutboxQueued, 2},
		{"outbox sent", st.OutboxSent, 1},
		{"outbox failed", st.OutboxFailed, 1},
		{"oldest queued (the retrying one counts)", st.OutboxOldestQueued, t0.Add(-50 * time.Minute)},
		{"outbox due", st.OutboxDue, 1},
		{"oldest due", st.OutboxOldestDue, t0.Add(-40 * time.Minute)},
		{"inbound pending", st.InboundPending, 2},
		{"oldest pending", st.InboundOldestPending, t0.Add(-time.Hour)},
		{"quarantined", st.Quarantined, 1},
		{"alerts", st.AlertsOpen, 2},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestStatsAreReadWhileAWriterHoldsTheLock(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	// A write transaction held open (another process, a long decision)
	// must not block a scrape: WAL readers see the last commit.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO alerts(at, reason) VALUES (1, 'x')`); err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := s.Stats(qctx, t0)
	if err != nil {
		t.Fatalf("stats under a write lock: %v", err)
	}
	if st.AlertsOpen != 0 {
		t.Errorf("saw an uncommitted alert")
	}
}
