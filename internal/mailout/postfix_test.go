package mailout

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"secondopinion/internal/mailout/smtptest"
	"secondopinion/internal/testenv"
)

// countMessageID counts the delivered messages carrying id.
func countMessageID(msgs [][]byte, id string) int {
	n := 0
	for _, m := range msgs {
		if bytes.Contains(m, []byte("Message-ID: <"+id+">")) {
			n++
		}
	}
	return n
}

func composeNotice(t *testing.T, seed, to string) ([]byte, string) {
	t.Helper()
	id := NewMessageID("example.test", []byte(seed))
	var b bytes.Buffer
	err := Compose(&b, Mail{
		From: Address{Name: "Secretariaat", Email: "so@example.test"}, To: []Address{{Name: "Ana", Email: to}},
		ReplyTo: "svc+tok1@example.test", Subject: "[SO-2026-0042] Bericht " + seed, MessageID: id, Date: testDate,
		AutoSubmitted: true, Text: "Beste Ana,\n\nDit is bericht " + seed + ".\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), id
}

// pausingBody hands out the first half of a message, then waits until
// resume is closed before it hands out the rest.
type pausingBody struct {
	data   []byte
	off    int
	paused chan struct{}
	resume chan struct{}
	once   sync.Once
}

func (p *pausingBody) Read(b []byte) (int, error) {
	if p.off >= len(p.data) {
		return 0, io.EOF
	}
	if p.off >= len(p.data)/2 {
		p.once.Do(func() { close(p.paused) })
		<-p.resume
	}
	end := len(p.data)
	if p.off < len(p.data)/2 {
		end = len(p.data) / 2
	}
	n := copy(b, p.data[p.off:end])
	p.off += n
	return n, nil
}

// Delivery through a real Postfix into maildirs: normal, temporary failure
// then success, permanent failure, and Postfix stopped in the middle of a
// transaction then started again.
func TestPostfixDelivery(t *testing.T) {
	testenv.Require(t, "postfix")
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Domain: "example.test", Mailboxes: []string{"ana", "bob", "cas", "dirk"}})
	rec := &smtptest.Recorder{}
	newEnv := func(t *testing.T) *workerEnv {
		e := &workerEnv{q: newMemQueue(), clock: &fakeClock{now: testDate}, log: &testenv.LogBuffer{}}
		e.w = NewWorker(e.q, &Transport{Addr: pf.Addr, Timeout: 20 * time.Second, HelloName: "so.example.test", Dial: rec.Dial})
		e.w.Clock = e.clock
		e.w.Logger = slogTo(e.log)
		e.w.OnPermanentFailure = func(it Item, err error) { e.fails = append(e.fails, it) }
		return e
	}
	add := func(e *workerEnv, seed, to string) (*memItem, string) {
		data, id := composeNotice(t, seed, to)
		return e.q.add(Item{MessageID: id, From: "so@example.test", To: []string{to}, Queued: e.clock.Now()}, data, e.clock.Now()), id
	}
	ctx := context.Background()

	t.Run("normal", func(t *testing.T) {
		e := newEnv(t)
		it, id := add(e, "normal", "ana+SO-2026-0042@example.test")
		e.w.RunOnce(ctx)
		if st := e.q.get(it.ID); st.state != "sent" {
			t.Fatalf("state %s (%s)\n%s", st.state, st.reason, pf.Log())
		}
		msgs, err := pf.WaitMessages("ana", 1, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if countMessageID(msgs, id) != 1 {
			t.Fatalf("maildir holds %d copies of %s", countMessageID(msgs, id), id)
		}
		if !bytes.Contains(msgs[0], []byte("Auto-Submitted: auto-generated")) || !bytes.Contains(msgs[0], []byte("Dit is bericht normal.")) {
			t.Errorf("delivered message:\n%s", msgs[0])
		}
	})

	t.Run("temporary then success", func(t *testing.T) {
		e := newEnv(t)
		pf.SetTempFail(true)
		it, id := add(e, "temp", "bob@example.test")
		e.w.RunOnce(ctx)
		st := e.q.get(it.ID)
		if st.state != "pending" || st.Attempt != 1 || !strings.Contains(st.reason, "451") {
			t.Fatalf("after 451: state %s attempt %d reason %q", st.state, st.Attempt, st.reason)
		}
		pf.SetTempFail(false)
		e.clock.Advance(time.Minute)
		e.w.RunOnce(ctx)
		if st := e.q.get(it.ID); st.state != "sent" {
			t.Fatalf("after recovery: %s %q", st.state, st.reason)
		}
		msgs, err := pf.WaitMessages("bob", 1, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if n := countMessageID(msgs, id); n != 1 {
			t.Fatalf("%d copies delivered", n)
		}
	})

	t.Run("permanent", func(t *testing.T) {
		e := newEnv(t)
		it, _ := add(e, "perm", "nobody@example.test")
		e.w.RunOnce(ctx)
		st := e.q.get(it.ID)
		if st.state != "failed" || !strings.Contains(st.reason, "5.1.1") {
			t.Fatalf("state %s reason %q", st.state, st.reason)
		}
		if len(e.fails) != 1 {
			t.Errorf("backoffice alerted %d times", len(e.fails))
		}
	})

	t.Run("postfix stopped during a send", func(t *testing.T) {
		e := newEnv(t)
		data, id := composeNotice(t, "crash", "cas@example.test")
		body := &pausingBody{data: data, paused: make(chan struct{}), resume: make(chan struct{})}
		it := e.q.add(Item{MessageID: id, From: "so@example.test", To: []string{"cas@example.test"}, Queued: e.clock.Now()}, data, e.clock.Now())
		e.q.mu.Lock()
		it.open = func() (io.ReadCloser, error) { return io.NopCloser(body), nil }
		e.q.mu.Unlock()

		done := make(chan struct{})
		go func() {
			defer close(done)
			e.w.RunOnce(ctx)
		}()
		<-body.paused // half the message is on the wire
		if err := pf.Stop(); err != nil {
			t.Fatal(err)
		}
		close(body.resume)
		<-done
		st := e.q.get(it.ID)
		if st.state != "pending" || st.Attempt != 1 {
			t.Fatalf("after the stop: state %s attempt %d reason %q", st.state, st.Attempt, st.reason)
		}

		// A new worker, as after a restart of the daemon, on the same queue.
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		e.q.mu.Lock()
		it.open = nil
		e.q.mu.Unlock()
		w2 := newEnv(t)
		w2.q, w2.clock = e.q, e.clock
		w2.w.Queue, w2.w.Clock = e.q, e.clock
		e.clock.Advance(time.Minute)
		w2.w.RunOnce(ctx)
		if st := e.q.get(it.ID); st.state != "sent" {
			t.Fatalf("after the restart: state %s reason %q", st.state, st.reason)
		}
		msgs, err := pf.WaitMessages("cas", 1, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // a second copy would arrive as fast as the first
		msgs, _ = pf.Messages("cas")
		if n := countMessageID(msgs, id); n != 1 {
			t.Fatalf("%d copies of %s delivered, want exactly 1\n%s", n, id, pf.Log())
		}
	})

	// Postfix offers CHUNKING; the same 2 MB message with dot lines arrives
	// intact over BDAT and over DATA.
	for _, mode := range []string{"BDAT", "DATA"} {
		t.Run("2 MB message over "+mode, func(t *testing.T) {
			msg := bytes.Replace(bigMessage(t), []byte("<big@example.test>"), []byte("<big-"+mode+"@example.test>"), 1)
			var trec smtptest.Recorder
			tr := &Transport{Addr: pf.Addr, Timeout: 20 * time.Second, HelloName: "so.example.test", Dial: trec.Dial, noChunking: mode == "DATA"}
			if err := tr.Deliver(ctx, "so@example.test", []string{"dirk@example.test"}, bytes.NewReader(msg)); err != nil {
				t.Fatalf("Deliver: %v\n%s", err, pf.Log())
			}
			if got := strings.Contains(trec.String(), "\r\nBDAT "); got != (mode == "BDAT") {
				t.Errorf("BDAT used = %v", got)
			}
			id := "big-" + mode + "@example.test"
			deadline := time.Now().Add(10 * time.Second)
			for {
				msgs, _ := pf.Messages("dirk")
				for _, m := range msgs {
					if countMessageID([][]byte{m}, id) == 1 {
						// The maildir holds LF line ends, after Postfix's
						// own header fields.
						if !bytes.HasSuffix(m, bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))) {
							t.Fatalf("delivered message (%d bytes) does not end with the %d bytes sent", len(m), len(msg))
						}
						return
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not delivered\n%s", id, pf.Log())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}

	// The recorder saw every session; no password was configured, and the
	// logs name Message-IDs, never bodies.
	if t.Failed() {
		return
	}
	if !strings.Contains(rec.String(), "EHLO so.example.test") {
		t.Errorf("client transcript lacks the EHLO:\n%.2000s", rec.String())
	}
}
