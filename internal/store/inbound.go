package store

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// Inbound statuses.
const (
	InboundNew         = "new"         // stored, not yet handled
	InboundProcessed   = "processed"   // its decision committed
	InboundQuarantined = "quarantined" // kept for the backoffice, with a reason
	InboundReleased    = "released"    // the backoffice let it through
	InboundRejected    = "rejected"    // the backoffice discarded it (kept for the record)
)

// RawMeta describes where an inbound message came from.
type RawMeta struct {
	Mailbox     string
	UIDValidity uint32
	UID         uint32
	// Oversize marks a message over the configured size: it is kept and
	// quarantined, never parsed.
	Oversize   bool
	ReceivedAt time.Time
}

// Inbound is a stored inbound message.
type Inbound struct {
	ID         int64
	MessageID  string
	SHA256     string
	Size       int64
	Path       string // the file under the data dir; empty when the bytes are in the row
	Purged     bool   // the raw bytes were removed with the case
	Oversize   bool
	ReceivedAt time.Time
	Status     string
	Reason     string
	CaseID     int64
}

// maxHeader bounds how much of a message is kept in memory to find its
// Message-ID; the body of a large message streams straight to disk.
const maxHeader = 64 << 10

// StoreRaw stores one raw message durably (in its row when small, else in
// a file, fsynced) and records it before the caller marks it on the IMAP
// server. A message stored before (same Message-ID and content hash) is
// recognised: dup is true and the existing row's ID is returned, so a
// crash between storing and marking leads to exactly one processing.
func (s *Store) StoreRaw(ctx context.Context, meta RawMeta, r io.Reader) (id int64, dup bool, err error) {
	// A small message is committed in its row; a larger one streams to a
	// file, fsynced, before the row names it.
	head := &headWriter{max: maxHeader}
	body, rel, sha, size, err := s.putBody("inbound", ".eml", io.TeeReader(r, head), inlineRaw)
	if err != nil {
		return 0, false, fmt.Errorf("store raw: %w", err)
	}
	msgID := head.messageID()

	// Fetched again after a crash before the IMAP mark: the same row (and,
	// for a large message, the same file).
	var existing int64
	err = s.queryRowContext(ctx, `SELECT id FROM inbound WHERE message_id = ? AND sha256 = ?`, msgID, sha).Scan(&existing)
	if err == nil {
		return existing, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("store raw: %w", err)
	}
	received := meta.ReceivedAt
	if received.IsZero() {
		received = time.Now()
	}
	err = s.tx(ctx, func(tx *writeTx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO inbound(message_id, sha256, size, path, mailbox, uidvalidity, uid, oversize, received_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(message_id, sha256) DO NOTHING RETURNING id`,
			msgID, sha, size, rel, meta.Mailbox, meta.UIDValidity, meta.UID, meta.Oversize, ms(received)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			// Stored meanwhile by another fetch of the same message; a
			// purged one stays purged.
			return tx.QueryRowContext(ctx, `SELECT id FROM inbound WHERE message_id = ? AND sha256 = ?`, msgID, sha).Scan(&id)
		}
		if err != nil || rel != "" {
			return err
		}
		// The bytes in a row of their own: marking the message rewrites
		// only the inbound row (see migration 0004).
		_, err = tx.ExecContext(ctx, `INSERT INTO inbound_body(inbound_id, body) VALUES (?, ?)`, id, body)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("store raw: %w", err)
	}
	return id, false, nil
}

// inlineRaw is the largest inbound message kept in its row rather than in
// a file: every reply and signed answer, most requests. A file costs a
// create, two fsyncs and a rename before the message may be marked on the
// IMAP server; a row is committed with one.
const inlineRaw = 256 << 10

// headWriter keeps the header section (up to max bytes).
type headWriter struct {
	buf  bytes.Buffer
	max  int
	done bool
}

func (w *headWriter) Write(p []byte) (int, error) {
	if !w.done {
		room := w.max - w.buf.Len()
		if room > len(p) {
			room = len(p)
		}
		w.buf.Write(p[:room])
		b := w.buf.Bytes()
		if bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n")) || w.buf.Len() >= w.max {
			w.done = true
		}
	}
	return len(p), nil
}

func (w *headWriter) messageID() string {
	b := w.buf.Bytes()
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		b = b[:i+4]
	} else if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		b = b[:i+2]
	} else {
		b = append(append([]byte(nil), b...), "\r\n\r\n"...)
	}
	m, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(m.Header.Get("Message-Id"))
}

// PendingInbound lists stored messages not yet handled, oldest first.
func (s *Store) PendingInbound(ctx context.Context, limit int) ([]Inbound, error) {
	return s.inboundWhere(ctx, `status = 'new' ORDER BY id`+limitClause(limit))
}

// Quarantined lists the quarantined messages, oldest first.
func (s *Store) Quarantined(ctx context.Context) ([]Inbound, error) {
	return s.inboundWhere(ctx, `status = 'quarantined' ORDER BY id`)
}

// InboundByID reads one stored message's row.
func (s *Store) InboundByID(ctx context.Context, id int64) (Inbound, error) {
	in, err := s.inboundWhere(ctx, `id = ?`, id)
	if err != nil {
		return Inbound{}, err
	}
	if len(in) == 0 {
		return Inbound{}, fmt.Errorf("message %d: %w", id, ErrNotFound)
	}
	return in[0], nil
}

func (s *Store) inboundWhere(ctx context.Context, where string, args ...any) ([]Inbound, error) {
	rows, err := s.queryContext(ctx, `SELECT id, message_id, sha256, size, path, path = '' AND body IS NULL, oversize, received_at, status, reason, COALESCE(case_id, 0)
		FROM inbound LEFT JOIN inbound_body ON inbound_id = id WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("inbound: %w", err)
	}
	defer rows.Close()
	var out []Inbound
	for rows.Next() {
		var in Inbound
		var rec int64
		if err := rows.Scan(&in.ID, &in.MessageID, &in.SHA256, &in.Size, &in.Path, &in.Purged, &in.Oversize, &rec, &in.Status, &in.Reason, &in.CaseID); err != nil {
			return nil, err
		}
		in.ReceivedAt = fromMS(rec)
		out = append(out, in)
	}
	return out, rows.Err()
}

// OpenInbound opens a stored message's raw bytes.
func (s *Store) OpenInbound(ctx context.Context, in Inbound) (io.ReadSeekCloser, error) {
	if in.Path != "" {
		return s.OpenFile(in.Path)
	}
	var body []byte
	if err := s.queryRowContext(ctx, `SELECT body FROM inbound_body WHERE inbound_id = ?`, in.ID).Scan(&body); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", in.ID, err)
	}
	if body == nil {
		return nil, fmt.Errorf("message %d: its raw bytes were purged with its case", in.ID)
	}
	return nopCloser{bytes.NewReader(body)}, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// MarkInbound sets a message's status outside a case decision: a
// quarantine with its reason, a release or a rejection by the backoffice.
func (s *Store) MarkInbound(ctx context.Context, id int64, status, reason string, caseID int64, now time.Time) error {
	return s.tx(ctx, func(tx *writeTx) error { return markInbound(ctx, tx, id, status, reason, caseID, now) })
}

func markInbound(ctx context.Context, tx *writeTx, id int64, status, reason string, caseID int64, now time.Time) error {
	res, err := tx.ExecContext(ctx, `UPDATE inbound SET status = ?, reason = ?, case_id = COALESCE(?, case_id), handled_at = ? WHERE id = ?`,
		status, reason, nullID(caseID), ms(now), id)
	if err != nil {
		return fmt.Errorf("inbound %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("inbound %d: %w", id, ErrNotFound)
	}
	return nil
}

// Quarantine keeps a message for the backoffice in one transaction: its
// status and reason, an alert, and an audit entry. The message's bytes stay
// as they are; nothing in it is acted on.
func (s *Store) Quarantine(ctx context.Context, id int64, reason string, now time.Time) error {
	return s.tx(ctx, func(tx *writeTx) error {
		var sha string
		if err := tx.QueryRowContext(ctx, `SELECT sha256 FROM inbound WHERE id = ?`, id).Scan(&sha); err != nil {
			return fmt.Errorf("quarantine %d: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO alerts(case_id, at, reason) VALUES (NULL, ?, ?)`,
			ms(now), fmt.Sprintf("message %d quarantined: %s", id, reason)); err != nil {
			return fmt.Errorf("quarantine %d: %w", id, err)
		}
		if err := appendAudit(ctx, tx, AuditEntry{CaseRef: "-", At: now, Event: "quarantined",
			Detail: fmt.Sprintf("message %d (%s): %s", id, sha[:min(16, len(sha))], reason)}); err != nil {
			return err
		}
		return markInbound(ctx, tx, id, InboundQuarantined, reason, 0, now)
	})
}
