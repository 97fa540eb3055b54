package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// OutboxRow is a composed mail waiting to be sent. Small mail keeps its
// bytes in Body; large mail (encrypted documents) in a file from PutFile.
type OutboxRow struct {
	CaseID    int64
	MessageID string
	From      string
	To        []string
	Body      []byte
	Path      string
}

// OutboxItem is a queued mail handed to the delivery worker.
type OutboxItem struct {
	ID        int64
	CaseID    int64
	MessageID string
	From      string
	To        []string
	Attempts  int
	Queued    time.Time
	// SendingSince is when the attempt began that left the mail
	// 'sending' (InFlightOutbox only).
	SendingSince time.Time
	path         string
	s            *Store
}

// Open returns the composed message bytes. They are read only here, when
// the mail is about to go out, not with the list of due mail.
func (it OutboxItem) Open() (io.ReadCloser, error) {
	if it.path != "" {
		return it.s.OpenFile(it.path)
	}
	var body []byte
	if err := it.s.queryRowContext(context.Background(), `SELECT body FROM outbox_body WHERE outbox_id = ?`, it.ID).Scan(&body); err != nil {
		return nil, fmt.Errorf("outbox %d: %w", it.ID, err)
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

func insertOutbox(ctx context.Context, tx *writeTx, o OutboxRow, now time.Time) error {
	to, err := json.Marshal(o.To)
	if err != nil {
		return err
	}
	var path any
	if o.Path != "" {
		path = o.Path
	}
	// A Message-ID already queued is the same mail composed again after a
	// crash: the first one stands, nothing is sent twice.
	var id int64
	err = tx.QueryRow(`INSERT INTO outbox(case_id, message_id, sender, recipients, path, next_attempt, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(message_id) DO NOTHING RETURNING id`,
		nullID(o.CaseID), o.MessageID, o.From, string(to), path, ms(now), ms(now)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err == nil && o.Path == "" {
		// The bytes in a row of their own: the status changes to come
		// rewrite only the outbox row (see migration 0004).
		_, err = tx.Exec(`INSERT INTO outbox_body(outbox_id, body) VALUES (?, ?)`, id, o.Body)
	}
	if err != nil {
		return fmt.Errorf("outbox %s: %w", o.MessageID, err)
	}
	return nil
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// Enqueue queues a mail outside a case decision (backoffice notices).
func (s *Store) Enqueue(ctx context.Context, o OutboxRow, now time.Time) error {
	return s.tx(ctx, func(tx *writeTx) error { return insertOutbox(ctx, tx, o, now) })
}

// DueOutbox returns up to limit queued mails whose next attempt is due.
func (s *Store) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxItem, error) {
	return s.outboxItems(ctx, "due outbox", `WHERE status = 'queued' AND next_attempt <= ? ORDER BY next_attempt, id`+limitClause(limit), ms(now))
}

// InFlightOutbox returns the mails left 'sending': an attempt began and
// its outcome was never recorded (a crash), or the server's reply to the
// end of the data never came.
func (s *Store) InFlightOutbox(ctx context.Context) ([]OutboxItem, error) {
	return s.outboxItems(ctx, "outbox in flight", `WHERE status = 'sending' ORDER BY sending_since, id`)
}

func (s *Store) outboxItems(ctx context.Context, what, where string, args ...any) ([]OutboxItem, error) {
	rows, err := s.queryContext(ctx, `SELECT id, COALESCE(case_id, 0), message_id, sender, recipients, COALESCE(path, ''), attempts, created_at, COALESCE(sending_since, 0)
		FROM outbox `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []OutboxItem
	for rows.Next() {
		it := OutboxItem{s: s}
		var to string
		var queued, sending int64
		if err := rows.Scan(&it.ID, &it.CaseID, &it.MessageID, &it.From, &to, &it.path, &it.Attempts, &queued, &sending); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		it.Queued = fromMS(queued)
		if sending != 0 {
			it.SendingSince = fromMS(sending)
		}
		if err := json.Unmarshal([]byte(to), &it.To); err != nil {
			return nil, fmt.Errorf("outbox %d recipients: %w", it.ID, err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// OutboxSending records that an attempt of one mail begins, before the
// first byte goes to the SMTP server: from then until its outcome is
// recorded the mail may be delivered without our knowing (see
// InFlightOutbox). It fails with ErrNotFound, and records nothing, when
// the mail is not queued.
func (s *Store) OutboxSending(ctx context.Context, id int64, now time.Time) error {
	err := s.tx(ctx, func(tx *writeTx) error {
		res, err := tx.Exec(`UPDATE outbox SET status = 'sending', sending_since = ? WHERE id = ? AND status = 'queued'`, ms(now), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("mail %d is not queued: %w", id, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// OutboxSent records that one mail was delivered. It fails with
// ErrNotFound, and records nothing, when the mail is neither queued nor
// sending.
//
// A mail marked sent loses its bytes: the row keeps who sent what to whom
// and when (the audit log keeps which documents it disclosed), the body
// goes in the same transaction, or its file right after the commit. A
// copy is not needed to send it again, and the service's sent-copy folder
// holds what went out. Each body belongs to one row: it carries the
// row's Message-ID.
func (s *Store) OutboxSent(ctx context.Context, id int64, now time.Time) error {
	var path string
	err := s.tx(ctx, func(tx *writeTx) error {
		path = ""
		err := tx.QueryRow(`SELECT COALESCE(path, '') FROM outbox WHERE id = ? AND status IN ('queued', 'sending')`, id).Scan(&path)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mail %d is neither queued nor sending: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE outbox SET status = 'sent', sent_at = ?, sending_since = NULL, attempts = attempts + 1, path = NULL
			WHERE id = ?`, ms(now), id); err != nil {
			return err
		}
		_, err = tx.Exec(`DELETE FROM outbox_body WHERE outbox_id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if path != "" {
		// A file not removed now (a crash first, an I/O error) is named
		// by no row any more: SweepFiles removes it.
		s.removeFiles([]string{path})
	}
	return nil
}

// OutboxRetry records a temporary failure and the next attempt.
func (s *Store) OutboxRetry(ctx context.Context, id int64, next time.Time, reason string) error {
	return s.outboxUpdate(ctx, `UPDATE outbox SET status = 'queued', sending_since = NULL, attempts = attempts + 1, next_attempt = ?, last_error = ?
		WHERE id = ? AND status IN ('queued', 'sending')`, ms(next), reason, id)
}

// OutboxFailed records a permanent failure.
func (s *Store) OutboxFailed(ctx context.Context, id int64, reason string) error {
	return s.outboxUpdate(ctx, `UPDATE outbox SET status = 'failed', sending_since = NULL, attempts = attempts + 1, last_error = ?
		WHERE id = ? AND status IN ('queued', 'sending')`, reason, id)
}

func (s *Store) outboxUpdate(ctx context.Context, q string, args ...any) error {
	res, err := s.exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("outbox: %w", ErrNotFound)
	}
	return nil
}

// NextOutbox returns when the next queued mail is due.
func (s *Store) NextOutbox(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := s.queryRowContext(ctx, `SELECT MIN(next_attempt) FROM outbox WHERE status = 'queued'`).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, false, err
	}
	return fromMS(next.Int64), true, nil
}

// OutboxStats is the queue's depth and the age of its oldest mail.
type OutboxStats struct {
	Queued, Sending, Sent, Failed int
	Oldest                        time.Time // of the queued and sending mail
}

// OutboxStats counts the outbox.
func (s *Store) OutboxStats(ctx context.Context) (OutboxStats, error) {
	var st OutboxStats
	var oldest sql.NullInt64
	err := s.queryRowContext(ctx, `SELECT
		COALESCE(SUM(status = 'queued'), 0), COALESCE(SUM(status = 'sending'), 0), COALESCE(SUM(status = 'sent'), 0), COALESCE(SUM(status = 'failed'), 0),
		MIN(CASE WHEN status IN ('queued', 'sending') THEN created_at END) FROM outbox`).Scan(&st.Queued, &st.Sending, &st.Sent, &st.Failed, &oldest)
	if oldest.Valid {
		st.Oldest = fromMS(oldest.Int64)
	}
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return st, err
}
