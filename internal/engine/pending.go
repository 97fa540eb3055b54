package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"secondopinion/internal/message"
	"secondopinion/internal/store"
)

// Inbound mail is handled in two stages. Reading a message — parsing it,
// decrypting and verifying it (RFC 3156), and, once the signature shows the
// sender, sealing its attachments — does not depend on its case, costs
// tens of milliseconds for a medical file, and runs for several messages
// at once (pendingWorkers). Deciding — routing against the case as it
// stands, the procedure's decision and its commit, a quarantine — is kept
// in order where order matters: the messages of one case are decided one
// at a time in the order they were stored (inbound id), so a choice
// followed by a withdrawal is read as just that. The messages of different
// cases are decided independently. Messages that name no case — requests,
// and whatever cannot be told from its header — share one lane, so two
// requests never race into two cases for one employee or into the same
// count of earlier requests.
//
// The lane of a message is told from its header alone, as route would:
// the case of the first reply token among its recipients, else of our own
// Message-ID in In-Reply-To/References, else of the case reference in its
// subject (a reference is looked up in the store; an unknown one, or an
// invalid token, goes to the lane of no case: route quarantines it).

// pendingWorkers is how many messages are read or decided at once: one
// per core, and one more that reads while another waits on an fsync.
// pendingDeciding bounds the decisions among them: each commits, and
// SQLite lets one writer in at a time; the others wait in its busy
// handler, which sleeps (1, 2, 5 … 100 ms), so more writers than cores
// lengthen every decision. Two let one decision compute (a forwarding
// encrypts the medical file) while another commits. (On the shared 2-core
// test machine the bench could not tell 1, 2 and 3 apart beyond its noise.)
func pendingWorkers() int  { return runtime.GOMAXPROCS(0) + 1 }
func pendingDeciding() int { return max(2, runtime.GOMAXPROCS(0)) }

// pendingWindow bounds the stored messages taken on at once (read or not).
// heldPerWorker and heldBytes bound those read (or being read) and not yet
// decided, which hold their decrypted content in memory: by count, and by
// the sum of their stored sizes.
const (
	pendingWindow = 64
	heldPerWorker = 2
	heldBytes     = 48 << 20
)

