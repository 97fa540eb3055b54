package mailout

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"secondopinion/internal/mailout/smtptest"
	"secondopinion/internal/testenv"
)

// memQueue is an in-memory outbox with the store's semantics; it survives
// a Worker, as the database survives a crash.
type memQueue struct {
	mu      sync.Mutex
	items   []*memItem
	changed chan struct{} // receives after every Sent, Retry, Failed
}

type memItem struct {
	Item
	data   []byte
	open   func() (io.ReadCloser, error) // overrides data
	next   time.Time
	state  string // pending, sending, sent, failed
	reason string
}

func newMemQueue() *memQueue { return &memQueue{changed: make(chan struct{}, 100)} }

func (q *memQueue) add(it Item, data []byte, due time.Time) *memItem {
	return q.addOpen(it, data, due, nil)
}

// addOpen is add with the body read through open (nil: data), set with
// the item, before a running worker can see it.
func (q *memQueue) addOpen(it Item, data []byte, due time.Time, open func() (io.ReadCloser, error)) *memItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	it.ID = int64(len(q.items) + 1)
	m := &memItem{Item: it, data: data, open: open, next: due, state: "pending"}
	q.items = append(q.items, m)
	return m
}

func (q *memQueue) get(id int64) memItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	return *q.items[id-1]
}

func (q *memQueue) Due(_ context.Context, now time.Time, limit int) ([]Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var due []*memItem
	for _, m := range q.items {
		if m.state == "pending" && !m.next.After(now) {
			due = append(due, m)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].next.Before(due[j].next) })
	var out []Item
	for _, m := range due[:min(limit, len(due))] {
		it := m.Item
		if m.open != nil {
			it.Open = m.open
		} else {
			it.Open = openBytes(m.data)
		}
		out = append(out, it)
	}
	return out, nil
}

func (q *memQueue) update(id int64, f func(m *memItem)) error {
	q.mu.Lock()
	f(q.items[id-1])
	q.mu.Unlock()
	q.changed <- struct{}{}
	return nil
}

// Sending does not signal changed: tests wait for outcomes, not for
// attempts to begin.
func (q *memQueue) Sending(_ context.Context, id int64, now time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.items[id-1]
	if m.state != "pending" {
		return fmt.Errorf("item %d is %s, not queued", id, m.state)
	}
	m.state, m.SendingSince = "sending", now
	return nil
}

func (q *memQueue) Sent(_ context.Context, id int64, _ time.Time) (err error) {
	q.update(id, func(m *memItem) {
		if m.state == "pending" || m.state == "sending" {
			m.state = "sent"
		} else {
			err = fmt.Errorf("item %d is %s, neither queued nor in flight", id, m.state)
		}
	})
	return err
}

func (q *memQueue) InFlight(context.Context) ([]Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Item
	for _, m := range q.items {
		if m.state == "sending" {
			out = append(out, m.Item)
		}
	}
	return out, nil
}

func (q *memQueue) Retry(_ context.Context, id int64, attempt int, next time.Time, reason string) error {
	return q.update(id, func(m *memItem) { m.state, m.Attempt, m.next, m.reason = "pending", attempt, next, reason })
}

func (q *memQueue) Failed(_ context.Context, id int64, reason string) error {
	return q.update(id, func(m *memItem) { m.state, m.reason = "failed", reason })
}

func (q *memQueue) NextDue(context.Context) (time.Time, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var next time.Time
	ok := false
	for _, m := range q.items {
		if m.state == "pending" && (!ok || m.next.Before(next)) {
			next, ok = m.next, true
		}
	}
	return next, ok, nil
}

// fakeClock is a manual clock; Advance fires the timers that are due.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	c       chan time.Time
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		t.stopped = true
	} else {
		c.timers = append(c.timers, t)
	}
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			t.c <- c.now
		}
	}
}

