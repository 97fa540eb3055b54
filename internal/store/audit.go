package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"secondopinion/internal/procedure"
)

// AuditEntry is one line of the audit log. Entries never hold medical
// content: events, reasons, names of physicians, document hashes.
type AuditEntry struct {
	ID         int64
	CaseID     int64
	CaseRef    string
	At         time.Time
	Event      string
	Detail     string
	Disclosure *procedure.Disclosure
	PrevHash   string
	Hash       string
}

// genesis is the previous hash of the first entry.
const genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// entryHash chains an entry to its predecessor: SHA-256 over the previous
// hash and the entry's fields, each length-prefixed so that no two entries
// can encode alike.
func entryHash(prev string, e AuditEntry, disclosure string) string {
	h := sha256.New()
	for _, f := range []string{prev, e.CaseRef, strconv.FormatInt(e.At.UnixMilli(), 10), e.Event, e.Detail, disclosure} {
		fmt.Fprintf(h, "%d:%s\n", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func appendAudit(ctx context.Context, tx *writeTx, e AuditEntry) error {
	prev := genesis
	err := tx.QueryRow(`SELECT hash FROM audit ORDER BY id DESC LIMIT 1`).Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("audit head: %w", err)
	}
	disc := ""
	if e.Disclosure != nil {
		b, err := json.Marshal(e.Disclosure)
		if err != nil {
			return err
		}
		disc = string(b)
	}
	var cid any
	if e.CaseID != 0 {
		cid = e.CaseID
	}
	_, err = tx.Exec(`INSERT INTO audit(case_id, case_ref, at, event, detail, disclosure, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, cid, e.CaseRef, ms(e.At), e.Event, e.Detail, disc, prev, entryHash(prev, e, disc))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AppendAudit records an event outside a case decision (a quarantine, a
// backoffice action on a message, a key import).
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) error {
	return s.tx(ctx, func(tx *writeTx) error { return appendAudit(ctx, tx, e) })
}

// AuditLog returns the entries of one case (all entries for caseID 0), in
// order.
func (s *Store) AuditLog(ctx context.Context, caseID int64) ([]AuditEntry, error) {
	q := `SELECT id, COALESCE(case_id, 0), case_ref, at, event, detail, disclosure, prev_hash, hash FROM audit`
	var args []any
	if caseID != 0 {
		q += ` WHERE case_id = ?`
		args = append(args, caseID)
	}
	rows, err := s.queryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		e, disc, err := scanAudit(rows)
		if err != nil {
			return nil, err
		}
		if disc != "" {
			e.Disclosure = new(procedure.Disclosure)
			if err := json.Unmarshal([]byte(disc), e.Disclosure); err != nil {
				return nil, fmt.Errorf("audit %d: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func scanAudit(rows *sql.Rows) (AuditEntry, string, error) {
	var e AuditEntry
	var at int64
	var disc string
	err := rows.Scan(&e.ID, &e.CaseID, &e.CaseRef, &at, &e.Event, &e.Detail, &disc, &e.PrevHash, &e.Hash)
	e.At = fromMS(at)
	return e, disc, err
}

// ErrAuditBroken: the audit chain does not verify.
var ErrAuditBroken = errors.New("audit chain broken")

// VerifyAudit walks the whole chain and returns the number of entries, or
// ErrAuditBroken naming the first entry that does not verify.
func (s *Store) VerifyAudit(ctx context.Context) (int, error) {
	rows, err := s.queryContext(ctx, `SELECT id, COALESCE(case_id, 0), case_ref, at, event, detail, disclosure, prev_hash, hash FROM audit ORDER BY id`)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	prev, n := genesis, 0
	for rows.Next() {
		e, disc, err := scanAudit(rows)
		if err != nil {
			return n, err
		}
		if e.PrevHash != prev {
			return n, fmt.Errorf("%w at entry %d: it does not follow entry %d", ErrAuditBroken, e.ID, e.ID-1)
		}
		if want := entryHash(prev, e, disc); want != e.Hash {
			return n, fmt.Errorf("%w at entry %d: its content was changed", ErrAuditBroken, e.ID)
		}
		prev = e.Hash
		n++
	}
	return n, rows.Err()
}

// auditLine is one line of the JSON-lines export.
type auditLine struct {
	ID         int64                 `json:"id"`
	CaseRef    string                `json:"case_ref"`
	At         string                `json:"at"`
	Event      string                `json:"event"`
	Detail     string                `json:"detail"`
	Disclosure *procedure.Disclosure `json:"disclosure"` // null when none
	PrevHash   string                `json:"prev_hash"`
	Hash       string                `json:"hash"`
}

// auditTimeLayout is RFC 3339 with the milliseconds the hash chain covers,
// so an exported log can be verified on its own.
const auditTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// WriteAuditJSONL writes audit entries as JSON lines, one object per entry
// (id, case_ref, at, event, detail, disclosure, prev_hash, hash), so the
// chain can be checked outside the daemon. The demo's audit.jsonl and
// 'secondopinion audit export' write it.
func WriteAuditJSONL(w io.Writer, entries []AuditEntry) error {
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if err := enc.Encode(auditLine{ID: e.ID, CaseRef: e.CaseRef, At: e.At.UTC().Format(auditTimeLayout), Event: e.Event,
			Detail: e.Detail, Disclosure: e.Disclosure, PrevHash: e.PrevHash, Hash: e.Hash}); err != nil {
			return fmt.Errorf("audit entry %d: %w", e.ID, err)
		}
	}
	return nil
}
