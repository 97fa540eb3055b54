package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"secondopinion/internal/procedure"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newCase(t testing.TB, s *Store, state procedure.State, due time.Time) *procedure.Case {
	t.Helper()
	_, ref, err := s.NextCase(context.Background(), t0)
	if err != nil {
		t.Fatal(err)
	}
	c := &procedure.Case{Ref: ref, State: state, CreatedAt: t0, Employee: procedure.Person{Name: "Jan", Email: "jan@x.example"}}
	if !due.IsZero() {
		c.Deadlines = []procedure.Deadline{{Step: procedure.StepChoice, Kind: procedure.Remind, Due: due}}
	}
	return c
}

func TestOpenCreatesPrivateDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{dir, filepath.Join(dir, "inbound"), filepath.Join(dir, "documents")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", p, fi.Mode().Perm())
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, "secondopinion.db"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v", fi.Mode().Perm())
	}
	// Reopening applies no migration twice and keeps the data.
	ctx := context.Background()
	c := newCase(t, s, procedure.StateIntake, t0)
	if _, err := s.Apply(ctx, Decision{Case: c, Now: t0}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, _ := s2.SchemaVersion(ctx); v != 5 {
		t.Errorf("schema version %d", v)
	}
	if _, err := s2.CaseByRef(ctx, c.Ref); err != nil {
		t.Errorf("case lost on reopen: %v", err)
	}
}

func TestNextRefCountsPerYear(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	var got []string
	for _, at := range []time.Time{t0, t0, t0.AddDate(1, 0, 0), t0} {
		_, ref, err := s.NextCase(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ref)
	}
	if want := "SO-2026-0001 SO-2026-0002 SO-2027-0001 SO-2026-0003"; strings.Join(got, " ") != want {
		t.Errorf("refs %v, want %s", got, want)
	}
}

func TestApplyCommitsOneDecisionWhole(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	c := newCase(t, s, procedure.StateChoosing, t0.Add(24*time.Hour))
	c.Deadlines = append(c.Deadlines, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Escalate, Due: t0.Add(48 * time.Hour)})
	id, _, err := s.StoreRaw(ctx, RawMeta{Mailbox: "INBOX", UID: 7}, strings.NewReader("Message-ID: <a@x>\r\n\r\nkies 1\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Apply(ctx, Decision{
		Case:    c,
		Audit:   []AuditEntry{{Event: "proposal", Detail: "B. Bakker; C. Jansen"}},
		Outbox:  []OutboxRow{{MessageID: "<1@so>", From: "so@x", To: []string{"jan@x.example"}, Body: []byte("hi")}},
		Alerts:  []string{"check"},
		Inbound: id,
		Now:     t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == 0 || got.Version != 1 {
		t.Fatalf("stored case id %d version %d", got.ID, got.Version)
	}
	due, _ := s.DueDeadlines(ctx, t0.Add(30*time.Hour), 10)
	if len(due) != 1 || due[0].Step != procedure.StepChoice || due[0].Kind != procedure.Remind {
		t.Errorf("due deadlines %+v", due)
	}
	items, _ := s.DueOutbox(ctx, t0, 10)
	if len(items) != 1 || items[0].MessageID != "<1@so>" {
		t.Errorf("outbox %+v", items)
	}
	in, _ := s.InboundByID(ctx, id)
	if in.Status != InboundProcessed || in.CaseID != got.ID {
		t.Errorf("inbound %+v", in)
	}

	// A decision that fails halfway (here: an inbound message that does not
	// exist) leaves nothing behind: not the case change, not the mail.
	got.State = procedure.StateAuthorising
	_, err = s.Apply(ctx, Decision{Case: got, Outbox: []OutboxRow{{MessageID: "<2@so>", From: "so@x", To: []string{"a@x"}, Body: []byte("x")}},
		Audit: []AuditEntry{{Event: "choice"}}, Inbound: 999, Now: t0})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("apply with a bad inbound id: %v", err)
	}
	back, _ := s.Case(ctx, got.ID)
	items, _ = s.DueOutbox(ctx, t0, 10)
	log, _ := s.AuditLog(ctx, got.ID)
	if back.State != procedure.StateChoosing || back.Version != 1 || len(items) != 1 || len(log) != 1 {
		t.Errorf("partial commit: state %s version %d outbox %d audit %d", back.State, back.Version, len(items), len(log))
	}
}