type workerEnv struct {
	q     *memQueue
	clock *fakeClock
	srv   *smtptest.Server
	w     *Worker
	log   *testenv.LogBuffer
	fails []Item
}

func newWorkerEnv(t *testing.T) *workerEnv {
	t.Helper()
	e := &workerEnv{q: newMemQueue(), clock: &fakeClock{now: testDate}, log: &testenv.LogBuffer{}}
	e.srv = smtptest.NewServer(t, smtptest.Options{})
	e.w = NewWorker(e.q, &Transport{Addr: e.srv.Addr, Timeout: 10 * time.Second})
	e.w.Clock = e.clock
	e.w.Logger = slog.New(slog.NewTextHandler(e.log, nil))
	e.w.OnPermanentFailure = func(it Item, err error) { e.fails = append(e.fails, it) }
	return e
}

func (e *workerEnv) enqueue(t *testing.T, msgID, to string) *memItem {
	t.Helper()
	return e.enqueueOpen(t, msgID, to, nil)
}

// enqueueOpen is enqueue with the body read through open(data).
func (e *workerEnv) enqueueOpen(t *testing.T, msgID, to string, open func(data []byte) (io.ReadCloser, error)) *memItem {
	t.Helper()
	return e.enqueueCase(t, msgID, to, 0, open)
}

// enqueueCase is enqueueOpen for a mail about case c.
func (e *workerEnv) enqueueCase(t *testing.T, msgID, to string, c int64, open func(data []byte) (io.ReadCloser, error)) *memItem {
	t.Helper()
	data := []byte(strings.ReplaceAll(testMsg, "<t1@example.test>", "<"+msgID+">"))
	var o func() (io.ReadCloser, error)
	if open != nil {
		o = func() (io.ReadCloser, error) { return open(data) }
	}
	return e.q.addOpen(Item{MessageID: msgID, From: "so@example.test", To: []string{to}, Case: c, Queued: e.clock.Now()}, data, e.clock.Now(), o)
}

func TestWorkerOutcomes(t *testing.T) {
	ctx := context.Background()
	e := newWorkerEnv(t)
	ok := e.enqueue(t, "ok@example.test", "a@example.net")
	perm := e.enqueue(t, "perm@example.test", "gone@example.net")
	temp := e.enqueue(t, "temp@example.test", "busy@example.net")
	e.srv.SetRcptReply("gone@example.net", smtptest.Reply{Code: 550, Enhanced: [3]int{5, 1, 1}})
	e.srv.SetRcptReply("busy@example.net", smtptest.Reply{Code: 451, Enhanced: [3]int{4, 3, 0}})

	wait, err := e.w.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.q.get(ok.ID).state; got != "sent" {
		t.Errorf("accepted message: state %s", got)
	}
	if got := e.q.get(perm.ID); got.state != "failed" || !strings.Contains(got.reason, "550") {
		t.Errorf("refused message: %s %q", got.state, got.reason)
	}
	if len(e.fails) != 1 || e.fails[0].MessageID != "perm@example.test" {
		t.Errorf("backoffice alerted for %v, want perm@ only", e.fails)
	}
	tm := e.q.get(temp.ID)
	if tm.state != "pending" || tm.Attempt != 1 || !tm.next.Equal(testDate.Add(time.Minute)) {
		t.Errorf("temporary failure: %s attempt %d next %v", tm.state, tm.Attempt, tm.next)
	}
	if wait != time.Minute {
		t.Errorf("wait = %v, want 1m", wait)
	}

	// Not yet due: nothing happens.
	e.clock.Advance(30 * time.Second)
	e.w.RunOnce(ctx)
	if len(e.srv.Messages()) != 1 {
		t.Fatalf("%d messages, want 1", len(e.srv.Messages()))
	}
	// Still busy: the wait doubles.
	e.clock.Advance(30 * time.Second)
	e.w.RunOnce(ctx)
	if tm := e.q.get(temp.ID); tm.Attempt != 2 || !tm.next.Equal(e.clock.Now().Add(2*time.Minute)) {
		t.Errorf("second failure: attempt %d next %v", tm.Attempt, tm.next)
	}
	e.srv.SetRcptReply("busy@example.net", smtptest.Reply{})
	e.clock.Advance(2 * time.Minute)
	if wait, _ := e.w.RunOnce(ctx); wait != -1 {
		t.Errorf("wait = %v with nothing pending, want -1", wait)
	}
	if got := e.q.get(temp.ID).state; got != "sent" {
		t.Errorf("after recovery: %s", got)
	}
	if n := len(e.srv.Messages()); n != 2 {
		t.Errorf("server holds %d messages, want 2 (each once)", n)
	}

	log := e.log.String()
	for _, want := range []string{"message_id=ok@example.test", "outcome=sent", "outcome=failed", "outcome=retry", "attempt=2", "duration="} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "Hallo.") {
		t.Error("message body in the log")
	}
}

