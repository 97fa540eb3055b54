// Package e2e runs the daemon end to end: the whole procedure of DESIGN.md
// by mail, through a real Dovecot (the daemon's IMAP mailbox), a real
// Postfix (every mail, both ways) and the real GnuPG (a physician's mail
// client), with the participants played by internal/rig. Its tests assert
// what the people involved would notice: who received which mail, that
// medical content travelled only PGP-encrypted (RFC 3156) and only to the
// right physician (NTA 7516: no plaintext fallback), that the employer
// heard exactly what the employee consented to (step 9), and that the
// audit chain verifies.
//
// The one non-test file holds Maildirs, the participants' view of their
// mail on a real server: Postfix's maildirs, read directly.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Maildirs reads the maildirs Postfix delivers into (BASE/<mailbox>/new and
// cur) and implements rig.Mailboxes for the addresses it is given. One
// goroutine scans every mailbox a few times a second; a message is read
// once, when it first appears, and kept in order of arrival.
type Maildirs struct {
	base  string
	boxes map[string]string // lower-case address → mailbox

	mu      sync.Mutex
	msgs    map[string][][]byte // mailbox → messages, oldest first
	known   map[string]bool     // mailbox + "/" + unique name
	changed chan struct{}       // closed and replaced on every arrival
	stop    chan struct{}
	done    chan struct{}
}

// OpenMaildirs starts watching the maildirs under base of the given
// addresses (address → mailbox name). Close stops it.
func OpenMaildirs(base string, boxes map[string]string, poll time.Duration) *Maildirs {
	if poll <= 0 {
		poll = 20 * time.Millisecond
	}
	m := &Maildirs{base: base, boxes: map[string]string{}, msgs: map[string][][]byte{}, known: map[string]bool{},
		changed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	for a, b := range boxes {
		m.boxes[strings.ToLower(a)] = b
	}
	go m.run(poll)
	return m
}

// Close stops the scanning.
func (m *Maildirs) Close() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

func (m *Maildirs) run(poll time.Duration) {
	defer close(m.done)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		m.scan()
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
	}
}

// scan picks up messages that appeared since the last scan. A message that
// Dovecot renames from new/ to cur/ meanwhile keeps its unique name (the
// part before ':'), so it is read once.
func (m *Maildirs) scan() {
	seen := map[string]bool{}
	arrived := false
	for _, box := range m.boxes {
		if seen[box] {
			continue
		}
		seen[box] = true
		type file struct{ unique, path string }
		var files []file
		for _, sub := range []string{"new", "cur"} {
			des, err := os.ReadDir(filepath.Join(m.base, box, sub))
			if err != nil {
				continue
			}
			for _, de := range des {
				u, _, _ := strings.Cut(de.Name(), ":")
				m.mu.Lock()
				k := m.known[box+"/"+u]
				m.mu.Unlock()
				if !k && de.Type().IsRegular() {
					files = append(files, file{u, filepath.Join(m.base, box, sub, de.Name())})
				}
			}
		}
		sort.Slice(files, func(i, j int) bool { return files[i].unique < files[j].unique })
		for _, f := range files {
			b, err := os.ReadFile(f.path)
			if err != nil {
				continue // renamed meanwhile: the next scan finds it
			}
			m.mu.Lock()
			if !m.known[box+"/"+f.unique] {
				m.known[box+"/"+f.unique] = true
				m.msgs[box] = append(m.msgs[box], b)
				arrived = true
			}
			m.mu.Unlock()
		}
	}
	if arrived {
		m.mu.Lock()
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
}

// ErrUnknownAddress is returned for an address without a mailbox.
var ErrUnknownAddress = errors.New("no mailbox for this address")

func (m *Maildirs) box(addr string) (string, bool) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if i, j := strings.IndexByte(addr, '+'), strings.LastIndexByte(addr, '@'); i > 0 && j > i {
		addr = addr[:i] + addr[j:]
	}
	b, ok := m.boxes[addr]
	return b, ok
}

// WaitFor implements rig.Mailboxes: the first message to addr, delivered
// or still to come, that pred accepts.
func (m *Maildirs) WaitFor(ctx context.Context, addr string, pred func(raw []byte) bool) ([]byte, error) {
	box, ok := m.box(addr)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAddress, addr)
	}
	next := 0
	for {
		m.mu.Lock()
		fresh := m.msgs[box][next:]
		next = len(m.msgs[box])
		ch := m.changed
		m.mu.Unlock()
		for _, raw := range fresh {
			if pred == nil || pred(raw) {
				return raw, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.done:
			return nil, errors.New("maildirs closed")
		case <-ch:
		}
	}
}

// Count implements rig.Mailboxes.
func (m *Maildirs) Count(addr string) int { return len(m.Messages(addr)) }

// Messages returns every message delivered to addr so far, oldest first.
func (m *Maildirs) Messages(addr string) [][]byte {
	box, ok := m.box(addr)
	if !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.msgs[box]...)
}
