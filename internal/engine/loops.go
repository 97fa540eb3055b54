package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout"
	"secondopinion/internal/store"
)

// Spool stores ingested mail in the store: the raw bytes, fsynced, before
// mailin marks the message on the server.
type Spool struct{ DB *store.Store }

// Stage implements mailin.Spool.
func (s Spool) Stage(_ context.Context, m mailin.Raw, body io.Reader) (mailin.Staged, error) {
	return s.DB.StageRaw(store.RawMeta{Mailbox: m.Mailbox, UIDValidity: m.UIDValidity, UID: m.UID,
		Oversize: m.Oversize, ReceivedAt: m.InternalDate}, body)
}

// Commit implements mailin.Spool.
func (s Spool) Commit(ctx context.Context, staged []mailin.Staged) ([]mailin.Stored, error) {
	raws := make([]*store.StagedRaw, len(staged))
	for i, st := range staged {
		raws[i] = st.(*store.StagedRaw)
	}
	res, err := s.DB.CommitRaws(ctx, raws)
	if err != nil {
		return nil, err
	}
	out := make([]mailin.Stored, len(res))
	for i, r := range res {
		out[i] = mailin.Stored{ID: r.ID, Duplicate: r.Duplicate}
	}
	return out, nil
}

// Queue is the store's outbox as mailout's worker sees it.
type Queue struct{ Store *store.Store }

