package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"mime"
	"net/textproto"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Mail is one message as the SMTP server accepted it, as far as the
// participants and the measurements need it.
type Mail struct {
	From      string   // envelope sender
	To        []string // envelope recipients, with any +tag
	Raw       []byte   // dropped once a participant has taken the mail
	Subject   string   // decoded
	MessageID string
	ReplyTo   string
	Ref       string // case reference, SO-2026-0042; "" for a new request
	At        time.Time
	taken     bool
	// pgpMIME: the top-level Content-Type is multipart/encrypted with
	// protocol application/pgp-encrypted (RFC 3156), as a mail client
	// tells before it offers to decrypt.
	pgpMIME bool
}

// Postbox sees every mail the SMTP server accepts (its Accept is the mail
// world's OnAccept), hands mail to the participants waiting for it, and
// records when each mail was accepted (the reaction times are measured
// from it) and how often each of the daemon's Message-IDs arrived (a
// duplicate is a message sent twice).
//
// It indexes by mailbox and case, so a participant waiting for one case's
// mail does not scan every other case's.
type Postbox struct {
	service string // the service's mailbox, local@domain
	domain  string

	mu      sync.Mutex
	changed chan struct{}
	boxes   map[string]map[string][]*Mail // mailbox -> ref -> mail
	// accepted is when each participant's mail to the service was
	// accepted, by Message-ID.
	accepted map[string]time.Time
	ids      map[string]int // the daemon's Message-IDs, by arrivals
	inbound  int            // participants' mails to the service
	outbound int            // the daemon's mails, with duplicates
	filed    int            // the daemon's copies to itself
	bytesIn  int64
	bytesOut int64
	// bytesFiled are the daemon's copies to itself.
	bytesFiled int64
}

// NewPostbox returns a postbox for the service address (local@domain).
func NewPostbox(service string) *Postbox {
	service = strings.ToLower(service)
	_, domain, _ := strings.Cut(service, "@")
	return &Postbox{service: service, domain: domain, changed: make(chan struct{}),
		boxes: map[string]map[string][]*Mail{}, accepted: map[string]time.Time{}, ids: map[string]int{}}
}

var refRE = regexp.MustCompile(`\[(SO-\d{4}-\d{4,6})\]`)