func TestWorkerGivesUp(t *testing.T) {
	e := newWorkerEnv(t)
	it := e.enqueue(t, "old@example.test", "busy@example.net")
	e.q.mu.Lock()
	it.Queued = testDate.Add(-73 * time.Hour)
	e.q.mu.Unlock()
	e.srv.SetRcptReply("busy@example.net", smtptest.Reply{Code: 451})
	e.w.RunOnce(context.Background())
	if got := e.q.get(it.ID); got.state != "failed" || !strings.Contains(got.reason, "undelivered after") {
		t.Errorf("state %s reason %q", got.state, got.reason)
	}
	if len(e.fails) != 1 {
		t.Errorf("backoffice alerted %d times", len(e.fails))
	}
}

func TestBackoff(t *testing.T) {
	w := &Worker{}
	for _, tt := range []struct {
		attempts int
		want     time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {6, 32 * time.Minute}, {7, time.Hour}, {50, time.Hour}} {
		if got := w.Backoff(tt.attempts); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.attempts, got, tt.want)
		}
	}
}

func waitChanged(t *testing.T, q *memQueue) {
	t.Helper()
	select {
	case <-q.changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not act")
	}
}

// waitState waits until item id is in state want.
func waitState(t *testing.T, q *memQueue, id int64, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for q.get(id).state != want {
		if time.Now().After(deadline) {
			t.Fatalf("item %d is %s, want %s", id, q.get(id).state, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Run wakes on Kick and on its timer, and stops with the context.
func TestWorkerRunLoop(t *testing.T) {
	e := newWorkerEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.w.Run(ctx) }()

	e.srv.SetRcptReply("busy@example.net", smtptest.Reply{Code: 451})
	it := e.enqueue(t, "loop@example.test", "busy@example.net")
	e.w.Kick()
	waitChanged(t, e.q) // retry in 1 minute
	e.srv.SetRcptReply("busy@example.net", smtptest.Reply{})
	// The loop sets its timer after recording the retry; advance until
	// the timer fires and the item is sent.
	deadline := time.Now().Add(10 * time.Second)
	for e.q.get(it.ID).state != "sent" {
		if time.Now().After(deadline) {
			t.Fatal("timer never delivered the retry")
		}
		e.clock.Advance(time.Minute)
		select {
		case <-e.q.changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
	if n := len(e.srv.Messages()); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
}

// A mail queued while a slow delivery is under way goes out at once over
// another connection, not after the slow one: to another recipient, and
// to the slow one about another case. A second mail to the slow recipient
// about the same case waits for the first, so that it arrives after it.
func TestWorkerDoesNotWaitForSlowMail(t *testing.T) {
	e := newWorkerEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.w.Run(ctx) }()

	started, release := make(chan struct{}), make(chan struct{})
	// The slow body is set with the item: the worker already runs.
	e.enqueueCase(t, "slow1@example.test", "slow@example.net", 1, func(data []byte) (io.ReadCloser, error) {
		close(started)
		<-release
		return openBytes(data)()
	})
	e.w.Kick()
	<-started
	quick := e.enqueue(t, "quick@example.test", "quick@example.net")
	slow2 := e.enqueueCase(t, "slow2@example.test", "slow@example.net", 1, nil)
	other := e.enqueueCase(t, "other@example.test", "slow@example.net", 2, nil)
	e.w.Kick()
	for _, it := range []*memItem{quick, other} {
		waitState(t, e.q, it.ID, "sent")
	}
	if st := e.q.get(slow2.ID).state; st != "pending" {
		t.Errorf("the second mail about the case to the slow recipient is %s before the first went out, want pending", st)
	}
	close(release)
	waitState(t, e.q, slow2.ID, "sent")
	var order []string
	for _, m := range e.srv.Messages() {
		if m.To[0] == "slow@example.net" {
			i := bytes.Index(m.Data, []byte("Message-ID: <"))
			order = append(order, string(m.Data[i+13:][:bytes.IndexByte(m.Data[i+13:], '@')]))
		}
	}
	if strings.Join(order, ",") != "other,slow1,slow2" {
		t.Errorf("the slow recipient got %q, want other (another case, while slow1 was under way), slow1, slow2", order)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Canary: a notice is composed from a template and delivered; the
// procedure's medical data (never given to the template) appears neither
// on the wire nor in the log, and neither does the SMTP password.
func TestCanaryNotice(t *testing.T) {
	const canary = "CANARY-7f3a9c-hernia-L4L5"
	const password = "pw-CANARY-91b2"
	caseData := struct {
		Ref, Name string
		Medical   string // what the engine holds; the notice template never reads it
	}{"SO-2026-0042", "Jeroen", canary}
	subject, body, err := Render(testTemplates(), "nl", "notice", caseData)
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	err = Compose(&msg, Mail{
		From: Address{Name: "Secretariaat", Email: "so@example.test"}, To: []Address{{Name: caseData.Name, Email: "jeroen@example.net"}},
		Subject: subject, Text: body, MessageID: NewMessageID("example.test", []byte("SO-2026-0042/1")), Date: testDate, AutoSubmitted: true, Lang: "nl",
	})
	if err != nil {
		t.Fatal(err)
	}

	e := newWorkerEnv(t)
	e.srv = smtptest.NewServer(t, smtptest.Options{Users: map[string]string{"svc": password}, AllowInsecureAuth: true})
	e.w.Transport = &Transport{Addr: e.srv.Addr, Username: "svc", Password: password, Timeout: 10 * time.Second}
	e.q.add(Item{MessageID: "notice@example.test", From: "so@example.test", To: []string{"jeroen@example.net"}, Queued: testDate}, msg.Bytes(), testDate)
	if _, err := e.w.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	transcript := e.srv.Transcript()
	if !strings.Contains(transcript, "Wij hebben uw aanvraag voor een second opinion ontvangen") {
		t.Fatalf("the notice did not cross the wire:\n%s", transcript)
	}
	for name, text := range map[string]string{"transcript": transcript, "log": e.log.String()} {
		if strings.Contains(text, canary) {
			t.Errorf("medical canary in the %s", name)
		}
	}
	if strings.Contains(e.log.String(), password) || strings.Contains(e.log.String(), "second opinion ontvangen") {
		t.Errorf("password or body in the log:\n%s", e.log.String())
	}
}

func testTemplates() fs.FS { return os.DirFS("testdata") }

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// serverCopies files, as a mail server would into a folder, a copy of
// every message the test server accepted with the copy address among its
// recipients.
type serverCopies struct {
	srv  *smtptest.Server
	addr string
}

func (c serverCopies) Address() string { return c.addr }

func (c serverCopies) Find(_ context.Context, ids []string) (map[string]bool, error) {
	found := map[string]bool{}
	for _, m := range c.srv.Messages() {
		if !slices.Contains(m.To, c.addr) {
			continue
		}
		for _, id := range ids {
			if bytes.Contains(m.Data, []byte("Message-ID: <"+strings.Trim(id, "<>")+">\r\n")) {
				found[id] = true
			}
		}
	}
	return found, nil
}

func (e *workerEnv) countAt(msgID string) int {
	n := 0
	for _, m := range e.srv.Messages() {
		if bytes.Contains(m.Data, []byte("Message-ID: <"+msgID+">\r\n")) {
			n++
		}
	}
	return n
}

// TestWorkerSettlesInFlightBySentCopy: after a crash, a mail the server
// had taken (its copy is filed) is recorded sent and not sent again; one
// the server never got is sent again once its copy could have arrived, and
// not before.
func TestWorkerSettlesInFlightBySentCopy(t *testing.T) {
	ctx := context.Background()
	e := newWorkerEnv(t)
	copies := serverCopies{srv: e.srv, addr: "so+sent@example.test"}
	e.w.Copies, e.w.CopyWait = copies, 2*time.Minute

	taken := e.enqueue(t, "taken@example.test", "a@example.net")
	lost := e.enqueue(t, "lost@example.test", "b@example.net")
	// The crashed process had begun both; the server took the first (with
	// its copy) and the crash came before that was recorded.
	for _, it := range []*memItem{taken, lost} {
		if err := e.q.Sending(ctx, it.ID, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	tr := &Transport{Addr: e.srv.Addr, Timeout: 10 * time.Second}
	if err := tr.Deliver(ctx, "so@example.test", []string{"a@example.net", copies.addr}, bytes.NewReader(taken.data)); err != nil {
		t.Fatal(err)
	}

	wait, err := e.w.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.q.get(taken.ID).state; got != "sent" {
		t.Errorf("mail with a sent copy: %s, want sent", got)
	}
	if got := e.q.get(lost.ID).state; got != "sending" {
		t.Errorf("mail without a copy, right after the crash: %s, want still in flight", got)
	}
	if wait <= 0 || wait > time.Minute {
		t.Errorf("wait %v: the worker must look again for the copy soon", wait)
	}
	e.clock.Advance(time.Minute)
	e.w.RunOnce(ctx)
	if got := e.q.get(lost.ID).state; got != "sending" {
		t.Errorf("a minute later: %s, want still in flight", got)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.q.get(lost.ID); got.state != "sent" || got.Attempt != 1 {
		t.Errorf("after the copy wait: %s attempt %d, want sent at the second attempt", got.state, got.Attempt)
	}
	if a, b := e.countAt("taken@example.test"), e.countAt("lost@example.test"); a != 1 || b != 1 {
		t.Errorf("server got taken %d×, lost %d×; want each once", a, b)
	}
	for _, m := range e.srv.Messages() {
		if !slices.Contains(m.To, copies.addr) {
			t.Errorf("mail to %v went without its copy", m.To)
		}
	}
	if log := e.log.String(); !strings.Contains(log, "by=\"sent copy\"") || !strings.Contains(log, "no sent copy 2m0s after") {
		t.Errorf("log does not say how the mails were settled:\n%s", log)
	}
}

// Without a sent-copy folder a mail left in flight is sent again at once,
// and the log says its outcome was unknown.
func TestWorkerWithoutCopiesSendsInFlightAgain(t *testing.T) {
	ctx := context.Background()
	e := newWorkerEnv(t)
	it := e.enqueue(t, "again@example.test", "a@example.net")
	if err := e.q.Sending(ctx, it.ID, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.q.get(it.ID).state; got != "sent" || e.countAt("again@example.test") != 1 {
		t.Errorf("state %s, %d at the server", got, e.countAt("again@example.test"))
	}
	if !strings.Contains(e.log.String(), "outcome=unknown") {
		t.Errorf("log:\n%s", e.log.String())
	}
}
