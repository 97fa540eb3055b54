package engine_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"secondopinion/internal/engine"
	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout"
	"secondopinion/internal/message"
	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
	"secondopinion/internal/testenv"
)

// The fault tests break one part under a running daemon and check that it
// survives with nothing lost, says so in its log, and resumes once the
// part is back. Each is bounded in time.

// runLoops runs the engine's loops until the test ends.
func (e *env) runLoops(l engine.Loops) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.eng.Run(ctx, l) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("run: %v", err)
		}
	})
}

// eventually waits up to d for cond, failing with what.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// store stores raw as the ingest does, without processing it.
func (e *env) store(raw []byte) int64 {
	e.t.Helper()
	id, _, err := e.st.StoreRaw(e.ctx, store.RawMeta{Mailbox: "INBOX", ReceivedAt: e.clock.Now()}, bytes.NewReader(raw))
	if err != nil {
		e.t.Fatalf("store raw: %v", err)
	}
	return id
}

func (e *env) status(id int64) store.Inbound {
	e.t.Helper()
	in, err := e.st.InboundByID(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return in
}

func (e *env) countCases() int {
	e.t.Helper()
	list, err := e.st.Cases(e.ctx, store.CaseFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(list)
}

// dbPath is the store's SQLite file.
func (e *env) dbPath() string { return filepath.Join(e.st.Dir(), "secondopinion.db") }

// incomplete is a request from addr that lacks every field: the daemon
// opens a case and asks the sender (only) for the missing fields.
func (e *env) incomplete(addr string) []byte {
	return e.plain("", addr, e.info.Address(), "Second opinion", "Ik wil graag een second opinion.", "")
}

// Another process holds the database with BEGIN EXCLUSIVE for longer than
// the busy timeout: the step fails cleanly, is logged, the message stays
// pending, and it is handled once — when the lock is released.
func TestFaultDatabaseLocked(t *testing.T) {
	e := newEnv(t, envOptions{BusyTimeout: 100 * time.Millisecond})
	id := e.store(e.plain("Şahin Yılmaz", "sahin.yilmaz@mail.example", e.info.Address(), "Aanvraag second opinion", requestText, ""))

	other, err := sql.Open("sqlite", "file:"+e.dbPath()+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(e.ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	defer func() {
		if locked {
			conn.ExecContext(e.ctx, "ROLLBACK")
		}
	}()

	e.runLoops(engine.Loops{InboundPoll: 50 * time.Millisecond, SweepSpec: "@every 1h"})
	eventually(t, 10*time.Second, "no log line says the step failed on the lock", func() bool {
		return strings.Count(e.log.String(), `msg="inbound processing"`) >= 2
	})
	if in := e.status(id); in.Status != store.InboundNew {
		t.Fatalf("under the lock the message became %s (%q); it must stay pending", in.Status, in.Reason)
	}
	line := lineWith(e.log.String(), `msg="inbound processing"`)
	if !strings.Contains(line, "locked") && !strings.Contains(line, "busy") {
		t.Errorf("the log line does not say the database is locked: %s", line)
	}
	t.Logf("logged: %s", line)

	if _, err := conn.ExecContext(e.ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	locked = false
	eventually(t, 10*time.Second, "the message was not handled after the lock was released", func() bool {
		return e.status(id).Status == store.InboundProcessed
	})
	if n := e.countCases(); n != 1 {
		t.Errorf("%d cases, want exactly 1", n)
	}
	if got := len(e.outbox()); got != 2 {
		t.Errorf("%d mails queued, want 2 (acknowledgement, intake)", got)
	}
	if _, err := e.st.VerifyAudit(e.ctx); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}

func lineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// The data dir's file system fills up: storing and handling fail with a
// clear error, nothing is half-written, the message stays pending, and
// handling resumes when space is freed. It needs mount (root); it skips
// where mounting a tmpfs is not permitted.
func TestFaultDiskFull(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs for the data dir (%v: %s); the disk-full test needs root and mount", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	e := newEnv(t, envOptions{DataDir: dir})
	c := e.openIntake()
	q := e.question("a.devries@arbo-noord.example", "vraagstelling")
	// The intake answer carries a document: handling it must write the
	// sealed document, the case and the outbox.
	answer := e.signed("a.devries@arbo-noord.example", "A. de Vries", "a.devries@arbo-noord.example", q.replyTo(t), "Re: "+q.Msg.Subject,
		"Akkoord met de vraagstelling.\n\nA. de Vries", q.Msg.MessageID, fileOf("Probleemanalyse.pdf", 256<<10)...)
	id := e.store(answer)
	before := e.snapshot()

	// Checkpoint the WAL so that every write needs new space, then fill
	// the file system.
	db, err := sql.Open("sqlite", "file:"+e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Leave room for the database's small writes but not for the sealed
	// document: a store failure halfway must not pass for a bad message.
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	if fi, err := os.Stat(filler); err != nil {
		t.Fatal(err)
	} else if err := os.Truncate(filler, fi.Size()-128<<10); err != nil {
		t.Fatal(err)
	}

	files := func() map[string]int {
		n := map[string]int{}
		for _, sub := range []string{"tmp", "inbound", "documents", "outbox"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			n[sub] = len(ents)
		}
		return n
	}
	filesBefore := files()
	e.runLoops(engine.Loops{InboundPoll: 50 * time.Millisecond, SweepSpec: "@every 1h"})
	eventually(t, 10*time.Second, "no log line says the step failed", func() bool {
		return strings.Count(e.log.String(), `msg="inbound processing"`) >= 2
	})
	line := lineWith(e.log.String(), `msg="inbound processing"`)
	if !strings.Contains(line, "no space") && !strings.Contains(line, "full") {
		t.Errorf("the log line does not say the disk is full: %s", line)
	}
	t.Logf("logged: %s", line)
	if in := e.status(id); in.Status != store.InboundNew {
		t.Fatalf("the message became %s (%q); it must stay pending", in.Status, in.Reason)
	}
	e.unchanged(before)
	// Storing new mail fails too, leaving no partial file behind; the
	// ingest then leaves it unmarked on the server and fetches it again.
	if _, _, err := e.st.StoreRaw(e.ctx, store.RawMeta{Mailbox: "INBOX"}, bytes.NewReader(fileOf("big.eml", 512<<10)[0].Body)); err == nil {
		t.Error("storing a message on a full disk succeeded")
	} else {
		t.Logf("storing on a full disk: %v", err)
	}
	if got := files(); fmt.Sprint(got) != fmt.Sprint(filesBefore) {
		t.Errorf("files in the data dir went from %v to %v: something was half-written", filesBefore, got)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the message was not handled after space was freed", func() bool {
		return e.status(id).Status == store.InboundProcessed
	})
	e.caseOf(c.ID, procedure.StateChoosing)
	if _, err := e.st.VerifyAudit(e.ctx); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}

// A crash leaves files no row names (a document sealed for a decision
// that never committed, a write cut off in tmp/): the daemon removes them
// when it starts, once they are a day old, and says so.
func TestFaultLeftoversSweptAtStart(t *testing.T) {
	e := newEnv(t, envOptions{})
	dir := e.st.Dir()
	orphan, _, err := e.st.PutFile("documents", bytes.NewReader(fileOf("brief.pdf", 4096)[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join("tmp", "put-1")
	if err := os.WriteFile(filepath.Join(dir, cut), []byte("cut off"), 0o600); err != nil {
		t.Fatal(err)
	}
	recent, _, _ := e.st.PutFile("outbox", strings.NewReader("composed a moment ago"))
	old := time.Now().Add(-25 * time.Hour)
	for _, p := range []string{orphan, cut} {
		if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	e.runLoops(engine.Loops{InboundPoll: time.Hour, SweepSpec: "@every 1h"})
	eventually(t, 10*time.Second, "the leftovers were not removed", func() bool {
		_, err1 := os.Stat(filepath.Join(dir, orphan))
		_, err2 := os.Stat(filepath.Join(dir, cut))
		return errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist)
	})
	if _, err := os.Stat(filepath.Join(dir, recent)); err != nil {
		t.Errorf("a file written a moment ago was removed: %v", err)
	}
	eventually(t, 5*time.Second, "no log line says what was removed", func() bool {
		return strings.Contains(lineWith(e.log.String(), `msg="file sweep"`), "removed=2")
	})
}

// fileOf is one attachment of n pseudo-random (incompressible) bytes.
func fileOf(name string, n int) []rig.File {
	b := make([]byte, n)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return []rig.File{{Name: name, Body: b}}
}

// fill writes path until the file system is full.
func fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	// Whatever is left is smaller than a chunk: fill that too.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
}

// Postfix is down, then answers 451 to every recipient, then is back: the
// queued mail is retried with a logged reason and delivered exactly once.
func TestFaultPostfixDownThenTempFailThenBack(t *testing.T) {
	users := []string{"w1", "w2", "w3"}
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Domain: "mail.example", Mailboxes: users})
	if err := pf.Stop(); err != nil {
		t.Fatal(err)
	}
	// The worker's due times and the outbox's queue times must be on one
	// clock with its real timers: the wall clock.
	e := newEnv(t, envOptions{Clock: engine.WallClock{}})
	for _, u := range users {
		if in := e.deliver(e.incomplete(u + "@mail.example")); in.Status != store.InboundProcessed {
			t.Fatalf("request from %s: %s %q", u, in.Status, in.Reason)
		}
	}
	queued := e.outbox()
	if len(queued) != len(users) {
		t.Fatalf("%d mails queued, want %d", len(queued), len(users))
	}

	worker := mailout.NewWorker(engine.Queue{Store: e.st}, &mailout.Transport{Addr: pf.Addr, Security: mailout.SecurityPlain, HelloName: "secondopinion.example"})
	worker.Clock = engine.WorkerClock{Clock: engine.WallClock{}}
	worker.Logger = slog.New(slog.NewTextHandler(e.log, nil))
	worker.FirstRetry, worker.MaxRetry = 100*time.Millisecond, 400*time.Millisecond
	var failed []string
	worker.OnPermanentFailure = func(it mailout.Item, err error) { failed = append(failed, it.MessageID+": "+err.Error()) }
	e.runLoops(engine.Loops{Worker: worker, InboundPoll: time.Hour, SweepSpec: "@every 1h"})

	retries := func() int { return strings.Count(e.log.String(), "outcome=retry") }
	eventually(t, 10*time.Second, "no retry logged while Postfix is down", func() bool { return retries() >= 2*len(users) })
	t.Logf("down: %s", lineWith(e.log.String(), "outcome=retry"))

	pf.SetTempFail(true)
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "no 4xx retry logged", func() bool { return strings.Contains(e.log.String(), "451") })
	mark := retries()
	eventually(t, 10*time.Second, "no second 4xx round", func() bool { return retries() >= mark+len(users) })
	t.Logf("4xx: %s", lineWith(e.log.String(), "451"))
	if st, _ := e.st.OutboxStats(e.ctx); st.Sent != 0 {
		t.Fatalf("%d mails reported sent while Postfix refused them", st.Sent)
	}

	pf.SetTempFail(false)
	eventually(t, 20*time.Second, "the mail was not delivered once Postfix was back", func() bool {
		st, err := e.st.OutboxStats(e.ctx)
		return err == nil && st.Sent == len(users)
	})
	if len(failed) > 0 {
		t.Errorf("mail given up: %v", failed)
	}
	// At the receiving side: each Message-ID exactly once.
	want := map[string]int{}
	for _, s := range queued {
		want[s.Msg.MessageID] = 0
	}
	eventually(t, 20*time.Second, "the mail did not reach the maildirs", func() bool {
		got := maildirIDs(t, pf.MaildirBase)
		n := 0
		for id := range want {
			n += min(got[id], 1)
		}
		return n == len(want)
	})
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive about now
	got := maildirIDs(t, pf.MaildirBase)
	for id := range want {
		if got[id] != 1 {
			t.Errorf("Message-ID %s delivered %d times", id, got[id])
		}
	}
}

// maildirIDs counts the Message-IDs in every maildir under base.
func maildirIDs(t testing.TB, base string) map[string]int {
	t.Helper()
	out := map[string]int{}
	filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if dir := filepath.Base(filepath.Dir(path)); dir != "new" && dir != "cur" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		if m, err := message.Parse(f, message.Options{}); err == nil {
			out[m.MessageID]++
		}
		return nil
	})
	return out
}

// Dovecot restarts while the daemon is in IDLE: the daemon reconnects,
// logs it, and handles what arrived meanwhile exactly once.
func TestFaultDovecotRestartDuringIdle(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{"so": "secret"}})
	e := newEnv(t, envOptions{})
	ing, err := mailin.New(engine.Spool{DB: e.st}, &mailin.Options{
		Addr: d.Addr, Security: mailin.SecurityPlain, Username: "so", Password: "secret",
		Notify: e.eng.KickInbound, Logger: slog.New(slog.NewTextHandler(e.log, nil)),
		Backoff: mailin.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.runLoops(engine.Loops{Ingester: ing, InboundPoll: time.Hour, SweepSpec: "@every 1h"})

	processed := func() int {
		n := 0
		for id := int64(1); id <= 10; id++ {
			if in, err := e.st.InboundByID(e.ctx, id); err == nil && in.Status == store.InboundProcessed {
				n++
			}
		}
		return n
	}
	d.Deliver("so", e.incomplete("w1@mail.example"))
	eventually(t, 10*time.Second, "the first request was not handled", func() bool { return processed() == 1 })
	// The daemon is back in IDLE now; give it the moment to send it.
	time.Sleep(200 * time.Millisecond)

	d.Stop()
	d.Deliver("so", e.incomplete("w2@mail.example"))
	d.Deliver("so", e.incomplete("w3@mail.example"))
	time.Sleep(300 * time.Millisecond) // reconnect attempts meet a closed port
	d.Start()
	eventually(t, 15*time.Second, "what arrived during the restart was not handled", func() bool { return processed() == 3 })
	time.Sleep(300 * time.Millisecond) // a second fetch would be stored about now

	if _, err := e.st.InboundByID(e.ctx, 4); err == nil {
		t.Error("a fourth message was stored: something was fetched twice")
	}
	if n := e.countCases(); n != 3 {
		t.Errorf("%d cases, want 3", n)
	}
	if got := len(e.outbox()); got != 3 {
		t.Errorf("%d mails queued, want 3 (one per request)", got)
	}
	line := lineWith(e.log.String(), "reconnecting")
	if line == "" {
		t.Errorf("no log line says the session ended:\n%s", e.log.String())
	}
	t.Logf("logged: %s", line)
}
