package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"secondopinion/internal/procedure"
)

// Stats is what an operator watches, read in one snapshot: how many cases
// wait where, what the daemon has not yet done that it should have, and
// what waits for the backoffice. It holds counts and moments only, never a
// name, an address or a subject.
type Stats struct {
	// SchemaVersion is the highest applied migration.
	SchemaVersion int
	// Cases counts cases per state; states without cases are absent.
	Cases map[procedure.State]int
	// Overdue counts deadlines due at or before now, per kind (reminder,
	// escalation, expiry), with the earliest due moment of each kind.
	// The sweep fires escalations and expiries at once, so those stay
	// overdue only while the sweep is not running; reminders wait for
	// office hours and may stay overdue overnight.
	Overdue map[procedure.DeadlineKind]OverdueDeadlines
	// Outbox is the queue's depth; OldestQueued is the creation time of the
	// oldest queued or sending mail (zero if none).
	OutboxQueued, OutboxSending, OutboxFailed, OutboxSent int
	OutboxOldestQueued                                    time.Time
	// OutboxDue counts queued mail whose next attempt is at or before now;
	// OutboxOldestDue is the earliest such attempt time (zero if none). A
	// worker that runs leaves nothing due for long: a failed attempt moves
	// next_attempt forward.
	OutboxDue       int
	OutboxOldestDue time.Time
	// InboundPending counts stored mail not yet handled (status new);
	// InboundOldestPending is the oldest one's arrival (the IMAP
	// INTERNALDATE, or the moment it was stored when the server gave none).
	InboundPending       int
	InboundOldestPending time.Time
	// Quarantined counts the messages waiting for the backoffice.
	Quarantined int
	// AlertsOpen counts unresolved alerts.
	AlertsOpen int
}

// OverdueDeadlines counts deadlines of one kind that have passed.
type OverdueDeadlines struct {
	Count  int
	Oldest time.Time
}

// Stats reads the operational figures at now in one read transaction, so
// the numbers agree with each other. Every query is an aggregate over an
// indexed column; a scrape does not read case data.
func (s *Store) Stats(ctx context.Context, now time.Time) (Stats, error) {
	st := Stats{Cases: map[procedure.State]int{}, Overdue: map[procedure.DeadlineKind]OverdueDeadlines{}}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, fmt.Errorf("stats: begin: %w", err)
	}
	defer tx.Rollback()

	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&st.SchemaVersion); err != nil {
		return st, fmt.Errorf("stats: schema: %w", err)
	}

	rows, err := tx.QueryContext(ctx, `SELECT state, COUNT(*) FROM cases GROUP BY state`)
	if err != nil {
		return st, fmt.Errorf("stats: cases: %w", err)
	}
	for rows.Next() {
		var state procedure.State
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			rows.Close()
			return st, fmt.Errorf("stats: cases: %w", err)
		}
		st.Cases[state] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("stats: cases: %w", err)
	}

	rows, err = tx.QueryContext(ctx, `SELECT kind, COUNT(*), MIN(due) FROM deadlines WHERE due <= ? GROUP BY kind`, ms(now))
	if err != nil {
		return st, fmt.Errorf("stats: deadlines: %w", err)
	}
	for rows.Next() {
		var kind procedure.DeadlineKind
		var n int
		var oldest int64
		if err := rows.Scan(&kind, &n, &oldest); err != nil {
			rows.Close()
			return st, fmt.Errorf("stats: deadlines: %w", err)
		}
		st.Overdue[kind] = OverdueDeadlines{Count: n, Oldest: fromMS(oldest)}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("stats: deadlines: %w", err)
	}

	var oldestQueued, oldestDue sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(status = 'queued'), 0), COALESCE(SUM(status = 'sending'), 0), COALESCE(SUM(status = 'failed'), 0), COALESCE(SUM(status = 'sent'), 0),
		MIN(CASE WHEN status IN ('queued', 'sending') THEN created_at END),
		COALESCE(SUM(status = 'queued' AND next_attempt <= ?), 0),
		MIN(CASE WHEN status = 'queued' AND next_attempt <= ? THEN next_attempt END)
		FROM outbox`, ms(now), ms(now)).Scan(&st.OutboxQueued, &st.OutboxSending, &st.OutboxFailed, &st.OutboxSent, &oldestQueued, &st.OutboxDue, &oldestDue); err != nil {
		return st, fmt.Errorf("stats: outbox: %w", err)
	}
	st.OutboxOldestQueued = nullTime(oldestQueued)
	st.OutboxOldestDue = nullTime(oldestDue)

	var oldestPending sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(status = 'new'), 0), MIN(CASE WHEN status = 'new' THEN received_at END),
		COALESCE(SUM(status = 'quarantined'), 0)
		FROM inbound WHERE status IN ('new', 'quarantined')`).Scan(&st.InboundPending, &oldestPending, &st.Quarantined); err != nil {
		return st, fmt.Errorf("stats: inbound: %w", err)
	}
	st.InboundOldestPending = nullTime(oldestPending)

	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM alerts WHERE resolved_at IS NULL`).Scan(&st.AlertsOpen); err != nil {
		return st, fmt.Errorf("stats: alerts: %w", err)
	}
	return st, nil
}

func nullTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}