// ProcessPending handles every stored message not yet handled and returns
// how many it handled. Messages stored while it runs are taken on too.
//
// It returns the first store error; the message it met it on stays
// pending, as do the later messages of every case not yet decided, and
// they are handled on the next call. When ctx ends, the decisions under
// way are finished (on a context that is not cancelled) and it returns
// ctx's error; nothing is begun after that.
func (e *Engine) ProcessPending(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s := &scheduler{e: e, lanes: map[int64]*lane{}, workers: pendingWorkers(), maxDeciding: pendingDeciding()}
	s.cond = sync.NewCond(&s.mu)
	stopWatch := context.AfterFunc(ctx, func() { s.fail(ctx.Err()) })
	defer stopWatch()
	stopKicks := s.watchKicks()
	defer stopKicks()
	var wg sync.WaitGroup
	for range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	s.dispatch(ctx)
	s.mu.Lock()
	s.finished = true
	s.cond.Broadcast()
	s.mu.Unlock()
	wg.Wait()
	// Whatever was taken on but not decided stays pending.
	for _, l := range s.lanes {
		for j := l.head; j != nil; j = j.next {
			if j.r != nil {
				j.r.close()
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handled, s.err
}

// job is one stored message taken on.
type job struct {
	in   store.Inbound
	lane int64
	// r is the message as read; nil until read.
	r    *reading
	next *job // in its lane
}

// lane is the undecided messages of one case (or of none), oldest first.
type lane struct{ head, tail *job }

// scheduler hands the messages of one ProcessPending call to its workers.
type scheduler struct {
	e                    *Engine
	workers, maxDeciding int

	mu   sync.Mutex
	cond *sync.Cond
	// unread are taken on and not yet read; ready are read and first in
	// their lane, so they may be decided.
	unread []*job
	ready  []*job
	lanes  map[int64]*lane
	// held counts messages read (or being read) and not decided; open
	// counts messages taken on and not decided; done counts decisions.
	held, open, done int
	heldSize         int64
	// reading and deciding count the workers at it.
	reading, deciding int
	handled           int
	// stop: a store error or the end of ctx; nothing new is begun.
	// finished: dispatching ended, the workers may go.
	stop, finished bool
	err            error
}

// fail stops the scheduler with err (the first one is returned).
func (s *scheduler) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	s.stop = true
	s.cond.Broadcast()
}

// dispatch takes on pending messages as there is room, until none is left
// and every message taken on is decided, or the scheduler stops.
func (s *scheduler) dispatch(ctx context.Context) {
	var last int64 // the newest message taken on
	for {
		s.mu.Lock()
		for !s.stop && s.open >= pendingWindow {
			s.cond.Wait()
		}
		if s.stop {
			s.mu.Unlock()
			return
		}
		done := s.done
		s.mu.Unlock()
		kicks, _ := s.e.storedSignal()
		// The messages taken on are still pending and come first: what
		// follows them is as many more as there is room for.
		batch, err := s.e.o.Store.PendingInbound(ctx, pendingWindow)
		if err != nil {
			s.fail(fmt.Errorf("pending inbound: %w", err))
			return
		}
		fresh := 0
		for _, in := range batch {
			if in.ID <= last {
				continue
			}
			ln, err := s.e.laneOf(ctx, in)
			if err != nil {
				s.fail(fmt.Errorf("message %d stays pending: %w", in.ID, err))
				return
			}
			last = in.ID
			fresh++
			s.add(&job{in: in, lane: ln})
		}
		if fresh > 0 {
			continue
		}
		// Nothing new: wait until a decision ends or more mail is stored,
		// then look again; done when nothing is left.
		s.mu.Lock()
		if s.open == 0 {
			s.mu.Unlock()
			return
		}
		for !s.stop && s.done == done && s.kicks() == kicks {
			s.cond.Wait()
		}
		s.mu.Unlock()
	}
}

// kicks is how often KickInbound was called.
func (s *scheduler) kicks() uint64 {
	n, _ := s.e.storedSignal()
	return n
}

// watchKicks wakes the dispatcher when mail is stored (KickInbound), so
// that a short reply stored while medical files are being read and
// decided is taken on at once, not after the next decision ends. It
// returns a function that stops watching.
func (s *scheduler) watchKicks() (stop func()) {
	quit := make(chan struct{})
	go func() {
		last, _ := s.e.storedSignal()
		for {
			n, ch := s.e.storedSignal()
			if n != last {
				last = n
				s.mu.Lock()
				s.cond.Broadcast()
				s.mu.Unlock()
				continue
			}
			select {
			case <-ch:
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit) }
}

// add takes a message on.
func (s *scheduler) add(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lanes[j.lane]
	if l == nil {
		l = &lane{}
		s.lanes[j.lane] = l
	}
	if l.tail == nil {
		l.head = j
	} else {
		l.tail.next = j
	}
	l.tail = j
	s.unread = append(s.unread, j)
	s.open++
	s.cond.Signal()
}

// work decides what can be decided, else reads, until the scheduler is
// done.
func (s *scheduler) work(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.stop || s.finished {
			return
		}
		if j := s.nextReady(); j != nil {
			s.deciding++
			s.mu.Unlock()
			// A decision begun is finished, also when ctx ends.
			err := s.decide(context.WithoutCancel(ctx), j)
			s.mu.Lock()
			s.deciding--
			s.decided(j, err)
			continue
		}
		if j := s.nextUnread(); j != nil {
			s.held++
			s.heldSize += j.in.Size
			s.reading++
			s.mu.Unlock()
			r := s.e.read(ctx, j.in, true)
			s.mu.Lock()
			s.reading--
			j.r = r
			if l := s.lanes[j.lane]; l.head == j {
				s.ready = append(s.ready, j)
			}
			s.cond.Broadcast()
			continue
		}
		s.cond.Wait()
	}
}

// nextReady takes the oldest message that may be decided.
func (s *scheduler) nextReady() *job {
	if len(s.ready) == 0 || s.deciding >= s.maxDeciding {
		return nil
	}
	k := 0
	for i, j := range s.ready {
		if j.in.ID < s.ready[k].in.ID {
			k = i
		}
	}
	j := s.ready[k]
	s.ready = append(s.ready[:k], s.ready[k+1:]...)
	return j
}

// nextUnread takes the smallest unread message: a short reply is not kept
// waiting behind medical files. While too much is held read, nothing is
// read, unless nothing else can move: then the smallest message that is
// first in its lane, which is decided next and frees its memory.
func (s *scheduler) nextUnread() *job {
	full := s.held >= heldPerWorker*s.workers || s.heldSize >= heldBytes
	if full && (len(s.ready) > 0 || s.reading > 0 || s.deciding > 0) {
		return nil
	}
	k := -1
	for i, j := range s.unread {
		if full && s.lanes[j.lane].head != j {
			continue
		}
		if k < 0 || j.in.Size < s.unread[k].in.Size || j.in.Size == s.unread[k].in.Size && j.in.ID < s.unread[k].in.ID {
			k = i
		}
	}
	if k < 0 {
		return nil
	}
	j := s.unread[k]
	s.unread = append(s.unread[:k], s.unread[k+1:]...)
	return j
}

// decided ends a message's turn in its lane and hands the lane's next
// message on when it is read.
func (s *scheduler) decided(j *job, err error) {
	j.r.close()
	s.held--
	s.heldSize -= j.in.Size
	if err != nil {
		// The message stays pending, and so must the later messages of its
		// lane: they are not decided before it.
		if s.err == nil {
			s.err = err
		}
		s.stop = true
		s.cond.Broadcast()
		return
	}
	s.handled++
	s.open--
	s.done++
	l := s.lanes[j.lane]
	l.head = j.next
	if l.head == nil {
		delete(s.lanes, j.lane)
	} else if l.head.r != nil {
		s.ready = append(s.ready, l.head)
	}
	s.cond.Broadcast()
}

// decide decides one read message; a panic (a bug, never a message's
// fault) leaves the message pending rather than taking the daemon down.
func (s *scheduler) decide(ctx context.Context, j *job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("message %d stays pending: panic: %v", j.in.ID, p)
		}
	}()
	return s.e.decide(ctx, j.r)
}

