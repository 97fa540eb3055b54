package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"secondopinion/internal/procedure"
)

// Decision is everything one step of the procedure commits together.
type Decision struct {
	// Case is the case after the decision. Case.Version must be the
	// version that was read (0 for a new case); Apply stores version+1.
	Case *procedure.Case
	// Audit entries, in order; they join the hash chain.
	Audit []AuditEntry
	// Outbox holds the mail composed for the decision's mail effects.
	Outbox []OutboxRow
	// Documents are sealed documents written beforehand with PutFile.
	Documents []DocumentRow
	// Alerts for the backoffice.
	Alerts []string
	// Inbound is the inbound message this decision answers (0: none); it
	// is marked with InboundStatus in the same transaction, which is what
	// makes processing exactly-once.
	Inbound       int64
	InboundStatus string
	InboundReason string
	// Purge deletes the case's documents, raw inbound mail and outgoing
	// mail bodies (files and rows' bytes), leaving the case's deletion
	// record and the audit log.
	Purge bool
	// Now stamps the rows.
	Now time.Time
}

// DocumentRow describes a stored (sealed) document.
type DocumentRow struct {
	SHA256 string
	Kind   string // medical, advice, form
	Title  string
	Name   string
	Size   int64
	Path   string // relative to the data dir, from PutFile
}

// NextCase allocates the ID and reference of a new case: the year's next
// serial, SO-2026-0042, with ID 2026000042. The ID is known before the
// first decision commits, so the mail of that decision can carry reply
// tokens that name the case. A number allocated for a decision that then
// fails is simply skipped.
func (s *Store) NextCase(ctx context.Context, now time.Time) (id int64, ref string, err error) {
	year := now.Year()
	var last int64
	err = s.tx(ctx, func(tx *writeTx) error {
		return tx.QueryRow(`INSERT INTO serials(year, last) VALUES (?, 1)
			ON CONFLICT(year) DO UPDATE SET last = last + 1 RETURNING last`, year).Scan(&last)
	})
	if err != nil {
		return 0, "", fmt.Errorf("next case: %w", err)
	}
	if last >= 1_000_000 {
		return 0, "", fmt.Errorf("next case: more than 999999 cases in %d", year)
	}
	return int64(year)*1_000_000 + last, procedure.RefFor(year, last), nil
}

