package mailout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Item is one outbox row due for delivery: raw message bytes composed when
// the decision committed, with the envelope.
type Item struct {
	ID        int64
	MessageID string
	From      string
	To        []string
	// Attempt counts the delivery attempts made before this one.
	Attempt int
	// Queued is when the row was committed; a message still undelivered
	// GiveUpAfter later fails for good.
	Queued time.Time
	// Open returns the composed message.
	Open func() (io.ReadCloser, error)
}

// Queue is the outbox as the worker sees it (the store implements it).
// Sent, Retry and Failed are each one committed transaction.
type Queue interface {
	// Due returns up to limit items whose next attempt is at or before now.
	Due(ctx context.Context, now time.Time, limit int) ([]Item, error)
	// Sent records the delivery.
	Sent(ctx context.Context, id int64, now time.Time) error
	// Retry records a temporary failure: attempt is the number of attempts
	// made so far, next the earliest time to try again.
	Retry(ctx context.Context, id int64, attempt int, next time.Time, reason string) error
	// Failed records a permanent failure; the item is never tried again.
	Failed(ctx context.Context, id int64, reason string) error
	// NextDue returns the earliest next attempt of any pending item, and
	// false when there is none.
	NextDue(ctx context.Context) (time.Time, bool, error)
}

// Deliverer sends one message; *Transport is one.
type Deliverer interface {
	Deliver(ctx context.Context, from string, to []string, body io.Reader) error
}

// Clock is the worker's time source. The engine passes its injected clock
// (tests and the demo advance it); nil means the system clock.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed, and a
	// function that stops the timer.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Backoff defaults.
const (
	DefaultFirstRetry  = time.Minute
	DefaultMaxRetry    = time.Hour
	DefaultGiveUpAfter = 72 * time.Hour
	// queueErrorWait is how long the loop waits after the queue itself
	// failed (the database is busy or gone) before it looks again.
	queueErrorWait = 30 * time.Second
)

// Worker delivers the outbox. Run it in one goroutine; call Kick after
// committing new outbox rows.
type Worker struct {
	Queue     Queue
	Transport Deliverer
	Clock     Clock        // nil: system clock
	Logger    *slog.Logger // nil: discard
	// OnPermanentFailure is called after an item is marked failed, so the
	// engine can alert the backoffice. It must not block for long.
	OnPermanentFailure func(Item, error)

	FirstRetry  time.Duration // backoff after the first failure; default 1 min
	MaxRetry    time.Duration // backoff cap; default 1 h
	GiveUpAfter time.Duration // since Queued; default 72 h
	BatchSize   int           // items per Due call; default 20

	kick chan struct{}
}

// NewWorker returns a worker with the defaults filled in.
func NewWorker(q Queue, t Deliverer) *Worker {
	w := &Worker{Queue: q, Transport: t}
	w.init()
	return w
}

func (w *Worker) init() {
	if w.kick == nil {
		w.kick = make(chan struct{}, 1)
	}
}

// Kick wakes the worker to look for due items now. It never blocks.
func (w *Worker) Kick() {
	w.init()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Worker) clock() Clock {
	if w.Clock == nil {
		return systemClock{}
	}
	return w.Clock
}

func (w *Worker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// Backoff returns the wait after the given number of failed attempts:
// FirstRetry doubled per attempt, capped at MaxRetry.
func (w *Worker) Backoff(attempts int) time.Duration {
	first, maxd := w.FirstRetry, w.MaxRetry
	if first <= 0 {
		first = DefaultFirstRetry
	}
	if maxd <= 0 {
		maxd = DefaultMaxRetry
	}
	d := first
	for i := 1; i < attempts; i++ {
		d *= 2
		if d >= maxd {
			return maxd
		}
	}
	return min(d, maxd)
}

// Run delivers due items until ctx ends. It waits on ctx, Kick and a
// timer set to the earliest next attempt; it never polls.
func (w *Worker) Run(ctx context.Context) error {
	w.init()
	// The pending kick, if any, is covered by this first pass.
	select {
	case <-w.kick:
	default:
	}
	for {
		wait, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.logger().Error("outbox", "err", err)
			wait, err = queueErrorWait, nil
		}
		var (
			timerC <-chan time.Time
			stop   = func() bool { return false }
		)
		if wait >= 0 {
			timerC, stop = w.clock().NewTimer(wait)
		}
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-w.kick:
		case <-timerC:
		}
		stop()
	}
}

