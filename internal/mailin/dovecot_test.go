package mailin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/mailin"
	"secondopinion/internal/testenv"
)

// eachMarking runs test in parallel for both ways of marking handled mail:
// flagging it \Seen in the inbox, and moving it to a processed mailbox.
func eachMarking(t *testing.T, test func(t *testing.T, processed string)) {
	for _, processed := range []string{"", "Verwerkt"} {
		name := "flag seen"
		if processed != "" {
			name = "move"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, processed)
		})
	}
}

func startDovecot(t testing.TB, capability string) *testenv.Dovecot {
	t.Helper()
	return testenv.StartDovecot(t, testenv.DovecotOptions{
		Users:      map[string]string{testUser: testPass},
		Capability: capability,
	})
}

// TestDovecotExactlyOnce: against a real Dovecot, mail delivered before the
// ingester starts, while it runs, while Dovecot is down, and around a
// Dovecot restart is each stored once as new and ends up marked.
func TestDovecotExactlyOnce(t *testing.T) {
	t.Parallel()
	eachMarking(t, func(t *testing.T, processed string) {
		d := startDovecot(t, "")
		spool := newFileSpool(t)
		notified := newCounter()
		var logs testenv.LogBuffer
		in := newIngester(t, spool, mailin.Options{Addr: d.Addr, ProcessedMailbox: processed, Notify: notified.inc, Logger: debugLogger(&logs)})
		defer func() {
			if t.Failed() {
				t.Log(logs.String())
			}
		}()
		ctx := waitCtx(t)
		msgIDs := ids(5, "dovecot")

		d.Deliver(testUser, testMessage(msgIDs[0])) // before the ingester runs
		r := start(t, in)
		notified.waitFor(t, ctx, 1)

		d.Deliver(testUser, testMessage(msgIDs[1])) // while it runs (IDLE)
		notified.waitFor(t, ctx, 2)

		d.Stop()
		d.Deliver(testUser, testMessage(msgIDs[2])) // while it is disconnected
		d.Start()
		notified.waitFor(t, ctx, 3)

		d.Deliver(testUser, testMessage(msgIDs[3])) // just before a restart
		d.Stop()
		d.Start()
		d.Deliver(testUser, testMessage(msgIDs[4])) // just after it
		notified.waitFor(t, ctx, 5)
		waitMarked(t, d.Addr, processed, 5)
		r.stop(t)

		for _, id := range msgIDs {
			if n := uniqueIDs(spool.snapshot())[id]; n != 1 {
				t.Errorf("%s stored as new %d times, want 1", id, n)
			}
		}
		checkMarked(t, d.Addr, processed, 5)
	})
}

// TestDovecotHungServer: the mail process serving the ingester hangs
// (stopped: the connection stays open, nothing comes back). The ingester
// drops it once the server has owed an answer for AnswerTimeout, says so
// in the log, reconnects to a fresh process, stores the mail that arrived
// meanwhile, and reports its passes over the mailbox again.
func TestDovecotHungServer(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, "")
	spool := newFileSpool(t)
	notified, passes := newCounter(), newCounter()
	var logs testenv.LogBuffer
	const limit = 300 * time.Millisecond
	in := newIngester(t, spool, mailin.Options{
		Addr: d.Addr, ProcessedMailbox: "Verwerkt", PollInterval: 200 * time.Millisecond, AnswerTimeout: limit,
		Notify: notified.inc, ObservePass: func(time.Time) { passes.inc() }, Logger: debugLogger(&logs),
	})
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	ctx := waitCtx(t)
	msgIDs := ids(2, "hung")
	d.Deliver(testUser, testMessage(msgIDs[0]))
	r := start(t, in)
	notified.waitFor(t, ctx, 1)
	waitMarked(t, d.Addr, "Verwerkt", 1)

	n, resume := d.Hang()
	defer resume()
	if n == 0 {
		t.Fatal("no mail process to hang")
	}
	begin := time.Now()
	d.Deliver(testUser, testMessage(msgIDs[1]))
	notified.waitFor(t, ctx, 2)
	t.Logf("stored %v after the server hung (answer limit %v, IDLE renewed every 200ms)", time.Since(begin).Round(time.Millisecond), limit)
	waitMarked(t, d.Addr, "Verwerkt", 2)
	// The health check sees the ingester pass over the mailbox again.
	passes.waitFor(t, ctx, passes.get()+1)
	r.stop(t)

	for _, id := range msgIDs {
		if n := uniqueIDs(spool.snapshot())[id]; n != 1 {
			t.Errorf("%s stored as new %d times, want 1", id, n)
		}
	}
	if want := "no answer from the IMAP server for 300ms"; !strings.Contains(logs.String(), want) {
		t.Errorf("the log does not say %q", want)
	}
}

// TestDovecotBacklog: a mailbox that filled while the daemon was away (more
// messages than one batch, medical files among the replies) is ingested in
// one pass of several batches. Dovecot runs a UID FETCH while the MOVE or
// STORE that marks the batch before is still going, so its bodies can come
// before that command's answer; every message is stored once and marked.
func TestDovecotBacklog(t *testing.T) {
	t.Parallel()
	eachMarking(t, func(t *testing.T, processed string) { ingestBacklog(t, "", processed) })
	t.Run("copy and expunge without MOVE", func(t *testing.T) {
		t.Parallel()
		ingestBacklog(t, "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE UIDPLUS IDLE", "Verwerkt")
	})
}

