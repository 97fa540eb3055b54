package mailout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Item is one outbox row due for delivery: raw message bytes composed when
// the decision committed, with the envelope.
type Item struct {
	ID        int64
	MessageID string
	From      string
	To        []string
	// Case is the case the mail is about (0: none). Mail about one case to
	// one set of recipients goes out in the order it was queued; mail
	// about different cases need not wait for each other.
	Case int64
	// Attempt counts the delivery attempts made before this one.
	Attempt int
	// Queued is when the row was committed; a message still undelivered
	// GiveUpAfter later fails for good.
	Queued time.Time
	// SendingSince is when the attempt began that left the item in flight
	// (Queue.InFlight only).
	SendingSince time.Time
	// Open returns the composed message.
	Open func() (io.ReadCloser, error)
}

// Queue is the outbox as the worker sees it (the store implements it).
// Sending, Sent, Retry and Failed are each one committed transaction.
type Queue interface {
	// Due returns up to limit items whose next attempt is at or before now.
	Due(ctx context.Context, now time.Time, limit int) ([]Item, error)
	// Sending records that an attempt of the item begins, before the first
	// byte goes to the server: the item is then in flight, not due, until
	// Sent, Retry or Failed. It fails, and records nothing, when the item
	// is not queued.
	Sending(ctx context.Context, id int64, now time.Time) error
	// Sent records that the item was delivered. It fails, and records
	// nothing, when the item is neither queued nor in flight.
	Sent(ctx context.Context, id int64, now time.Time) error
	// InFlight returns the items whose attempt began and whose outcome was
	// never recorded: the process stopped mid-attempt, or the server's reply
	// to the end of the data never came.
	InFlight(ctx context.Context) ([]Item, error)
	// Retry records a temporary failure: attempt is the number of attempts
	// made so far, next the earliest time to try again.
	Retry(ctx context.Context, id int64, attempt int, next time.Time, reason string) error
	// Failed records a permanent failure; the item is never tried again.
	Failed(ctx context.Context, id int64, reason string) error
	// NextDue returns the earliest next attempt of any pending item, and
	// false when there is none.
	NextDue(ctx context.Context) (time.Time, bool, error)
}

// SentCopies is where the mail server files the copy of each outgoing mail
// (an address of the service's own, delivered into an IMAP folder). A copy
// travels in the same SMTP transaction as the mail, so the server accepted
// the mail if and only if the copy arrives: after a crash between the
// server's acceptance and our record of it, the copy is what tells whether
// the mail left, so that it is sent neither twice nor never.
type SentCopies interface {
	// Address is the envelope recipient that gets the copies.
	Address() string
	// Find reports which of the Message-IDs have a copy filed.
	Find(ctx context.Context, messageIDs []string) (map[string]bool, error)
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
	DefaultCopyWait    = 2 * time.Minute
	DefaultParallel    = 4
	// copyCheck is how often the sent copies are looked at while an item
	// in flight waits for its copy.
	copyCheck = time.Second
	// queueErrorWait is how long the loop waits after the queue itself
	// failed (the database is busy or gone) before it looks again.
	queueErrorWait = 30 * time.Second
)

// Worker delivers the outbox. Run it in one goroutine (it delivers over
// up to Parallel connections of its own); call Kick after committing new
// outbox rows.
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
	// Parallel is how many SMTP connections deliver at once; default
	// DefaultParallel.
	Parallel int

	// Copies, if set, gets a copy of every mail and settles the items left
	// in flight. Without it an item left in flight is sent again: at least
	// once, possibly twice.
	Copies SentCopies
	// CopyWait is how long after an attempt began its copy may take to be
	// filed; an item in flight with no copy by then was not accepted and is
	// sent again. Default DefaultCopyWait.
	CopyWait time.Duration

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
//
// Items go out over up to Parallel connections, one lane per case and
// set of recipients, so that a recipient gets our mails about a case in
// the order they were queued, while a physician's short request about one
// case does not wait behind the medical file of another. A lane starts as
// soon as a connection is free: an item queued (and kicked) while others
// are under way does not wait for them all to finish, only for a free
// connection, or for the lane of its own case and recipients. RunOnce
// returns once nothing is due and nothing under way.
func (w *Worker) RunOnce(ctx context.Context) (time.Duration, error) {
	d := &dispatch{w: w, active: map[string]bool{}, busy: map[int64]bool{}, done: make(chan laneDone)}
	recheck, err := w.settleInFlight(ctx, d)
	if err != nil {
		return 0, err
	}
	clock := w.clock()
	settleAt := time.Time{}
	if recheck >= 0 {
		settleAt = clock.Now().Add(recheck)
	}
	for {
		if d.err == nil && ctx.Err() == nil {
			if err := d.fill(ctx); err != nil && d.err == nil {
				d.err = fmt.Errorf("due items: %w", err)
			}
		}
		if len(d.active) == 0 {
			break
		}
		var (
			settleC <-chan time.Time
			stop    = func() bool { return false }
		)
		if !settleAt.IsZero() {
			settleC, stop = clock.NewTimer(max(settleAt.Sub(clock.Now()), 0))
		}
		select {
		case r := <-d.done:
			d.finish(r)
		case <-w.kick:
		case <-settleC:
			// Items left in flight by an earlier run (not ours, which are
			// busy) are settled while the queue keeps going.
			recheck, err := w.settleInFlight(ctx, d)
			settleAt = time.Time{}
			if err != nil && d.err == nil {
				d.err = err
			} else if recheck >= 0 {
				settleAt = clock.Now().Add(recheck)
			}
		}
		stop()
	}
	if d.err != nil {
		return 0, d.err
	}
	if ctx.Err() != nil {
		return 0, nil
	}
	if !settleAt.IsZero() {
		recheck = max(settleAt.Sub(clock.Now()), 0)
	} else {
		recheck = -1
	}
	next, ok, err := w.Queue.NextDue(ctx)
	if err != nil {
		return 0, fmt.Errorf("next due: %w", err)
	}
	if !ok {
		return recheck, nil
	}
	wait := max(next.Sub(w.clock().Now()), 0)
	if recheck >= 0 {
		wait = min(wait, recheck)
	}
	return wait, nil
}