// RunOnce delivers every item due now and returns how long to wait for
// the next one (-1: none pending). Tests and the demo call it directly.
func (w *Worker) RunOnce(ctx context.Context) (time.Duration, error) {
	batch := w.BatchSize
	if batch <= 0 {
		batch = 20
	}
	for {
		items, err := w.Queue.Due(ctx, w.clock().Now(), batch)
		if err != nil {
			return 0, fmt.Errorf("due items: %w", err)
		}
		for _, it := range items {
			if ctx.Err() != nil {
				return 0, nil
			}
			if err := w.deliver(ctx, it); err != nil {
				return 0, err
			}
		}
		if len(items) < batch {
			break
		}
	}
	next, ok, err := w.Queue.NextDue(ctx)
	if err != nil {
		return 0, fmt.Errorf("next due: %w", err)
	}
	if !ok {
		return -1, nil
	}
	return max(next.Sub(w.clock().Now()), 0), nil
}

// deliver makes one attempt and records its outcome. The returned error
// is a queue error only; delivery failures are recorded, not returned.
func (w *Worker) deliver(ctx context.Context, it Item) error {
	start := w.clock().Now()
	wallStart := time.Now()
	attempt := it.Attempt + 1
	err := w.attempt(ctx, it)
	took := time.Since(wallStart)
	log := w.logger().With("message_id", it.MessageID, "attempt", attempt, "rcpts", len(it.To), "duration", took.Round(time.Millisecond))
	if err == nil {
		if qerr := w.Queue.Sent(ctx, it.ID, w.clock().Now()); qerr != nil {
			// Delivered but not recorded: the item will be sent again.
			log.Error("delivery", "outcome", "sent-unrecorded", "err", qerr)
			return fmt.Errorf("record sent %s: %w", it.MessageID, qerr)
		}
		log.Info("delivery", "outcome", "sent")
		return nil
	}
	if ctx.Err() != nil {
		// Shutting down: leave the item as it is; it is due again at the
		// next start.
		log.Info("delivery", "outcome", "interrupted")
		return nil
	}
	reason := err.Error()
	giveUp := w.GiveUpAfter
	if giveUp <= 0 {
		giveUp = DefaultGiveUpAfter
	}
	permanent := IsPermanent(err)
	if !permanent && !it.Queued.IsZero() && start.Sub(it.Queued) >= giveUp {
		permanent = true
		reason = fmt.Sprintf("undelivered after %v: %s", giveUp, reason)
	}
	if permanent {
		if qerr := w.Queue.Failed(ctx, it.ID, reason); qerr != nil {
			return fmt.Errorf("record failure %s: %w", it.MessageID, qerr)
		}
		log.Warn("delivery", "outcome", "failed", "reason", reason)
		if w.OnPermanentFailure != nil {
			w.OnPermanentFailure(it, err)
		}
		return nil
	}
	next := w.clock().Now().Add(w.Backoff(attempt))
	if qerr := w.Queue.Retry(ctx, it.ID, attempt, next, reason); qerr != nil {
		return fmt.Errorf("record retry %s: %w", it.MessageID, qerr)
	}
	log.Info("delivery", "outcome", "retry", "reason", reason, "next", next)
	return nil
}

func (w *Worker) attempt(ctx context.Context, it Item) error {
	if it.Open == nil {
		return &DeliveryError{Permanent: true, Msg: "outbox item has no message"}
	}
	body, err := it.Open()
	if err != nil {
		return &DeliveryError{Msg: "open message: " + err.Error(), Err: err}
	}
	defer body.Close()
	return w.Transport.Deliver(ctx, it.From, it.To, body)
}