// ingestBacklog delivers 80 messages, one in ten a large one, to a Dovecot
// offering capability (its own if ""), then has an ingester take them all.
func ingestBacklog(t *testing.T, capability, processed string) {
	d := startDovecot(t, capability)
	spool := newFileSpool(t)
	var logs testenv.LogBuffer
	in := newIngester(t, spool, mailin.Options{Addr: d.Addr, ProcessedMailbox: processed, Logger: debugLogger(&logs)})
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	const n = 80
	msgIDs := ids(n, "backlog")
	for i, id := range msgIDs {
		msg := testMessage(id)
		if i%10 == 3 {
			msg = append(msg, []byte(strings.Repeat("JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0\r\n", 5000))...)
		}
		d.Deliver(testUser, msg)
	}
	start(t, in)
	if _, err := spool.waitFor(waitCtx(t), hasNew(msgIDs...)); err != nil {
		t.Fatal(err)
	}
	waitMarked(t, d.Addr, processed, n)
	for _, id := range msgIDs {
		if c := uniqueIDs(spool.snapshot())[id]; c != 1 {
			t.Errorf("%s stored as new %d times, want 1", id, c)
		}
	}
}

// TestDovecotCrashBetweenStoreAndMark: a crash after the spool has the
// message and before Dovecot has it marked; after the restart it is seen as
// a duplicate, marked, and processed once.
func TestDovecotCrashBetweenStoreAndMark(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, "")
	spool := newFileSpool(t)
	id := "crash-dovecot@example.test"
	d.Deliver(testUser, testMessage(id))
	crashBetweenStoreAndMark(t, d.Addr, spool)
}

// TestDovecotWithoutIdle: a server that does not offer IDLE is polled.
func TestDovecotWithoutIdle(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE UIDPLUS MOVE")
	spool := newFileSpool(t)
	notified := newCounter()
	var logs testenv.LogBuffer
	start(t, newIngester(t, spool, mailin.Options{
		Addr: d.Addr, PollInterval: 100 * time.Millisecond, Notify: notified.inc, Logger: debugLogger(&logs),
	}))
	ctx := waitCtx(t)
	for i, id := range ids(2, "poll") {
		d.Deliver(testUser, testMessage(id))
		notified.waitFor(t, ctx, i+1)
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}

// largeMessage is a generated message of about size bytes, produced as a
// stream so the test itself does not hold it in memory.
func largeMessage(size int64) io.Reader {
	head := "From: Bedrijfsarts <arts@example.test>\r\nTo: svc@example.test\r\n" +
		"Subject: dossier\r\nMessage-ID: <large@example.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	line := "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
	n := (size - int64(len(head))) / int64(len(line))
	return io.MultiReader(strings.NewReader(head), testenv.RepeatReader(line, n))
}

// ingestLarge delivers a message of size bytes to Dovecot, ingests it, and
// returns the peak heap while doing so and how long the ingest took.
func ingestLarge(t testing.TB, d *testenv.Dovecot, size int64) (peak uint64, took time.Duration, rec record) {
	t.Helper()
	h := sha256.New()
	d.DeliverFrom(testUser, io.TeeReader(largeMessage(size), h))
	want := hex.EncodeToString(h.Sum(nil))

	spool := newFileSpool(t)
	notified := newCounter()
	in := newIngester(t, spool, mailin.Options{Addr: d.Addr, ProcessedMailbox: "Verwerkt", Notify: notified.inc})
	var r *running
	peak = testenv.HeapRise(func() {
		begin := time.Now()
		r = start(t, in)
		notified.waitFor(t, waitCtx(t), 1)
		took = time.Since(begin)
	})
	r.stop(t)

	recs := spool.snapshot()
	if len(recs) != 1 {
		t.Fatalf("%d stores, want 1", len(recs))
	}
	rec = recs[0]
	if rec.SHA256 != want {
		t.Fatalf("stored message differs from the delivered one (sha256 %s, want %s)", rec.SHA256, want)
	}
	for _, r := range recs {
		os.Remove(r.Path)
	}
	return peak, took, rec
}

// TestDovecotLargeMessage: a 50 MB message is streamed through with a
// bounded heap, stored whole and flagged Oversize (default limit 25 MiB).
// Not parallel, so that the heap figure is this test's alone.
func TestDovecotLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB through Dovecot")
	}
	d := startDovecot(t, "")
	const size = 50 << 20
	peak, took, rec := ingestLarge(t, d, size)
	t.Logf("ingested %d MB in %v, peak heap %.1f MB", rec.Raw.Size>>20, took.Round(time.Millisecond), float64(peak)/(1<<20))
	if !rec.Raw.Oversize {
		t.Errorf("a %d byte message is not flagged Oversize", rec.Raw.Size)
	}
	if rec.Raw.Size < size-100 {
		t.Errorf("Size = %d, want about %d", rec.Raw.Size, size)
	}
	if peak > 32<<20 {
		t.Errorf("peak heap %.1f MB while ingesting 50 MB, want < 32 MB", float64(peak)/(1<<20))
	}
}

// BenchmarkIngest50MB reports throughput and peak heap for one 50 MB message
// through a real Dovecot.
func BenchmarkIngest50MB(b *testing.B) {
	d := startDovecot(b, "")
	const size = 50 << 20
	var (
		worst uint64
		total time.Duration
		n     int
	)
	// Each round includes writing the message into the maildir; the
	// ingest alone is reported as ingest-MB/s.
	for b.Loop() {
		peak, took, _ := ingestLarge(b, d, size)
		worst, total, n = max(worst, peak), total+took, n+1
	}
	b.ReportMetric(float64(size)/(1<<20)/(total/time.Duration(n)).Seconds(), "ingest-MB/s")
	b.ReportMetric(float64(worst)/(1<<20), "peak-heap-MB")
}
