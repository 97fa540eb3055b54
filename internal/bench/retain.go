package bench

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"secondopinion/internal/mailworld"
	"secondopinion/internal/rig"
)

// retainEvery is how often the retention runs over the embedded servers'
// copy of the service's mailbox.
const retainEvery = 250 * time.Millisecond

// retention expunges from the embedded IMAP server the service's mail the
// daemon is done with, as a mailbox's retention would: in the inbox the
// mail it has handled (flagged \Seen), and in the sent-copy folder the
// copies filed before the previous round (the daemon looks a copy up only
// when it does not know whether a mail left: after a crash, or a reply to
// the end of the data that never came; in a run without either, no copy
// is read). Without it the world held every mail of the run in the
// daemon's process, and each allocation of the run faulted in fresh
// memory.
type retention struct {
	w       *mailworld.World
	service string
	stop    context.CancelFunc
	done    chan struct{}

	mu   sync.Mutex
	held int64 // the most the world held at a round, in bytes
	err  error // the first failed expunge
}

// startRetention runs the retention until stop.
func startRetention(ctx context.Context, w *mailworld.World, service string) *retention {
	ctx, cancel := context.WithCancel(ctx)
	r := &retention{w: w, service: service, stop: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r
}

func (r *retention) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(retainEvery)
	defer t.Stop()
	copies := 0 // sent copies filed before the previous round
	seen := &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		held := r.w.Held(r.service)
		_, err1 := r.w.Expunge(r.service, "INBOX", len(r.w.Inbox(r.service)), seen)
		_, err2 := r.w.Expunge(r.service, rig.SentCopyMailbox, copies, nil)
		copies = len(r.w.Folder(r.service, rig.SentCopyMailbox))
		r.mu.Lock()
		r.held = max(r.held, held)
		if r.err == nil {
			r.err = errors.Join(err1, err2)
		}
		r.mu.Unlock()
	}
}

// Stop ends the retention and returns the most the world held at a round
// and the first error.
func (r *retention) Stop() (held int64, err error) {
	r.stop()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held, r.err
}