// dispatch is one RunOnce's deliveries under way.
type dispatch struct {
	w      *Worker
	active map[string]bool // lanes (case and recipients) under way
	busy   map[int64]bool  // items handed to a lane and not finished
	done   chan laneDone
	err    error // the first queue error: no new lanes start after it
}

// mark records that an attempt of item id begins (sending) or that it was
// sent, and returns once that is committed. A mark is committed even when
// ctx ends: a mail the server took must be recorded. The lanes' marks that
// meet share one commit (the store's group commit).
func (w *Worker) mark(ctx context.Context, id int64, sending bool) error {
	ctx, now := context.WithoutCancel(ctx), w.clock().Now()
	if sending {
		return w.Queue.Sending(ctx, id, now)
	}
	return w.Queue.Sent(ctx, id, now)
}

type laneDone struct {
	key   string
	items []Item
	err   error
}

// fill starts a lane for each case and set of recipients with due items,
// as long as connections are free. Items whose lane is under way wait for
// it to finish, so that they follow the mail before them.
func (d *dispatch) fill(ctx context.Context) error {
	parallel := d.w.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	if len(d.active) >= parallel {
		return nil
	}
	batch := d.w.BatchSize
	if batch <= 0 {
		batch = 20
	}
	items, err := d.w.Queue.Due(ctx, d.w.clock().Now(), batch)
	if err != nil {
		return err
	}
	lanes := map[string][]Item{}
	var order []string
	for _, it := range items {
		k := laneKey(it)
		if d.busy[it.ID] || d.active[k] {
			continue
		}
		if _, ok := lanes[k]; !ok {
			order = append(order, k)
		}
		lanes[k] = append(lanes[k], it)
	}
	for _, k := range order {
		if len(d.active) >= parallel {
			break
		}
		lane := lanes[k]
		d.active[k] = true
		for _, it := range lane {
			d.busy[it.ID] = true
		}
		go func() {
			var err error
			for _, it := range lane {
				if ctx.Err() != nil {
					break
				}
				if err = d.w.deliver(ctx, it); err != nil {
					break
				}
			}
			d.done <- laneDone{key: k, items: lane, err: err}
		}()
	}
	return nil
}

// laneKey names the lane of an item: its case and its recipients.
func laneKey(it Item) string {
	return strconv.FormatInt(it.Case, 10) + " " + strings.Join(it.To, ",")
}

// finish records a lane's end; an item it did not attempt is queued still
// and due again.
func (d *dispatch) finish(r laneDone) {
	delete(d.active, r.key)
	for _, it := range r.items {
		delete(d.busy, it.ID)
	}
	if r.err != nil && d.err == nil {
		d.err = r.err
	}
}