// laneOf tells from a stored message's header which case it is for, as
// route would find it: 0 when it names none that can be told cheaply (a
// request, an invalid token, an unknown reference). Only a store error is
// returned.
func (e *Engine) laneOf(ctx context.Context, in store.Inbound) (int64, error) {
	if in.Oversize {
		return 0, nil
	}
	f, err := e.o.Store.OpenInbound(ctx, in)
	if err != nil {
		return 0, fmt.Errorf("inbound %d: %w", in.ID, err)
	}
	hdr, ok := headerBlock(f, parseLimits.MaxHeaderBytes)
	f.Close()
	if !ok {
		return 0, nil
	}
	m, _ := message.Parse(bytes.NewReader(hdr), parseLimits)
	if m == nil {
		return 0, nil
	}
	id, ref := e.caseNamed(m)
	if id != 0 || ref == "" {
		return id, nil
	}
	c, err := e.o.Store.CaseByRef(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	return c.ID, nil
}

// caseNamed is route's search for the case, without the store: the case
// id of the first reply token (0 if it is invalid), else the reference of
// our own Message-ID in the thread, else the reference in the subject.
func (e *Engine) caseNamed(m *message.Message) (id int64, ref string) {
	if claims, _, found, err := e.replyToken(m); found {
		if err != nil {
			return 0, ""
		}
		return claims.CaseID, ""
	}
	for _, mid := range append(append([]string{}, m.InReplyTo...), m.References...) {
		if r, ok := e.ours(mid); ok {
			return 0, r
		}
	}
	return 0, message.CaseRef(m.Subject)
}

// headerBlock reads a message's header: up to and with the empty line
// that ends it, or up to a line that is not a field, which ends it too
// (message.Parse reads hand-made mail that way). ok is false when it is
// longer than max.
func headerBlock(r io.Reader, max int64) (hdr []byte, ok bool) {
	br := bufio.NewReaderSize(r, 16<<10)
	first := true
	for {
		var line []byte
		for {
			frag, err := br.ReadSlice('\n')
			line = append(line, frag...)
			if int64(len(hdr)+len(line)) > max {
				return nil, false
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && len(line) == 0 {
				return hdr, true // a message that is all header
			}
			break
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(trimmed) == 0:
			return append(hdr, line...), true
		case trimmed[0] == ' ' || trimmed[0] == '\t' || isField(trimmed) || first && bytes.HasPrefix(trimmed, []byte("From ")):
			hdr = append(hdr, line...)
			first = false
		default:
			return hdr, true
		}
	}
}

// isField: the line starts with a field name and a colon (RFC 5322 2.2;
// white space before the colon as in the obsolete syntax, 4.5).
func isField(line []byte) bool {
	name := 0
	for name < len(line) && line[name] >= 33 && line[name] <= 126 && line[name] != ':' {
		name++
	}
	if name == 0 {
		return false
	}
	rest := bytes.TrimLeft(line[name:], " \t")
	return len(rest) > 0 && rest[0] == ':'
}
