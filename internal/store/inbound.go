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
// server: StageRaw and CommitRaws for one message.
func (s *Store) StoreRaw(ctx context.Context, meta RawMeta, r io.Reader) (id int64, dup bool, err error) {
	st, err := s.StageRaw(meta, r)
	if err != nil {
		return 0, false, err
	}
	res, err := s.CommitRaws(ctx, []*StagedRaw{st})
	if err != nil {
		return 0, false, err
	}
	return res[0].ID, res[0].Duplicate, nil
}

// StagedRaw is a raw message read by StageRaw and not yet recorded.
type StagedRaw struct {
	meta  RawMeta
	body  []byte // the bytes, when small; else in the file rel
	rel   string
	sha   string
	size  int64
	msgID string
}

// RawStored is what CommitRaws made of a staged message.
type RawStored struct {
	// ID is the inbound row (of the first copy, for a duplicate).
	ID int64
	// Duplicate: the message was stored before (same Message-ID and
	// content hash), e.g. fetched again after a crash before the IMAP mark.
	Duplicate bool
}

// StageRaw reads one raw message to EOF: a small one into memory, a larger
// one into a file, fsynced. Nothing is recorded until CommitRaws.
func (s *Store) StageRaw(meta RawMeta, r io.Reader) (*StagedRaw, error) {
	head := &headWriter{max: maxHeader}
	body, rel, sha, size, err := s.putBody("inbound", ".eml", io.TeeReader(r, head), inlineRaw, true)
	if err != nil {
		return nil, fmt.Errorf("store raw: %w", err)
	}
	return &StagedRaw{meta: meta, body: body, rel: rel, sha: sha, size: size, msgID: head.messageID()}, nil
}

// CommitRaws records staged messages, in order, in one transaction (one
// fsync for a batch of replies), before the caller marks them on the IMAP
// server. A message stored before (same Message-ID and content hash, also
// earlier in the same batch) is recognised: Duplicate is set and the
// existing row's ID returned, so a crash between storing and marking leads
// to exactly one processing. A large duplicate's file is the one already
// recorded (files are named by content).
func (s *Store) CommitRaws(ctx context.Context, staged []*StagedRaw) ([]RawStored, error) {
	out := make([]RawStored, len(staged))
	err := s.tx(ctx, func(tx *writeTx) error {
		for i, st := range staged {
			received := st.meta.ReceivedAt
			if received.IsZero() {
				received = time.Now()
			}
			m := st.meta
			err := tx.QueryRow(`INSERT INTO inbound(message_id, sha256, size, path, mailbox, uidvalidity, uid, oversize, received_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(message_id, sha256) DO NOTHING RETURNING id`,
				st.msgID, st.sha, st.size, st.rel, m.Mailbox, m.UIDValidity, m.UID, m.Oversize, ms(received)).Scan(&out[i].ID)
			if errors.Is(err, sql.ErrNoRows) {
				// Stored before; a purged one stays purged.
				out[i].Duplicate = true
				err = tx.QueryRow(`SELECT id FROM inbound WHERE message_id = ? AND sha256 = ?`, st.msgID, st.sha).Scan(&out[i].ID)
				if err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if st.rel != "" {
				continue
			}
			// The bytes in a row of their own: marking the message rewrites
			// only the inbound row (see migration 0004).
			if _, err := tx.Exec(`INSERT INTO inbound_body(inbound_id, body) VALUES (?, ?)`, out[i].ID, st.body); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store raw: %w", err)
	}
	return out, nil
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
	res, err := tx.Exec(`UPDATE inbound SET status = ?, reason = ?, case_id = COALESCE(?, case_id), handled_at = ? WHERE id = ?`,
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
		if err := tx.QueryRow(`SELECT sha256 FROM inbound WHERE id = ?`, id).Scan(&sha); err != nil {
			return fmt.Errorf("quarantine %d: %w", id, err)
		}
		if _, err := tx.Exec(`INSERT INTO alerts(case_id, at, reason) VALUES (NULL, ?, ?)`,
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