// settleInFlight decides, for each item in flight and not busy in d (being
// delivered now), whether the server took it: its sent copy is filed
// (sent, marked through d), or none came within CopyWait after the attempt
// began (sent again), or it is too early to tell. It returns when to look
// again (-1: nothing left to settle).
func (w *Worker) settleInFlight(ctx context.Context, d *dispatch) (time.Duration, error) {
	all, err := w.Queue.InFlight(ctx)
	if err != nil {
		return 0, fmt.Errorf("items in flight: %w", err)
	}
	var items []Item
	for _, it := range all {
		if !d.busy[it.ID] {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return -1, nil
	}
	now := w.clock().Now()
	if w.Copies == nil {
		for _, it := range items {
			reason := "the outcome of an interrupted attempt is unknown and there is no sent-copy folder to tell; sending again"
			if err := w.Queue.Retry(ctx, it.ID, it.Attempt+1, now, reason); err != nil {
				return 0, fmt.Errorf("record retry %s: %w", it.MessageID, err)
			}
			w.logger().Warn("delivery", "message_id", it.MessageID, "outcome", "unknown", "reason", reason)
		}
		return -1, nil
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.MessageID
	}
	found, err := w.Copies.Find(ctx, ids)
	if err != nil {
		// The items stay in flight, not sent again blindly.
		w.logger().Warn("delivery", "outcome", "unknown", "in_flight", len(items), "err", fmt.Errorf("looking for sent copies: %w", err))
		return copyCheck, nil
	}
	wait := w.CopyWait
	if wait <= 0 {
		wait = DefaultCopyWait
	}
	recheck := time.Duration(-1)
	for _, it := range items {
		log := w.logger().With("message_id", it.MessageID, "attempt", it.Attempt+1)
		switch waited := now.Sub(it.SendingSince); {
		case found[it.MessageID]:
			if err := w.mark(ctx, it.ID, false); err != nil {
				return 0, fmt.Errorf("record sent %s: %w", it.MessageID, err)
			}
			log.Info("delivery", "outcome", "sent", "by", "sent copy")
		case waited >= wait:
			reason := fmt.Sprintf("no sent copy %v after the attempt began: the server did not take it; sending again", wait)
			if err := w.Queue.Retry(ctx, it.ID, it.Attempt+1, now, reason); err != nil {
				return 0, fmt.Errorf("record retry %s: %w", it.MessageID, err)
			}
			log.Info("delivery", "outcome", "retry", "reason", reason)
		default:
			recheck = copyCheck
		}
	}
	return recheck, nil
}

// deliver makes one attempt and records its outcome: marks that the
// attempt begins and that the item was sent, or its retry or failure. The
// returned error is a queue error only; delivery failures are recorded,
// not returned.
func (w *Worker) deliver(ctx context.Context, it Item) error {
	start := w.clock().Now()
	if err := w.mark(ctx, it.ID, true); err != nil {
		return fmt.Errorf("record sending %s: %w", it.MessageID, err)
	}
	wallStart := time.Now()
	attempt := it.Attempt + 1
	err := w.attempt(ctx, it)
	took := time.Since(wallStart)
	log := w.logger().With("message_id", it.MessageID, "attempt", attempt, "rcpts", len(it.To), "duration", took.Round(time.Millisecond))
	if IsUncertain(err) {
		// The whole message went out and no reply came: the server may
		// have taken it. It stays in flight until its sent copy settles it.
		log.Warn("delivery", "outcome", "unknown", "reason", err.Error())
		return nil
	}
	if err == nil {
		if qerr := w.mark(ctx, it.ID, false); qerr != nil {
			// Delivered but not recorded: the item will be sent again.
			log.Error("delivery", "outcome", "sent-unrecorded", "err", qerr)
			return fmt.Errorf("record sent %s: %w", it.MessageID, qerr)
		}
		log.Info("delivery", "outcome", "sent")
		return nil
	}
	if ctx.Err() != nil {
		// Shutting down before the end of the data (after it, the outcome
		// is uncertain, above): the server did not take it; due again at
		// the next start.
		log.Info("delivery", "outcome", "interrupted")
		if qerr := w.Queue.Retry(context.WithoutCancel(ctx), it.ID, it.Attempt, start, "interrupted by shutdown"); qerr != nil {
			return fmt.Errorf("record interruption %s: %w", it.MessageID, qerr)
		}
		return nil
	}
	reason := err.Error()
	giveUp := w.GiveUpAfter
	if giveUp <= 0 {
		giveUp = DefaultGiveUpAfter
	}
	permanent := IsPermanent(err)
	var de *DeliveryError
	if w.Copies != nil && errors.As(err, &de) && strings.EqualFold(de.Recipient, w.Copies.Address()) {
		// Our own copy address refused: a configuration error, not the
		// recipient's; the mail waits for it to be fixed.
		permanent = false
		reason = "the sent-copy address was refused (see smtp.sent_copy in the configuration): " + reason
	}
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
	to := it.To
	if w.Copies != nil {
		to = append(slices.Clip(to), w.Copies.Address())
	}
	return w.Transport.Deliver(ctx, it.From, to, body)
}
