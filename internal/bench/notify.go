package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// notifyProbe measures a given IMAP server's own notification delay while
// the bench runs: from a small message stored in the probe folder (by the
// server's delivery agent, IMAPServer.Deliver, or by APPEND) to the EXISTS
// the server pushes to a client in IDLE. It is the part of every reaction through
// that server that the daemon cannot change (Dovecot, for one, waits
// 0.5 s after a change to a mailbox before it looks).
type notifyProbe struct {
	srv *IMAPServer
	app *appender // delivery without an agent
	// exists is the message count the server last reported; changed
	// wakes the prober when it does.
	exists  atomic.Uint32
	changed chan struct{}

	// samples and err are the prober's; read them after done is closed.
	samples []time.Duration
	err     error
	done    chan struct{}
}

// startNotifyProbe logs in to the service's mailbox, selects the probe
// folder, enters IDLE and starts delivering and timing.
func startNotifyProbe(ctx context.Context, srv *IMAPServer) (*notifyProbe, error) {
	p := &notifyProbe{srv: srv, app: newAppender(srv), changed: make(chan struct{}, 1), done: make(chan struct{})}
	c, err := srv.login(&imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					p.exists.Store(*d.NumMessages)
					select {
					case p.changed <- struct{}{}:
					default: // a wake-up is pending already
					}
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("notify probe: %w", err)
	}
	sel, err := c.Select(ProbeFolder, nil).Wait()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("notify probe: select: %w", err)
	}
	p.exists.Store(sel.NumMessages)
	idle, err := c.Idle()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("notify probe: idle: %w", err)
	}
	go func() {
		defer close(p.done)
		err := p.run(ctx)
		_ = idle.Close()
		_ = idle.Wait()
		c.Close()
		p.app.close()
		if ctx.Err() == nil {
			p.err = err
		}
	}()
	return p, nil
}

// run delivers one message at a time and waits for the server to report
// it, until ctx ends. The pause of 600–900 ms between samples lets a
// server that gathers changes for a while (Dovecot: 0.5 s) start afresh
// for each: a sample is the delay of one new message in a quiet mailbox.
func (p *notifyProbe) run(ctx context.Context) error {
	for n := 1; ; n++ {
		msg := fmt.Appendf(nil, "From: bench <bench@probe.invalid>\r\nTo: %s\r\nSubject: notification probe %d\r\n"+
			"Message-ID: <probe.%d.%d@probe.invalid>\r\n\r\nprobe\r\n", p.srv.user(), n, time.Now().UnixNano(), n)
		want := p.exists.Load() + 1
		if err := p.srv.deliver(p.app, ProbeFolder, bytes.NewReader(msg)); err != nil {
			return fmt.Errorf("notify probe: deliver: %w", err)
		}
		stored := time.Now()
		timeout := time.NewTimer(10 * time.Second)
		for p.exists.Load() < want {
			select {
			case <-ctx.Done():
				timeout.Stop()
				return nil
			case <-timeout.C:
				return fmt.Errorf("notify probe: message %d not reported within 10 s", n)
			case <-p.changed:
			}
		}
		timeout.Stop()
		p.samples = append(p.samples, time.Since(stored))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(600+rand.IntN(300)) * time.Millisecond):
		}
	}
}

// stop waits for the probe to end (its ctx must be done) and returns the
// delays it measured.
func (p *notifyProbe) stop() ([]time.Duration, error) {
	<-p.done
	return p.samples, p.err
}