func TestStaleVersionIsNeverALostUpdate(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	c, err := s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateChoosing, t0), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Case(ctx, c.ID)
	b, _ := s.Case(ctx, c.ID)
	a.State = procedure.StateAuthorising
	if _, err := s.Apply(ctx, Decision{Case: a, Now: t0}); err != nil {
		t.Fatal(err)
	}
	b.State = procedure.StateWithdrawn
	if _, err := s.Apply(ctx, Decision{Case: b, Outbox: []OutboxRow{{MessageID: "<w@so>", From: "f", To: []string{"t"}}}, Now: t0}); !errors.Is(err, ErrStale) {
		t.Fatalf("second writer: %v, want ErrStale", err)
	}
	now, _ := s.Case(ctx, c.ID)
	if now.State != procedure.StateAuthorising || now.Version != 2 {
		t.Errorf("state %s version %d", now.State, now.Version)
	}
	if items, _ := s.DueOutbox(ctx, t0, 10); len(items) != 0 {
		t.Errorf("the stale decision's mail was queued")
	}
}

func TestSameMessageIDIsQueuedOnce(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	c, _ := s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateChoosing, t0), Outbox: []OutboxRow{{MessageID: "<m@so>", From: "f", To: []string{"t"}, Body: []byte("one")}}, Now: t0})
	if _, err := s.Apply(ctx, Decision{Case: c, Outbox: []OutboxRow{{MessageID: "<m@so>", From: "f", To: []string{"t"}, Body: []byte("two")}}, Now: t0}); err != nil {
		t.Fatal(err)
	}
	items, _ := s.DueOutbox(ctx, t0, 10)
	if len(items) != 1 {
		t.Fatalf("%d queued", len(items))
	}
	r, _ := items[0].Open()
	b, _ := io.ReadAll(r)
	if string(b) != "one" {
		t.Errorf("body %q", b)
	}
}