// Due implements mailout.Queue.
func (q Queue) Due(ctx context.Context, now time.Time, limit int) ([]mailout.Item, error) {
	rows, err := q.Store.DueOutbox(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	return items(rows), nil
}

func items(rows []store.OutboxItem) []mailout.Item {
	out := make([]mailout.Item, len(rows))
	for i, r := range rows {
		out[i] = mailout.Item{ID: r.ID, MessageID: r.MessageID, From: r.From, To: r.To, Case: r.CaseID, Attempt: r.Attempts,
			Queued: r.Queued, SendingSince: r.SendingSince, Open: r.Open}
	}
	return out
}

// Sending implements mailout.Queue.
func (q Queue) Sending(ctx context.Context, id int64, now time.Time) error {
	return q.Store.OutboxSending(ctx, id, now)
}

// Sent implements mailout.Queue.
func (q Queue) Sent(ctx context.Context, id int64, now time.Time) error {
	return q.Store.OutboxSent(ctx, id, now)
}

// InFlight implements mailout.Queue.
func (q Queue) InFlight(ctx context.Context) ([]mailout.Item, error) {
	rows, err := q.Store.InFlightOutbox(ctx)
	if err != nil {
		return nil, err
	}
	return items(rows), nil
}

// Retry implements mailout.Queue.
func (q Queue) Retry(ctx context.Context, id int64, attempt int, next time.Time, reason string) error {
	return q.Store.OutboxRetry(ctx, id, next, reason)
}

// Failed implements mailout.Queue.
func (q Queue) Failed(ctx context.Context, id int64, reason string) error {
	return q.Store.OutboxFailed(ctx, id, reason)
}

// NextDue implements mailout.Queue.
func (q Queue) NextDue(ctx context.Context) (time.Time, bool, error) { return q.Store.NextOutbox(ctx) }

// WorkerClock gives mailout's worker the engine's clock, with real timers.
type WorkerClock struct{ Clock Clock }

// Now implements mailout.Clock.
func (c WorkerClock) Now() time.Time { return c.Clock.Now() }

// NewTimer implements mailout.Clock.
func (c WorkerClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Loops are the background parts Run starts; nil parts are left out.
type Loops struct {
	// Ingester reads the IMAP mailbox; its Notify must call KickInbound.
	Ingester *mailin.Ingester
	// Worker delivers the outbox.
	Worker *mailout.Worker
	// SweepSpec and KeysSpec are cron schedules (robfig/cron, with
	// descriptors): the deadline sweep and the daily key check.
	SweepSpec string // default "@every 1m"
	KeysSpec  string // default "0 6 * * *"
	// InboundPoll is how often stored mail is looked at without a kick
	// (default 1 min): a message stored by a crashed run is not forgotten.
	InboundPoll time.Duration
}

// KickInbound asks the inbound loop to look at stored mail now; a
// ProcessPending under way looks again too.
func (e *Engine) KickInbound() {
	e.storedMu.Lock()
	e.storedGen++
	close(e.stored)
	e.stored = make(chan struct{})
	e.storedMu.Unlock()
	select {
	case e.inKick <- struct{}{}:
	default:
	}
}

// storedSignal returns how often KickInbound was called and a channel
// closed at its next call.
func (e *Engine) storedSignal() (uint64, <-chan struct{}) {
	e.storedMu.Lock()
	defer e.storedMu.Unlock()
	return e.storedGen, e.stored
}

// Run runs the loops until ctx is done. A step that has begun (a decision,
// a delivery) is finished before Run returns: steps run on a context that
// is not cancelled with ctx.
func (e *Engine) Run(ctx context.Context, l Loops) error {
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goLoop := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					errc <- fmt.Errorf("%s: panic: %v", name, p)
				}
			}()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) {
				// Said at once, not only at shutdown: /healthz also sees
				// the work this loop leaves undone.
				e.log.Error("loop stopped", "loop", name, "err", err)
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	var outKick atomic.Pointer[func()]
	if l.Worker != nil {
		k := l.Worker.Kick
		outKick.Store(&k)
		goLoop("outbox", func() error { return l.Worker.Run(ctx) })
	}
	onCommit := func() {
		if k := outKick.Load(); k != nil {
			(*k)()
		}
	}
	e.afterCommit.Store(&onCommit)
	defer e.afterCommit.Store(nil)

	if l.Ingester != nil {
		goLoop("ingest", func() error { return l.Ingester.Run(ctx) })
	}
	poll := l.InboundPoll
	if poll <= 0 {
		poll = time.Minute
	}
	goLoop("inbound", func() error {
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-e.inKick:
			case <-t.C:
			}
			// On ctx's end ProcessPending finishes the decisions under way
			// and takes no new ones (SIGTERM does not wait for a backlog).
			if _, err := e.ProcessPending(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("inbound processing", "err", err)
			}
			t.Reset(poll)
		}
	})

	c := cron.New(cron.WithLocation(amsterdam), cron.WithChain(cron.Recover(cronLogger{e.log})))
	sweepSpec, keysSpec := l.SweepSpec, l.KeysSpec
	if sweepSpec == "" {
		sweepSpec = "@every 1m"
	}
	if keysSpec == "" {
		keysSpec = "0 6 * * *"
	}
	var sweeping atomic.Bool
	if _, err := c.AddFunc(sweepSpec, func() {
		if !sweeping.CompareAndSwap(false, true) {
			return
		}
		defer sweeping.Store(false)
		if n, err := e.Sweep(context.WithoutCancel(ctx)); err != nil {
			e.log.Error("deadline sweep", "err", err)
		} else if n > 0 {
			e.log.Info("deadline sweep", "fired", n)
		}
	}); err != nil {
		return fmt.Errorf("sweep schedule %q: %w", sweepSpec, err)
	}
	if _, err := c.AddFunc(keysSpec, func() {
		if _, err := e.CheckKeys(context.WithoutCancel(ctx)); err != nil {
			e.log.Error("key check", "err", err)
		}
	}); err != nil {
		return fmt.Errorf("key schedule %q: %w", keysSpec, err)
	}
	if _, err := c.AddFunc(fileSweepSpec, func() { e.sweepFiles(context.WithoutCancel(ctx)) }); err != nil {
		return fmt.Errorf("file sweep schedule: %w", err)
	}
	goLoop("file sweep", func() error {
		e.sweepFiles(context.WithoutCancel(ctx))
		return nil
	})
	// A case that waits for a key imported while the daemon was down
	// resumes now, not at the next daily check.
	goLoop("key check", func() error {
		_, err := e.CheckKeys(context.WithoutCancel(ctx))
		return err
	})
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// fileSweepSpec is when the data dir is swept daily, besides at start.
const fileSweepSpec = "30 5 * * *"

// fileSweepAge is how long a file no row names is left alone: long past
// any decision or ingest that is about to name it.
const fileSweepAge = 24 * time.Hour

// sweepFiles removes the files a crash or a failed step left behind (see
// store.SweepFiles).
func (e *Engine) sweepFiles(ctx context.Context) {
	// The wall clock, not the engine's: the files' times are the system's.
	n, err := e.o.Store.SweepFiles(ctx, time.Now().Add(-fileSweepAge))
	if err != nil {
		e.log.Error("file sweep", "err", err, "removed", n)
	} else if n > 0 {
		e.log.Info("file sweep", "removed", n, "what", "files in the data dir no row names, left by a crash or a failed step")
	}
}

// cronLogger lets robfig/cron log through slog (a recovered panic in a
// scheduled job is an error; the schedule goes on).
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) {}

func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("scheduled job: "+msg, append(kv, "err", err)...)
}
