// Package demo runs the whole second-opinion procedure on the embedded
// default, with nothing configured: in-process IMAP and SMTP servers
// (internal/mailworld) route mail between the service and the
// participants' mailboxes, the store lives in the output directory, keys
// are generated fresh, and scripted participants answer as people do —
// from a phone, with quoted history and signatures, one of them forgetting
// to choose until the reminder comes. The clock runs fast: a procedure of
// two weeks takes a few seconds.
package demo

import (
	"sync"
	"time"
)

// clock is the demo's fast clock: it stands still until the script moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t (never backwards).
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

// The demo's people and organisations.
const (
	domainService = "secondopinion.example"
	addrService   = "so@" + domainService
	addrBackoff   = "backoffice@" + domainService
	addrEmployee  = "sahin.yilmaz@mail.example"
	addrEmployee2 = "l.kowalski@mail.example"
	addrEmployer  = "hr@acme.example"
	addrOriginal  = "a.devries@arbo-noord.example"
	addrBakker    = "b.bakker@arbo-zuid.example"
	addrJansen    = "c.jansen@arbo-west.example"
	addrVisser    = "d.visser@arbo-noord.example"
	addrSmit      = "e.smit@arbo-oost.example"
)