func TestOutboxLifecycle(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	rel, _, err := s.PutFile("outbox", strings.NewReader("big encrypted mail"))
	if err != nil {
		t.Fatal(err)
	}
	s.Enqueue(ctx, OutboxRow{MessageID: "<a@so>", From: "f", To: []string{"a@x", "b@x"}, Path: rel}, t0)
	s.Enqueue(ctx, OutboxRow{MessageID: "<b@so>", From: "f", To: []string{"c@x"}, Body: []byte("b")}, t0)
	items, _ := s.DueOutbox(ctx, t0, 10)
	if len(items) != 2 || len(items[0].To) != 2 {
		t.Fatalf("%+v", items)
	}
	r, err := items[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "big encrypted mail" {
		t.Errorf("file body %q", b)
	}
	s.OutboxRetry(ctx, items[0].ID, t0.Add(time.Minute), "451 try later")
	s.OutboxFailed(ctx, items[1].ID, "550 no such user")
	if due, _ := s.DueOutbox(ctx, t0, 10); len(due) != 0 {
		t.Errorf("due before the retry time: %d", len(due))
	}
	next, ok, _ := s.NextOutbox(ctx)
	if !ok || !next.Equal(t0.Add(time.Minute)) {
		t.Errorf("next %v %v", next, ok)
	}
	due, _ := s.DueOutbox(ctx, t0.Add(time.Minute), 10)
	if len(due) != 1 || due[0].Attempts != 1 {
		t.Fatalf("retry %+v", due)
	}
	if _, err := os.Stat(filepath.Join(s.dir, rel)); err != nil {
		t.Fatalf("the body went before the mail was sent: %v", err)
	}
	if err := s.OutboxSent(ctx, due[0].ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	st, _ := s.OutboxStats(ctx)
	if st.Queued != 0 || st.Sent != 1 || st.Failed != 1 {
		t.Errorf("stats %+v", st)
	}
	// Sent mail keeps no bytes; failed mail keeps them for the backoffice.
	if _, err := os.Stat(filepath.Join(s.dir, rel)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file of a sent mail is kept: %v", err)
	}
	var n int
	s.db.QueryRow(`SELECT COUNT(*) FROM outbox_body WHERE outbox_id = ?`, items[1].ID).Scan(&n)
	if n != 1 {
		t.Error("the body of a failed mail is gone")
	}
	s.Enqueue(ctx, OutboxRow{MessageID: "<c@so>", From: "f", To: []string{"d@x"}, Body: []byte("c")}, t0)
	small, _ := s.DueOutbox(ctx, t0, 10)
	if len(small) != 1 {
		t.Fatalf("%d due", len(small))
	}
	if err := s.OutboxSent(ctx, small[0].ID, t0); err != nil {
		t.Fatal(err)
	}
	s.db.QueryRow(`SELECT COUNT(*) FROM outbox_body WHERE outbox_id = ?`, small[0].ID).Scan(&n)
	if n != 0 {
		t.Error("the body of a sent mail is kept in the database")
	}
}

// The sweep removes files no row names once they are old enough, and
// whatever tmp/ holds; a named file, or a recent one, stays.
func TestSweepFiles(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	named, _, _ := s.PutFile("outbox", strings.NewReader("queued mail"))
	s.Enqueue(ctx, OutboxRow{MessageID: "<a@so>", From: "f", To: []string{"a@x"}, Path: named}, t0)
	doc, size, _ := s.PutFile("documents", strings.NewReader("sealed"))
	sha := contentHash("document")
	s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateIntake, t0),
		Documents: []DocumentRow{{SHA256: sha, Kind: "medical", Title: "Brief", Size: size, Path: doc}}, Now: t0})
	orphanOut, _, _ := s.PutFile("outbox", strings.NewReader("composed, decision never committed"))
	orphanDoc, _, _ := s.PutFile("documents", strings.NewReader("sealed, decision never committed"))
	recent, _, _ := s.PutFile("inbound", strings.NewReader("staged a moment ago"))
	tmp := filepath.Join("tmp", "put-123")
	os.WriteFile(filepath.Join(s.dir, tmp), []byte("cut off"), 0o600)
	old := time.Now().Add(-48 * time.Hour)
	for _, p := range []string{named, doc, orphanOut, orphanDoc, tmp} {
		if err := os.Chtimes(filepath.Join(s.dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.SweepFiles(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 3 {
		t.Errorf("removed %d, %v; want 3", n, err)
	}
	for p, kept := range map[string]bool{named: true, doc: true, recent: true, orphanOut: false, orphanDoc: false, tmp: false} {
		_, err := os.Stat(filepath.Join(s.dir, p))
		if kept && err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
		if !kept && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s kept: %v", p, err)
		}
	}
}

// A short stream stays in memory; a long one goes to a file, whole.
func TestPutBody(t *testing.T) {
	s := open(t)
	files := func() int {
		es, _ := os.ReadDir(filepath.Join(s.dir, "outbox"))
		return len(es)
	}
	body, rel, err := s.PutBody("outbox", strings.NewReader("0123456789"), 10)
	if err != nil || string(body) != "0123456789" || rel != "" || files() != 0 {
		t.Fatalf("at the limit: body %q, path %q, %v, %d files", body, rel, err, files())
	}
	body, rel, err = s.PutBody("outbox", strings.NewReader("0123456789a"), 10)
	if err != nil || body != nil || rel == "" || files() != 1 {
		t.Fatalf("over the limit: body %q, path %q, %v, %d files", body, rel, err, files())
	}
	f, _ := s.OpenFile(rel)
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "0123456789a" {
		t.Errorf("file holds %q", b)
	}
	// Each stream gets a file of its own, even with the same bytes: the
	// file of a mail is removed when it is sent, so two rows must never
	// share one.
	_, again, err := s.PutBody("outbox", strings.NewReader("0123456789a"), 10)
	if err != nil || again == rel || files() != 2 {
		t.Errorf("the same bytes again: path %q (first %q), %v, %d files", again, rel, err, files())
	}
	fail := io.MultiReader(strings.NewReader("0123"), iotest.ErrReader(errors.New("encryption failed")))
	if _, _, err := s.PutBody("outbox", fail, 10); err == nil || !strings.Contains(err.Error(), "encryption failed") {
		t.Errorf("failing stream: %v", err)
	}
}

// A mark a mail is not in the state for is refused and changes nothing.
func TestOutboxMarksRefused(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for _, id := range []string{"<a@so>", "<b@so>", "<c@so>"} {
		s.Enqueue(ctx, OutboxRow{MessageID: id, From: "f", To: []string{"x@x"}, Body: []byte(id)}, t0)
	}
	due, _ := s.DueOutbox(ctx, t0, 10)
	a, b, c := due[0].ID, due[1].ID, due[2].ID
	for _, id := range []int64{a, b} {
		if err := s.OutboxSending(ctx, id, t0); err != nil {
			t.Fatalf("mark %d sending: %v", id, err)
		}
	}
	if err := s.OutboxSending(ctx, a, t0.Add(time.Second)); !errors.Is(err, ErrNotFound) {
		t.Errorf("mark a sending again: %v, want ErrNotFound", err)
	}
	if err := s.OutboxSending(ctx, c, t0.Add(time.Second)); err != nil {
		t.Fatalf("mark c sending: %v", err)
	}
	if err := s.OutboxSent(ctx, b, t0.Add(time.Second)); err != nil {
		t.Fatalf("mark b sent: %v", err)
	}
	if err := s.OutboxSent(ctx, b, t0.Add(time.Second)); !errors.Is(err, ErrNotFound) {
		t.Errorf("mark b sent again: %v, want ErrNotFound", err)
	}
	if err := s.OutboxSending(ctx, b, t0.Add(time.Second)); !errors.Is(err, ErrNotFound) {
		t.Errorf("mark b (sent) sending: %v, want ErrNotFound", err)
	}
	if st, _ := s.OutboxStats(ctx); st.Queued != 0 || st.Sending != 2 || st.Sent != 1 {
		t.Errorf("after the marks: %+v, want 2 sending, 1 sent", st)
	}
	fl, _ := s.InFlightOutbox(ctx)
	if len(fl) != 2 || !fl[0].SendingSince.Equal(t0) || !fl[1].SendingSince.Equal(t0.Add(time.Second)) {
		t.Errorf("in flight %+v: a since t0 (not moved by the refused mark), c a second later", fl)
	}
}

// A mail whose attempt began is not due again and survives a reopen as
// in flight, until its outcome is recorded.
func TestOutboxSendingSurvivesACrash(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Enqueue(ctx, OutboxRow{MessageID: "<a@so>", From: "f", To: []string{"a@x"}, Body: []byte("a")}, t0)
	s.Enqueue(ctx, OutboxRow{MessageID: "<b@so>", From: "f", To: []string{"b@x"}, Body: []byte("b")}, t0)
	due, _ := s.DueOutbox(ctx, t0, 10)
	if err := s.OutboxSending(ctx, due[0].ID, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.OutboxSending(ctx, due[0].ID, t0.Add(2*time.Second)); !errors.Is(err, ErrNotFound) {
		t.Errorf("a second attempt began on a mail already sending: %v", err)
	}
	s.Close()

	s, err = Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if due, _ := s.DueOutbox(ctx, t0.Add(time.Hour), 10); len(due) != 1 || due[0].MessageID != "<b@so>" {
		t.Errorf("due after the crash: %+v, want only <b@so>", due)
	}
	fl, err := s.InFlightOutbox(ctx)
	if err != nil || len(fl) != 1 || fl[0].MessageID != "<a@so>" || !fl[0].SendingSince.Equal(t0.Add(time.Second)) {
		t.Fatalf("in flight after the crash: %+v %v", fl, err)
	}
	if st, _ := s.OutboxStats(ctx); st.Queued != 1 || st.Sending != 1 || !st.Oldest.Equal(t0) {
		t.Errorf("stats %+v", st)
	}
	// Not found among the sent copies: queued again, the attempt counted.
	if err := s.OutboxRetry(ctx, fl[0].ID, t0.Add(time.Minute), "no sent copy"); err != nil {
		t.Fatal(err)
	}
	if fl, _ := s.InFlightOutbox(ctx); len(fl) != 0 {
		t.Errorf("still in flight: %+v", fl)
	}
	due, _ = s.DueOutbox(ctx, t0.Add(time.Minute), 10)
	if len(due) != 2 || due[1].MessageID != "<a@so>" || due[1].Attempts != 1 {
		t.Errorf("due %+v", due)
	}
}

func TestStoreRawDedupesARefetch(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	raw := "Message-ID: <x@mail.example>\r\nSubject: ja\r\n\r\nakkoord\r\n"
	id1, dup, err := s.StoreRaw(ctx, RawMeta{UID: 1}, strings.NewReader(raw))
	if err != nil || dup {
		t.Fatal(err, dup)
	}
	// The same message fetched again after a crash before the IMAP mark.
	id2, dup, err := s.StoreRaw(ctx, RawMeta{UID: 1}, strings.NewReader(raw))
	if err != nil || !dup || id2 != id1 {
		t.Fatalf("refetch: id %d dup %v err %v", id2, dup, err)
	}
	// The same Message-ID with other content is another message.
	id3, dup, _ := s.StoreRaw(ctx, RawMeta{UID: 2}, strings.NewReader(raw+"more"))
	if dup || id3 == id1 {
		t.Errorf("changed content taken for a duplicate")
	}
	// Without a Message-ID the content alone dedupes.
	a, _, _ := s.StoreRaw(ctx, RawMeta{}, strings.NewReader("Subject: x\r\n\r\nbody"))
	b, dup, _ := s.StoreRaw(ctx, RawMeta{}, strings.NewReader("Subject: x\r\n\r\nbody"))
	if !dup || a != b {
		t.Errorf("no Message-ID: %d %d %v", a, b, dup)
	}
	pending, _ := s.PendingInbound(ctx, 10)
	if len(pending) != 3 || pending[0].MessageID != "<x@mail.example>" {
		t.Errorf("pending %+v", pending)
	}
	f, _ := s.OpenInbound(ctx, pending[0])
	body, _ := io.ReadAll(f)
	f.Close()
	if string(body) != raw {
		t.Errorf("raw bytes changed")
	}
	s.MarkInbound(ctx, pending[1].ID, InboundQuarantined, "no case reference", 0, t0)
	q, _ := s.Quarantined(ctx)
	if len(q) != 1 || q[0].Reason != "no case reference" {
		t.Errorf("quarantine %+v", q)
	}
}

func TestAuditChainDetectsTampering(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	c := newCase(t, s, procedure.StateIntake, t0)
	var entries []AuditEntry
	for i := range 5 {
		entries = append(entries, AuditEntry{Event: fmt.Sprintf("e%d", i), Detail: "d"})
	}
	entries[2].Disclosure = &procedure.Disclosure{To: procedure.RoleSO, Email: "so@x", Documents: []string{"ab"}, Consent: "form v1", At: t0}
	if _, err := s.Apply(ctx, Decision{Case: c, Audit: entries, Now: t0}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.VerifyAudit(ctx); err != nil || n != 5 {
		t.Fatalf("verify: %d %v", n, err)
	}
	log, _ := s.AuditLog(ctx, 0)
	if log[2].Disclosure == nil || log[2].Disclosure.Documents[0] != "ab" {
		t.Errorf("disclosure not kept: %+v", log[2])
	}
	// The log refuses changes...
	if _, err := s.db.ExecContext(ctx, `UPDATE audit SET detail = 'x' WHERE id = 3`); err == nil {
		t.Fatal("the audit log accepted an update")
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM audit WHERE id = 3`); err == nil {
		t.Fatal("the audit log accepted a delete")
	}
	// ...and a change made around the trigger is found.
	s.db.ExecContext(ctx, `DROP TRIGGER audit_no_update`)
	s.db.ExecContext(ctx, `UPDATE audit SET detail = 'forged' WHERE id = 3`)
	if _, err := s.VerifyAudit(ctx); !errors.Is(err, ErrAuditBroken) || !strings.Contains(err.Error(), "entry 3") {
		t.Errorf("tampering: %v", err)
	}
}

func TestCasesListAndOverdue(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateChoosing, t0.Add(time.Hour)), Now: t0})
	s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateIntake, t0.Add(72*time.Hour)), Now: t0})
	s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateCompleted, time.Time{}), Now: t0})
	all, _ := s.Cases(ctx, CaseFilter{})
	if len(all) != 3 || all[0].State != procedure.StateChoosing {
		t.Fatalf("%+v", all)
	}
	over, _ := s.Cases(ctx, CaseFilter{OverdueAt: t0.Add(2 * time.Hour)})
	if len(over) != 1 || over[0].WaitingOn != "employee" {
		t.Errorf("overdue %+v", over)
	}
	open, _ := s.Cases(ctx, CaseFilter{Open: true})
	if len(open) != 2 {
		t.Errorf("open %d", len(open))
	}
	// What became of them, for the intake: a request out of scope asked
	// for no second opinion and is not counted.
	s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateWithdrawn, time.Time{}), Now: t0})
	s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateOutOfScope, time.Time{}), Now: t0})
	want := procedure.Earlier{Completed: 1, Open: 2, Withdrawn: 1}
	if e, err := s.EarlierRequests(ctx, "jan@x.example"); err != nil || e != want || e.Total() != 4 {
		t.Errorf("earlier requests %+v (%v), want %+v", e, err, want)
	}
	if e, _ := s.EarlierRequests(ctx, "piet@x.example"); e.Total() != 0 {
		t.Errorf("earlier requests of someone else: %+v", e)
	}
}

func TestPurgeRemovesTheBytes(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	rel, size, _ := s.PutFile("documents", strings.NewReader("sealed document"))
	sha := contentHash("document")
	small, _, _ := s.StoreRaw(ctx, RawMeta{}, strings.NewReader("Message-ID: <p@x>\r\n\r\nmedical reply"))
	large, _, _ := s.StoreRaw(ctx, RawMeta{}, strings.NewReader("Message-ID: <q@x>\r\n\r\n"+strings.Repeat("medical file ", 30000)))
	c, err := s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateCompleted, time.Time{}), Inbound: small,
		Documents: []DocumentRow{{SHA256: sha, Kind: "medical", Title: "Brief", Size: size, Path: rel}},
		Outbox:    []OutboxRow{{MessageID: "<o@so>", From: "f", To: []string{"t"}, Body: []byte("body")}}, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = s.Apply(ctx, Decision{Case: c, Inbound: large, Now: t0}); err != nil {
		t.Fatal(err)
	}
	largeRow, _ := s.InboundByID(ctx, large)
	if largeRow.Path == "" {
		t.Fatal("a 390 KB message is not in a file")
	}
	c.State = procedure.StatePurged
	if _, err := s.Apply(ctx, Decision{Case: c, Purge: true, Audit: []AuditEntry{{Event: "purged"}}, Now: t0}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{rel, largeRow.Path} {
		if _, err := os.Stat(filepath.Join(s.Dir(), p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	for _, id := range []int64{small, large} {
		in, _ := s.InboundByID(ctx, id)
		if !in.Purged {
			t.Errorf("message %d not marked purged", id)
		}
		if _, err := s.OpenInbound(ctx, in); err == nil || !strings.Contains(err.Error(), "purged") {
			t.Errorf("message %d opens after the purge: %v", id, err)
		}
	}
	var n int
	s.db.QueryRow(`SELECT COUNT(*) FROM outbox_body`).Scan(&n)
	if n != 0 {
		t.Error("outgoing mail bodies kept")
	}
	s.db.QueryRow(`SELECT COUNT(*) FROM inbound_body`).Scan(&n)
	if n != 0 {
		t.Error("inbound mail kept in the database")
	}
	if log, _ := s.AuditLog(ctx, c.ID); len(log) != 1 || log[0].Event != "purged" {
		t.Errorf("deletion record %+v", log)
	}
}

// A reply is kept in its row, a message with a document in a file; both
// come back byte for byte and are recognised when fetched again.
func TestStoreRawKeepsSmallMailInTheRow(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	files := func() int {
		es, _ := os.ReadDir(filepath.Join(s.Dir(), "inbound"))
		return len(es)
	}
	for _, c := range []struct {
		size int
		file bool
	}{{100, false}, {inlineRaw - 40, false}, {inlineRaw + 1, true}, {3 << 20, true}} {
		raw := fmt.Sprintf("Message-ID: <%d@x>\r\n\r\n", c.size)
		raw += strings.Repeat("x", c.size-len(raw))
		before := files()
		id, _, err := s.StoreRaw(ctx, RawMeta{}, strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		in, _ := s.InboundByID(ctx, id)
		if got := files() > before; got != c.file || (in.Path != "") != c.file || in.Size != int64(c.size) || in.Purged {
			t.Errorf("%d bytes: file %v, row %+v", c.size, got, in)
		}
		f, err := s.OpenInbound(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != raw {
			t.Errorf("%d bytes: read back %d bytes, not the same", c.size, len(b))
		}
		again, dup, _ := s.StoreRaw(ctx, RawMeta{}, strings.NewReader(raw))
		if !dup || again != id {
			t.Errorf("%d bytes: fetched again: id %d dup %v", c.size, again, dup)
		}
	}
	if es, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(es) != 0 {
		t.Errorf("left in tmp: %d", len(es))
	}
}

func TestNextCaseIDIsKnownBeforeTheFirstCommit(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	id, ref, err := s.NextCase(ctx, t0)
	if err != nil || id != 2026000001 || ref != "SO-2026-0001" {
		t.Fatalf("%d %s %v", id, ref, err)
	}
	c, err := s.Apply(ctx, Decision{Case: &procedure.Case{ID: id, Ref: ref, State: procedure.StateIntake}, Now: t0})
	if err != nil || c.ID != id {
		t.Fatalf("stored as %d: %v", c.ID, err)
	}
	rel, size, _ := s.PutFile("documents", strings.NewReader("sealed"))
	sha := contentHash("document")
	c.State = procedure.StateChoosing
	s.Apply(ctx, Decision{Case: c, Documents: []DocumentRow{{SHA256: sha, Kind: "medical", Title: "Brief", Size: size, Path: rel}}, Now: t0})
	docs, _ := s.Documents(ctx, id)
	if len(docs) != 1 || docs[0].Path != rel {
		t.Errorf("documents %+v", docs)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.db.Exec(`INSERT INTO schema_migrations(version, name, applied_at) VALUES (99, '0099_future.sql', 0)`)
	s.Close()
	if _, err := Open(context.Background(), dir, nil); !errors.Is(err, ErrNewerSchema) {
		t.Errorf("opening a newer schema: %v", err)
	}
}

func TestAlertsAreResolved(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	s.AddAlert(ctx, 0, "one", t0)
	s.AddAlert(ctx, 0, "two", t0)
	open, _ := s.Alerts(ctx, false)
	if n, err := s.ResolveAlert(ctx, open[0].ID, t0); n != 1 || err != nil {
		t.Fatalf("resolve: %d %v", n, err)
	}
	if _, err := s.ResolveAlert(ctx, open[0].ID, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("resolving twice: %v", err)
	}
	if left, _ := s.Alerts(ctx, false); len(left) != 1 || left[0].Reason != "two" {
		t.Errorf("open alerts %+v", left)
	}
	if n, _ := s.ResolveAlert(ctx, 0, t0); n != 1 {
		t.Errorf("resolve all: %d", n)
	}
}

// An upgrade from schema 3, which kept small mail in the inbound and outbox
// rows: queued mail and stored messages read back byte for byte from the
// tables the bytes moved to; mail sent before loses its bytes (schema 5),
// its file at the file sweep.
func TestUpgradeMovesBodiesApart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "secondopinion.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"0001_init.sql", "0002_outbox_sending.sql", "0003_inbound_body.sql"} {
		body, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (?, ?, 0)`, v+1, name); err != nil {
			t.Fatal(err)
		}
	}
	mail := []byte("From: so@x\r\nMessage-ID: <q@so>\r\n\r\nqueued before the upgrade\r\n")
	raw := []byte("From: jan@x\r\nMessage-ID: <r@jan>\r\n\r\nstored before the upgrade\r\n")
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO outbox(message_id, sender, recipients, body, next_attempt, created_at) VALUES ('<q@so>', 'so@x', '["jan@x"]', ?, ?, ?)`, []any{mail, ms(t0), ms(t0)}},
		{`INSERT INTO inbound(id, message_id, sha256, size, path, body, received_at) VALUES (7, '<r@jan>', 'abc', ?, '', ?, ?)`, []any{len(raw), raw, ms(t0)}},
		{`INSERT INTO outbox(message_id, sender, recipients, body, status, next_attempt, created_at) VALUES ('<s@so>', 'so@x', '["jan@x"]', 'sent before', 'sent', ?, ?)`, []any{ms(t0), ms(t0)}},
		{`INSERT INTO outbox(message_id, sender, recipients, path, status, next_attempt, created_at) VALUES ('<f@so>', 'so@x', '["so2@x"]', 'outbox/big', 'sent', ?, ?)`, []any{ms(t0), ms(t0)}},
	} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	big := filepath.Join(dir, "outbox", "big")
	os.MkdirAll(filepath.Dir(big), 0o700)
	os.WriteFile(big, []byte("forwarding sent before the upgrade"), 0o600)
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(big, old, old)

	s, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != 5 {
		t.Errorf("schema version %d after the upgrade, want 5", v)
	}
	var bodies int
	s.db.QueryRow(`SELECT COUNT(*) FROM outbox_body`).Scan(&bodies)
	if bodies != 1 {
		t.Errorf("%d mail bodies after the upgrade, want only the queued one's", bodies)
	}
	if n, err := s.SweepFiles(ctx, time.Now().Add(-24*time.Hour)); n != 1 || err != nil {
		t.Errorf("file sweep after the upgrade removed %d, %v", n, err)
	}
	if _, err := os.Stat(big); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file of mail sent before the upgrade is kept: %v", err)
	}
	items, err := s.DueOutbox(ctx, t0, 10)
	if err != nil || len(items) != 1 {
		t.Fatalf("queued mail after the upgrade: %d, %v", len(items), err)
	}
	rc, err := items[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != string(mail) {
		t.Errorf("queued mail reads %q after the upgrade, want %q", got, mail)
	}
	in, err := s.InboundByID(ctx, 7)
	if err != nil || in.Purged {
		t.Fatalf("stored message after the upgrade: %+v, %v", in, err)
	}
	r, err := s.OpenInbound(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(r)
	r.Close()
	if string(got) != string(raw) {
		t.Errorf("stored message reads %q after the upgrade, want %q", got, raw)
	}
}

// contentHash is what the engine records as a document's SHA-256: the
// hash of its plain content, not of the sealed file.
func contentHash(content string) string {
	h := sha256.Sum256([]byte(content))
	return hex.EncodeToString(h[:])
}