// mailbox strips a +tag and lower-cases.
func mailbox(addr string) string {
	addr = strings.ToLower(strings.TrimSpace(addr))
	local, domain, ok := strings.Cut(addr, "@")
	if !ok {
		return addr
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return local + "@" + domain
}

// Accept records one accepted mail; it has the mail world's OnAccept
// signature.
func (p *Postbox) Accept(from string, to []string, raw []byte) {
	now := time.Now()
	m := &Mail{From: strings.ToLower(from), To: to, Raw: raw, At: now}
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
	dec := new(mime.WordDecoder)
	m.Subject = h.Get("Subject")
	if s, err := dec.DecodeHeader(m.Subject); err == nil {
		m.Subject = s
	}
	m.MessageID = strings.TrimSpace(h.Get("Message-Id"))
	m.ReplyTo = h.Get("Reply-To")
	if mt, params, err := mime.ParseMediaType(h.Get("Content-Type")); err == nil {
		m.pgpMIME = mt == "multipart/encrypted" && strings.EqualFold(params["protocol"], "application/pgp-encrypted")
	}
	m.Ref = strings.TrimSpace(h.Get("X-Secondopinion-Case"))
	if m.Ref == "" {
		if mm := refRE.FindStringSubmatch(m.Subject); mm != nil {
			m.Ref = mm[1]
		}
	}
	toService, toOthers := false, false
	for _, t := range to {
		if mailbox(t) == p.service {
			toService = true
		} else {
			toOthers = true
		}
	}
	fromService := strings.HasSuffix(m.From, "@"+p.domain)

	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case fromService:
		if toService {
			// The copy of its own mail the daemon has filed (to svc+sent@,
			// which the mail world stores in that folder), in the same
			// transaction: neither a participant's mail nor a second sending.
			p.filed++
			p.bytesFiled += int64(len(raw))
		}
		if toOthers {
			p.outbound++
			p.bytesOut += int64(len(raw))
			p.ids[m.MessageID]++
		}
	case toService:
		p.inbound++
		p.bytesIn += int64(len(raw))
		p.accepted[m.MessageID] = now
	}
	if !toOthers {
		m.Raw = nil // the daemon reads its own mail; nobody waits for it here
	}
	for _, t := range to {
		box := mailbox(t)
		if box == p.service {
			continue
		}
		refs := p.boxes[box]
		if refs == nil {
			refs = map[string][]*Mail{}
			p.boxes[box] = refs
		}
		refs[m.Ref] = append(refs[m.Ref], m)
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// Wait returns the first mail to addr in case ref ("": any case) whose
// subject contains one of words (case-insensitive; none: any subject) and
// that nobody took yet, waiting for it if needed; the mail is taken.
func (p *Postbox) Wait(ctx context.Context, addr, ref string, words ...string) (*Mail, error) {
	box := mailbox(addr)
	for {
		p.mu.Lock()
		if m := p.findLocked(box, ref, words); m != nil {
			m.taken = true
			p.mu.Unlock()
			return m, nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s waited for %s mail (%s): %w", addr, ref, strings.Join(words, "|"), ctx.Err())
		case <-ch:
		}
	}
}

func (p *Postbox) findLocked(box, ref string, words []string) *Mail {
	refs := p.boxes[box]
	var lists [][]*Mail
	if ref != "" {
		lists = [][]*Mail{refs[ref]}
	} else {
		for _, l := range refs {
			lists = append(lists, l)
		}
	}
	var best *Mail
	for _, l := range lists {
		for _, m := range l {
			if m.taken || !matches(m.Subject, words) {
				continue
			}
			if best == nil || m.At.Before(best.At) {
				best = m
			}
			break
		}
	}
	return best
}

func matches(subject string, words []string) bool {
	if len(words) == 0 {
		return true
	}
	s := strings.ToLower(subject)
	for _, w := range words {
		if strings.Contains(s, strings.ToLower(w)) {
			return true
		}
	}
	return false
}

// Release drops a taken mail's bytes (large attachments need not stay).
func (p *Postbox) Release(m *Mail) {
	p.mu.Lock()
	m.Raw = nil
	p.mu.Unlock()
}

// Count returns how many mails reached addr's mailbox in case ref (""
// counts every case).
func (p *Postbox) Count(addr, ref string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for r, l := range p.boxes[mailbox(addr)] {
		if ref == "" || r == ref {
			n += len(l)
		}
	}
	return n
}

// Traffic is what crossed the SMTP server.
type Traffic struct {
	// Inbound are the participants' mails to the service.
	Inbound int
	// Outbound are the daemon's mails as received, Distinct of them by
	// Message-ID; Duplicates = Outbound - Distinct.
	Outbound, Distinct, Duplicates int
	// DuplicateIDs lists the Message-IDs received more than once.
	DuplicateIDs []string
	// Filed are the daemon's mails with a copy to itself (copies it files by
	// sending them to its own +sent address); not counted as Outbound.
	Filed                         int
	BytesIn, BytesOut, BytesFiled int64
	// PerCase counts the distinct daemon mails per case reference.
	PerCase map[string]int
}

// Traffic sums up what was accepted so far.
func (p *Postbox) Traffic() Traffic {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := Traffic{Inbound: p.inbound, Outbound: p.outbound, Distinct: len(p.ids), Filed: p.filed,
		BytesIn: p.bytesIn, BytesOut: p.bytesOut, BytesFiled: p.bytesFiled, PerCase: map[string]int{}}
	t.Duplicates = t.Outbound - t.Distinct
	for id, n := range p.ids {
		if n > 1 {
			t.DuplicateIDs = append(t.DuplicateIDs, id)
		}
	}
	sort.Strings(t.DuplicateIDs)
	seen := map[string]bool{}
	for _, refs := range p.boxes {
		for ref, l := range refs {
			for _, m := range l {
				if ref == "" || !strings.HasSuffix(m.From, "@"+p.domain) || seen[m.MessageID] {
					continue
				}
				seen[m.MessageID] = true
				t.PerCase[ref]++
			}
		}
	}
	return t
}

// AcceptedAt is when the participant's mail with Message-ID id was
// accepted by the SMTP server.
func (p *Postbox) AcceptedAt(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.accepted[id]
	return t, ok
}