// Apply commits one decision in one transaction and returns the case with
// its new ID and version. A case whose version no longer matches is
// ErrStale and nothing is written.
func (s *Store) Apply(ctx context.Context, d Decision) (*procedure.Case, error) {
	if d.Case == nil {
		return nil, errors.New("apply: no case")
	}
	c := *d.Case
	now := d.Now
	if now.IsZero() {
		now = time.Now()
	}
	var purged []string // files of a purge, removed once it has committed
	err := s.tx(ctx, func(tx *writeTx) error {
		data, err := json.Marshal(&c)
		if err != nil {
			return fmt.Errorf("encode case: %w", err)
		}
		var next any
		if dl, ok := c.NextDeadline(); ok {
			next = ms(dl.Due)
		}
		if c.Version == 0 {
			c.Version = 1
			data, _ = json.Marshal(&c)
			res, err := tx.Exec(`INSERT INTO cases(id, ref, state, version, employee_email, waiting_on, next_due, created_at, updated_at, closed_at, data)
				VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)`,
				nullID(c.ID), c.Ref, c.State, c.Employee.Email, c.WaitingOn(), next, ms(c.CreatedAt), ms(now), nullMS(c.ClosedAt), data)
			if err != nil {
				return fmt.Errorf("insert case %s: %w", c.Ref, err)
			}
			if c.ID, err = res.LastInsertId(); err != nil {
				return err
			}
		} else {
			prev := c.Version
			c.Version++
			data, _ = json.Marshal(&c)
			res, err := tx.Exec(`UPDATE cases SET state = ?, version = ?, employee_email = ?, waiting_on = ?, next_due = ?,
				updated_at = ?, closed_at = ?, data = ? WHERE id = ? AND version = ?`,
				c.State, c.Version, c.Employee.Email, c.WaitingOn(), next, ms(now), nullMS(c.ClosedAt), data, c.ID, prev)
			if err != nil {
				return fmt.Errorf("update case %s: %w", c.Ref, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("case %s version %d: %w", c.Ref, prev, ErrStale)
			}
			if _, err := tx.Exec(`DELETE FROM deadlines WHERE case_id = ?`, c.ID); err != nil {
				return err
			}
		}
		for _, dl := range c.Deadlines {
			if _, err := tx.Exec(`INSERT INTO deadlines(case_id, step, kind, due) VALUES (?, ?, ?, ?)`,
				c.ID, dl.Step, dl.Kind, ms(dl.Due)); err != nil {
				return fmt.Errorf("deadline: %w", err)
			}
		}
		for _, a := range d.Audit {
			a.CaseID, a.CaseRef = c.ID, c.Ref
			if a.At.IsZero() {
				a.At = now
			}
			if err := appendAudit(ctx, tx, a); err != nil {
				return err
			}
		}
		for _, o := range d.Outbox {
			o.CaseID = c.ID
			if err := insertOutbox(ctx, tx, o, now); err != nil {
				return err
			}
		}
		for _, doc := range d.Documents {
			if _, err := tx.Exec(`INSERT INTO documents(case_id, sha256, kind, title, name, size, path, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(case_id, sha256) DO NOTHING`,
				c.ID, doc.SHA256, doc.Kind, doc.Title, doc.Name, doc.Size, doc.Path, ms(now)); err != nil {
				return fmt.Errorf("document: %w", err)
			}
		}
		for _, reason := range d.Alerts {
			if _, err := tx.Exec(`INSERT INTO alerts(case_id, at, reason) VALUES (?, ?, ?)`, c.ID, ms(now), reason); err != nil {
				return fmt.Errorf("alert: %w", err)
			}
		}
		if d.Purge {
			var err error
			if purged, err = purge(tx, c.ID); err != nil {
				return err
			}
		}
		if d.Inbound != 0 {
			status := d.InboundStatus
			if status == "" {
				status = InboundProcessed
			}
			if err := markInbound(ctx, tx, d.Inbound, status, d.InboundReason, c.ID, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.removeFiles(purged)
	return &c, nil
}

// Case reads a case by ID.
func (s *Store) Case(ctx context.Context, id int64) (*procedure.Case, error) {
	return s.caseWhere(ctx, `id = ?`, id)
}

// CaseByRef reads a case by reference.
func (s *Store) CaseByRef(ctx context.Context, ref string) (*procedure.Case, error) {
	return s.caseWhere(ctx, `ref = ?`, ref)
}

func (s *Store) caseWhere(ctx context.Context, where string, arg any) (*procedure.Case, error) {
	var data []byte
	var id, version int64
	err := s.queryRowContext(ctx, `SELECT id, version, data FROM cases WHERE `+where, arg).Scan(&id, &version, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("case %v: %w", arg, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("case %v: %w", arg, err)
	}
	var c procedure.Case
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode case %v: %w", arg, err)
	}
	// The columns are authoritative for identity and version.
	c.ID, c.Version = id, version
	return &c, nil
}

// CaseSummary is one line of the backoffice's case list.
type CaseSummary struct {
	ID        int64
	Ref       string
	State     procedure.State
	WaitingOn string
	NextDue   time.Time // zero when none
	UpdatedAt time.Time
}

// CaseFilter selects cases for the list; zero values select all.
type CaseFilter struct {
	State procedure.State
	// OverdueAt, when set, keeps only cases with a deadline due at or
	// before that moment.
	OverdueAt time.Time
	// Open keeps only cases not in a final state.
	Open bool
}

// Cases lists cases, the earliest deadline first.
func (s *Store) Cases(ctx context.Context, f CaseFilter) ([]CaseSummary, error) {
	q := `SELECT id, ref, state, waiting_on, next_due, updated_at FROM cases WHERE 1=1`
	var args []any
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, f.State)
	}
	if !f.OverdueAt.IsZero() {
		q += ` AND next_due IS NOT NULL AND next_due <= ? AND state NOT IN ('completed','withdrawn','refused','out_of_scope','referred','purged')`
		args = append(args, ms(f.OverdueAt))
	}
	if f.Open {
		q += ` AND state NOT IN ('completed','withdrawn','refused','out_of_scope','referred','purged')`
	}
	q += ` ORDER BY next_due IS NULL, next_due, id`
	rows, err := s.queryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list cases: %w", err)
	}
	defer rows.Close()
	var out []CaseSummary
	for rows.Next() {
		var cs CaseSummary
		var next sql.NullInt64
		var upd int64
		if err := rows.Scan(&cs.ID, &cs.Ref, &cs.State, &cs.WaitingOn, &next, &upd); err != nil {
			return nil, err
		}
		if next.Valid {
			cs.NextDue = fromMS(next.Int64)
		}
		cs.UpdatedAt = fromMS(upd)
		out = append(out, cs)
	}
	return out, rows.Err()
}

// CountByState counts cases per state (for metrics).
func (s *Store) CountByState(ctx context.Context) (map[procedure.State]int, error) {
	rows, err := s.queryContext(ctx, `SELECT state, COUNT(*) FROM cases GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[procedure.State]int{}
	for rows.Next() {
		var st procedure.State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// EarlierRequests tells what became of the cases an employee opened
// before, for the original physician's intake (repeated use is a weighty
// reason to refuse); cases out of scope are left out (procedure.Earlier).
func (s *Store) EarlierRequests(ctx context.Context, employeeEmail string) (procedure.Earlier, error) {
	var e procedure.Earlier
	rows, err := s.queryContext(ctx, `SELECT state, COUNT(*) FROM cases WHERE employee_email = ? GROUP BY state`, employeeEmail)
	if err != nil {
		return e, fmt.Errorf("earlier requests: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st procedure.State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return e, fmt.Errorf("earlier requests: %w", err)
		}
		e.Count(st, n)
	}
	return e, rows.Err()
}

// DueDeadline is a deadline whose moment has come.
type DueDeadline struct {
	CaseID int64
	Step   procedure.Step
	Kind   procedure.DeadlineKind
	Due    time.Time
}

// DueDeadlines returns up to limit deadlines due at or before now, the
// earliest first. The sweep uses the deadlines_due index, so its cost is
// the number of due deadlines, not the number of open cases.
func (s *Store) DueDeadlines(ctx context.Context, now time.Time, limit int) ([]DueDeadline, error) {
	rows, err := s.queryContext(ctx, `SELECT case_id, step, kind, due FROM deadlines WHERE due <= ? ORDER BY due`+limitClause(limit), ms(now))
	if err != nil {
		return nil, fmt.Errorf("due deadlines: %w", err)
	}
	defer rows.Close()
	var out []DueDeadline
	for rows.Next() {
		var d DueDeadline
		var due int64
		if err := rows.Scan(&d.CaseID, &d.Step, &d.Kind, &due); err != nil {
			return nil, err
		}
		d.Due = fromMS(due)
		out = append(out, d)
	}
	return out, rows.Err()
}

// NextDeadline returns the earliest deadline of all cases.
func (s *Store) NextDeadline(ctx context.Context) (time.Time, bool, error) {
	var due sql.NullInt64
	if err := s.queryRowContext(ctx, `SELECT MIN(due) FROM deadlines`).Scan(&due); err != nil {
		return time.Time{}, false, err
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return fromMS(due.Int64), true, nil
}

// Alert is a notice for the backoffice.
type Alert struct {
	ID       int64
	CaseID   int64
	At       time.Time
	Reason   string
	Resolved bool
}

// AddAlert records an alert outside a case decision (a bounce, a key about
// to expire, a delivery that failed for good).
func (s *Store) AddAlert(ctx context.Context, caseID int64, reason string, now time.Time) error {
	var cid any
	if caseID != 0 {
		cid = caseID
	}
	_, err := s.exec(ctx, `INSERT INTO alerts(case_id, at, reason) VALUES (?, ?, ?)`, cid, ms(now), reason)
	return err
}

// Alerts lists unresolved alerts (all when all is true).
func (s *Store) Alerts(ctx context.Context, all bool) ([]Alert, error) {
	q := `SELECT id, COALESCE(case_id, 0), at, reason, resolved_at IS NOT NULL FROM alerts`
	if !all {
		q += ` WHERE resolved_at IS NULL`
	}
	rows, err := s.queryContext(ctx, q+` ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		var at int64
		if err := rows.Scan(&a.ID, &a.CaseID, &at, &a.Reason, &a.Resolved); err != nil {
			return nil, err
		}
		a.At = fromMS(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// purge removes a case's stored bytes from its rows and returns the files
// they named, for the caller to remove once the purge has committed (a
// file it cannot remove then is left to SweepFiles, as no row names it).
func purge(tx *writeTx, caseID int64) (files []string, err error) {
	for _, q := range []string{
		`SELECT path FROM documents WHERE case_id = ?`,
		`SELECT path FROM inbound WHERE case_id = ? AND path != ''`,
		`SELECT path FROM outbox WHERE case_id = ? AND path IS NOT NULL`,
	} {
		rows, err := tx.Query(q, caseID)
		if err != nil {
			return nil, fmt.Errorf("purge: %w", err)
		}
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return nil, err
			}
			files = append(files, p)
		}
		rows.Close()
	}
	for _, q := range []string{
		`DELETE FROM documents WHERE case_id = ?`,
		`DELETE FROM inbound_body WHERE inbound_id IN (SELECT id FROM inbound WHERE case_id = ?)`,
		`UPDATE inbound SET path = '' WHERE case_id = ?`,
		`DELETE FROM outbox_body WHERE outbox_id IN (SELECT id FROM outbox WHERE case_id = ?)`,
		`UPDATE outbox SET path = NULL WHERE case_id = ?`,
	} {
		if _, err := tx.Exec(q, caseID); err != nil {
			return nil, fmt.Errorf("purge: %w", err)
		}
	}
	return files, nil
}

// Documents lists the stored documents of a case.
func (s *Store) Documents(ctx context.Context, caseID int64) ([]DocumentRow, error) {
	rows, err := s.queryContext(ctx, `SELECT sha256, kind, title, name, size, path FROM documents WHERE case_id = ? ORDER BY id`, caseID)
	if err != nil {
		return nil, fmt.Errorf("documents: %w", err)
	}
	defer rows.Close()
	var out []DocumentRow
	for rows.Next() {
		var d DocumentRow
		if err := rows.Scan(&d.SHA256, &d.Kind, &d.Title, &d.Name, &d.Size, &d.Path); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ResolveAlert marks one alert (or, with id 0, every open alert) resolved.
// It returns how many it resolved.
func (s *Store) ResolveAlert(ctx context.Context, id int64, now time.Time) (int, error) {
	q, args := `UPDATE alerts SET resolved_at = ? WHERE resolved_at IS NULL`, []any{ms(now)}
	if id != 0 {
		q += ` AND id = ?`
		args = append(args, id)
	}
	res, err := s.exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("resolve alert: %w", err)
	}
	n, _ := res.RowsAffected()
	if id != 0 && n == 0 {
		return 0, fmt.Errorf("alert %d: %w (or already resolved)", id, ErrNotFound)
	}
	return int(n), nil
}

// CasesWaitingForKeys returns the cases (open or closed, not purged) that
// wait for a usable key: a forward held back, or a withheld medical mail.
func (s *Store) CasesWaitingForKeys(ctx context.Context) ([]int64, error) {
	rows, err := s.queryContext(ctx, `SELECT id FROM cases WHERE state != 'purged' AND (
		COALESCE(json_extract(CAST(data AS TEXT), '$.waiting_key'), '') != ''
		OR COALESCE(json_array_length(CAST(data AS TEXT), '$.withheld'), 0) > 0) ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("cases waiting for keys: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
