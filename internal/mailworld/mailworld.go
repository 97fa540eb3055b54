// Package mailworld is an in-process mail world for the demo and for fast
// end-to-end tests: an SMTP server (RFC 5321) that accepts mail for the
// configured domains and delivers it into an in-memory IMAP server
// (RFC 9051), one IMAP user per address, the way Postfix delivers into the
// maildirs Dovecot serves in production.
//
// Plus-addressing (local+detail@domain, as Postfix's recipient_delimiter = +)
// delivers to local@domain; the reply-address tokens the daemon puts after
// the '+' arrive intact in the message and in Delivered.To. As Dovecot does
// with lmtp_save_to_detail_mailbox = yes, the message goes into the user's
// IMAP folder named exactly like the detail when that folder exists (so a
// daemon that created "sent" can file copies by sending to svc+sent@…),
// and into INBOX otherwise. An unknown recipient in an accepted domain is
// refused with 550 5.1.1 and a foreign domain with 554 5.7.1, as a real MTA
// without relaying would. Mail for a relay domain (Options.Relay) is
// accepted for any local part and stored nowhere: it only reaches OnAccept,
// as mail a real MTA relays leaves it for another server.
//
// Scripted participants and assertions read what was delivered with Inbox,
// Folder and WaitFor; WaitFor is woken by each delivery, never by a timer.
//
// The world is a test fixture that carries megabyte attachments at bench
// rates, so a message is read once into a buffer of its final size (the
// MAIL FROM SIZE= parameter, RFC 1870, sizes it up front) that holds the
// first recipient's trace headers too; the delivery record and OnAccept
// share those bytes. go-imap's memory server copies what is appended (into
// a buffer grown by doubling: its Append does not use the literal's size),
// so each message is held twice: the delivery record and the IMAP store.
package mailworld

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Hostname is the name the world's servers give themselves.
const Hostname = "mx.mailworld.test"

// DefaultMaxMessageBytes is the default SMTP size limit.
const DefaultMaxMessageBytes = 64 << 20

// Options configures a World. The zero value is usable.
type Options struct {
	// Domains are accepted for delivery besides the domains of the users
	// added with AddUser.
	Domains []string
	// Relay are domains whose mail the world accepts for any address and
	// stores in no mailbox (unless the address is a user's): it reaches
	// OnAccept and nothing else, as mail a real MTA relays to other
	// servers. A load generator that takes its participants' mail from
	// OnAccept relays their domains, so the world holds in memory only the
	// mail an IMAP client (the daemon) reads.
	Relay []string
	// SMTPListen is the SMTP server's listen address; default
	// 127.0.0.1:0 (an ephemeral port). A fixed one is for a given relay
	// that forwards mail to the world.
	SMTPListen string
	// MaxMessageBytes is the SMTP size limit; default DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// OnAccept, if set, is called once per accepted message, after it has
	// been delivered into every recipient's IMAP folder and before the SMTP
	// client gets its 250. raw is the message as the client sent it (without
	// the trace headers added on delivery); it shares memory with the
	// delivery record, so it must not be modified. from is the envelope
	// sender, to the accepted envelope recipients as given (with any +tag).
	OnAccept func(from string, to []string, raw []byte)
	// Now stamps deliveries (Received header, IMAP INTERNALDATE); default
	// time.Now. The demo passes its clock.
	Now func() time.Time
	// Logger gets one line per accepted message; default: discard.
	Logger *slog.Logger
}

// Delivered is one message as delivered to one mailbox.
type Delivered struct {
	// From is the envelope sender (MAIL FROM), "" for a bounce.
	From string
	// To is the envelope recipient as given, with any +tag.
	To string
	// Mailbox is the address of the mailbox it went to (To without the tag).
	Mailbox string
	// Folder is the IMAP folder it was stored in: "INBOX", or the folder
	// named by To's +detail when the user has one.
	Folder string
	// Raw is the message exactly as stored in the IMAP folder: the client's
	// bytes with Return-Path, Delivered-To and Received prepended. It may
	// share memory with other records and must not be modified.
	Raw []byte
	// At is when it was delivered.
	At time.Time

	uid imap.UID // in Folder
}

// ErrUnknownUser is returned for an address that has no mailbox.
var ErrUnknownUser = errors.New("mailworld: no such user")

// ErrClosed is returned by WaitFor when the world is closed.
var ErrClosed = errors.New("mailworld: closed")

// World is a running mail world. Its methods are safe for concurrent use.
type World struct {
	opts Options
	log  *slog.Logger

	imapMem *imapmemserver.Server
	imapSrv *imapserver.Server
	smtpSrv *smtp.Server
	imapLn  net.Listener
	smtpLn  net.Listener

	clientTLS *tls.Config

	seq atomic.Uint64

	mu      sync.Mutex
	domains map[string]bool
	relay   map[string]bool
	users   map[string]*user // by lower-case address
	changed chan struct{}    // closed and replaced on every delivery
	closed  bool
	done    chan struct{}
}

type user struct {
	address  string
	password string
	imap     *imapmemserver.User
	inbox    []Delivered
	folders  map[string][]Delivered // deliveries into folders other than INBOX
}

// New starts the SMTP and IMAP servers on 127.0.0.1 (ephemeral ports,
// unless Options.SMTPListen names one).
func New(opts *Options) (*World, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &World{
		opts:    o,
		log:     o.Logger,
		imapMem: imapmemserver.New(),
		domains: map[string]bool{},
		relay:   map[string]bool{},
		users:   map[string]*user{},
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, d := range o.Domains {
		w.domains[strings.ToLower(d)] = true
	}
	for _, d := range o.Relay {
		w.relay[strings.ToLower(d)] = true
	}

	serverTLS, clientTLS, err := SelfSignedTLS(o.Now())
	if err != nil {
		return nil, fmt.Errorf("mailworld: certificate: %w", err)
	}
	w.clientTLS = clientTLS
	if w.imapLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("mailworld: imap listener: %w", err)
	}
	if o.SMTPListen == "" {
		o.SMTPListen = "127.0.0.1:0"
	}
	if w.smtpLn, err = net.Listen("tcp", o.SMTPListen); err != nil {
		w.imapLn.Close()
		return nil, fmt.Errorf("mailworld: smtp listener: %w", err)
	}

	w.imapSrv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return idleSession{w.imapMem.NewSession().(imapserver.SessionIMAP4rev2)}, nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
			imap.CapMove: {}, imap.CapUIDPlus: {}, imap.CapNamespace: {},
		},
		InsecureAuth: true, // loopback only
		TLSConfig:    serverTLS,
		Logger:       slogPrintf{w.log},
	})
	w.smtpSrv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{w: w, helo: c.Hostname(), conn: peerOf(c.Conn())}, nil
	}))
	w.smtpSrv.Domain = Hostname
	w.smtpSrv.MaxMessageBytes = o.MaxMessageBytes
	w.smtpSrv.MaxRecipients = 100
	w.smtpSrv.AllowInsecureAuth = true // loopback only
	w.smtpSrv.ReadTimeout = time.Minute
	w.smtpSrv.WriteTimeout = time.Minute
	w.smtpSrv.EnableSMTPUTF8 = true
	w.smtpSrv.TLSConfig = serverTLS
	w.smtpSrv.ErrorLog = slogPrintf{w.log}

	go w.imapSrv.Serve(w.imapLn)
	go w.smtpSrv.Serve(peerListener{w.smtpLn})
	return w, nil
}

// peerListener hands out connections that note when the client closed its
// side (see session.Data).
type peerListener struct{ net.Listener }

func (l peerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &peerConn{Conn: c}, nil
}

// peerConn notes that a read reached the end of the client's stream.
type peerConn struct {
	net.Conn
	ended atomic.Bool
}

func (c *peerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		c.ended.Store(true)
	}
	return n, err
}

// peerOf finds the peerConn under c (below TLS, after STARTTLS).
func peerOf(c net.Conn) *peerConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	pc, _ := c.(*peerConn)
	return pc
}

// slogPrintf adapts the servers' Printf loggers to slog.
type slogPrintf struct{ l *slog.Logger }

func (s slogPrintf) Printf(format string, args ...any) {
	s.l.Debug("mailworld server", "msg", fmt.Sprintf(format, args...))
}

func (s slogPrintf) Println(args ...any) {
	s.l.Debug("mailworld server", "msg", strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
}

// SMTPAddr is the SMTP server's host:port.
func (w *World) SMTPAddr() string { return w.smtpLn.Addr().String() }

// IMAPAddr is the IMAP server's host:port (plain text; log in with the
// address and password given to AddUser).
func (w *World) IMAPAddr() string { return w.imapLn.Addr().String() }

// ClientTLSConfig returns a TLS client config that trusts the world's
// self-signed certificate, for STARTTLS on either server (both also work
// without TLS).
func (w *World) ClientTLSConfig() *tls.Config { return w.clientTLS.Clone() }

// Close stops both servers and wakes every WaitFor with ErrClosed.
func (w *World) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.done)
	w.mu.Unlock()
	err := errors.Join(w.smtpSrv.Close(), w.imapSrv.Close())
	if err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("mailworld: close: %w", err)
	}
	return nil
}

// AddUser creates a mailbox for address (an IMAP user of that name with an
// empty INBOX) and accepts mail for its domain.
func (w *World) AddUser(address, password string) error {
	local, domain, ok := splitAddress(address)
	if !ok || strings.Contains(local, "+") {
		return fmt.Errorf("mailworld: add user %q: not a plain local@domain address", address)
	}
	key := local + "@" + domain
	u := imapmemserver.NewUser(address, password)
	if err := u.Create("INBOX", nil); err != nil {
		return fmt.Errorf("mailworld: add user %q: %w", address, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.users[key]; ok {
		return fmt.Errorf("mailworld: add user %q: exists", address)
	}
	w.users[key] = &user{address: address, password: password, imap: u}
	w.domains[domain] = true
	w.imapMem.AddUser(u)
	return nil
}

// Inbox returns every message delivered into address's INBOX so far,
// oldest first (a +tag in address is ignored). It is the delivery record:
// what the daemon later moves or flags over IMAP stays in it.
func (w *World) Inbox(address string) []Delivered {
	return w.Folder(address, inbox)
}

// Folder returns every message delivered into address's IMAP folder name
// so far, oldest first: mail to address's local+name@domain while the
// folder existed (name is case-sensitive, except INBOX). Like Inbox, it is
// the delivery record, not the folder's current content.
func (w *World) Folder(address, name string) []Delivered {
	if strings.EqualFold(name, inbox) {
		name = inbox
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	u := w.lookupLocked(address)
	if u == nil {
		return nil
	}
	if name == inbox {
		return slices.Clone(u.inbox)
	}
	return slices.Clone(u.folders[name])
}

// WaitFor returns the first message in address's INBOX, already delivered
// or arriving later, for which pred is true (nil pred: any). It returns
// ctx's error when ctx ends first, ErrClosed when the world closes, and
// ErrUnknownUser for an address without a mailbox.
func (w *World) WaitFor(ctx context.Context, address string, pred func(Delivered) bool) (Delivered, error) {
	seen := 0
	for {
		w.mu.Lock()
		u := w.lookupLocked(address)
		if u == nil {
			w.mu.Unlock()
			return Delivered{}, fmt.Errorf("%w: %s", ErrUnknownUser, address)
		}
		fresh := slices.Clone(u.inbox[seen:]) // Expunge may change them
		seen = len(u.inbox)
		ch := w.changed
		w.mu.Unlock()

		for _, d := range fresh {
			if pred == nil || pred(d) {
				return d, nil
			}
		}
		select {
		case <-ctx.Done():
			return Delivered{}, ctx.Err()
		case <-w.done:
			return Delivered{}, ErrClosed
		case <-ch:
		}
	}
}

// Expunge removes from address's IMAP folder those of the first n
// messages delivered into it (oldest first, as Folder lists them) that
// match criteria (nil: all of them), as another IMAP client's UID STORE
// +FLAGS (\Deleted) and UID EXPUNGE would: a client that has the folder
// selected is told. The delivery records of the removed messages stay,
// without their bytes (Raw is nil). It returns how many messages it
// removed. A load generator calls it as a mailbox's retention would, so
// that the world holds only the mail still in use.
func (w *World) Expunge(address, folder string, n int, criteria *imap.SearchCriteria) (int, error) {
	if strings.EqualFold(folder, inbox) {
		folder = inbox
	}
	w.mu.Lock()
	u := w.lookupLocked(address)
	var uids imap.UIDSet
	if u != nil {
		records := w.recordsLocked(u, folder)
		for _, d := range records[:min(n, len(records))] {
			if d.uid != 0 && d.Raw != nil {
				uids.AddNum(d.uid)
			}
		}
	}
	w.mu.Unlock()
	if u == nil {
		return 0, fmt.Errorf("%w: %s", ErrUnknownUser, address)
	}
	if len(uids) == 0 {
		return 0, nil
	}
	var c imap.SearchCriteria
	if criteria != nil {
		c = *criteria
	}
	c.UID = append(slices.Clone(c.UID), uids)
	sess := imapmemserver.NewUserSession(u.imap)
	defer sess.Close()
	if _, err := sess.Select(folder, nil); err != nil {
		return 0, fmt.Errorf("mailworld: expunge %s of %s: %w", folder, address, err)
	}
	found, err := sess.Search(imapserver.NumKindUID, &c, &imap.SearchOptions{ReturnAll: true})
	if err != nil {
		return 0, fmt.Errorf("mailworld: expunge %s of %s: %w", folder, address, err)
	}
	gone, _ := found.All.(imap.UIDSet)
	if len(gone) == 0 {
		return 0, nil
	}
	deleted := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := sess.Store(nil, gone, deleted, nil); err != nil {
		return 0, fmt.Errorf("mailworld: expunge %s of %s: %w", folder, address, err)
	}
	if err := sess.Expunge(nil, &gone); err != nil {
		return 0, fmt.Errorf("mailworld: expunge %s of %s: %w", folder, address, err)
	}
	removed := 0
	w.mu.Lock()
	records := w.recordsLocked(u, folder)
	for i, d := range records {
		if d.Raw != nil && gone.Contains(d.uid) {
			records[i].Raw = nil
			removed++
		}
	}
	w.mu.Unlock()
	return removed, nil
}

// Held returns the bytes of the mail address's mailbox holds now, in every
// folder (Expunge lets go of them). The world keeps each message twice: in
// the IMAP store and in the delivery record; Held counts it once.
func (w *World) Held(address string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	u := w.lookupLocked(address)
	if u == nil {
		return 0
	}
	var n int64
	count := func(ds []Delivered) {
		for _, d := range ds {
			n += int64(len(d.Raw))
		}
	}
	count(u.inbox)
	for _, ds := range u.folders {
		count(ds)
	}
	return n
}

// recordsLocked is u's delivery record for folder.
func (w *World) recordsLocked(u *user, folder string) []Delivered {
	if folder == inbox {
		return u.inbox
	}
	return u.folders[folder]
}

// lookupLocked finds the mailbox for address, ignoring a +tag and case.
func (w *World) lookupLocked(address string) *user {
	local, domain, ok := splitAddress(address)
	if !ok {
		return nil
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return w.users[local+"@"+domain]
}

// splitAddress splits local@domain and lower-cases both parts (the world
// treats local parts case-insensitively, as most providers do).
func splitAddress(address string) (local, domain string, ok bool) {
	address = strings.TrimSpace(address)
	i := strings.LastIndexByte(address, '@')
	if i <= 0 || i == len(address)-1 {
		return "", "", false
	}
	return strings.ToLower(address[:i]), strings.ToLower(address[i+1:]), true
}

// inbox is the IMAP name of the folder every user has.
const inbox = "INBOX"

// detail returns the part of address's local part after the first '+'
// (Postfix's recipient_delimiter), case preserved: "" for none.
func detail(address string) string {
	address = strings.TrimSpace(address)
	at := strings.LastIndexByte(address, '@')
	if at <= 0 {
		return ""
	}
	local := address[:at]
	if i := strings.IndexByte(local, '+'); i > 0 {
		return local[i+1:]
	}
	return ""
}

// traceHeader is what delivery prepends for one recipient, as Postfix's
// local delivery does: Return-Path, Delivered-To and Received.
func traceHeader(from, helo, rcpt, id string, now time.Time) []byte {
	return fmt.Appendf(nil, "Return-Path: <%s>\r\nDelivered-To: %s\r\n"+
		"Received: from %s (localhost [127.0.0.1])\r\n\tby %s (mailworld) with ESMTP id %s\r\n\tfor <%s>; %s\r\n",
		from, rcpt, helo, Hostname, id, rcpt, now.Format(time.RFC1123Z))
}

// delivery is one copy of an accepted message on its way to a folder.
type delivery struct {
	u      *user
	rcpt   string
	folder string // wanted: the +detail, or INBOX
}

// deliver stores the message in each recipient's folder and records it.
// first is the whole message for rcpts[0] (its trace header, then raw);
// the other recipients' copies are built here, one exact allocation each.
// A recipient whose +detail names one of the user's folders gets it there,
// else in INBOX; copies for one user that land in the same folder are
// stored once.
func (w *World) deliver(from, helo string, rcpts []string, first, raw []byte, id string, now time.Time) error {
	w.mu.Lock()
	var ds []delivery
	for _, rcpt := range rcpts {
		u := w.lookupLocked(rcpt)
		if u == nil {
			continue // relayed: OnAccept is all it gets
		}
		folder := detail(rcpt)
		if folder == "" || strings.EqualFold(folder, inbox) {
			folder = inbox
		}
		ds = append(ds, delivery{u: u, rcpt: rcpt, folder: folder})
	}
	w.mu.Unlock()

	// The IMAP store has locks of its own: appending (it copies the
	// message) happens outside w.mu, so that concurrent sessions, Rcpt and
	// WaitFor do not queue behind a large message.
	type stored struct {
		u      *user
		folder string
	}
	done := map[stored]bool{}
	var records []stored
	var delivered []Delivered
	for i, d := range ds {
		folder := existing(d.u, d.folder)
		if done[stored{d.u, folder}] {
			continue // another alias of this user, same folder
		}
		msg := first
		if i > 0 || d.rcpt != rcpts[0] {
			// Appending to the small header allocates the copy at its
			// final size without clearing it first.
			msg = append(traceHeader(from, helo, d.rcpt, id, now), raw...)
		}
		folder, uid, err := appendTo(d.u, folder, msg, now)
		if err != nil {
			return fmt.Errorf("deliver to %s: %w", d.u.address, err)
		}
		done[stored{d.u, folder}] = true
		records = append(records, stored{d.u, folder})
		delivered = append(delivered, Delivered{From: from, To: d.rcpt, Mailbox: d.u.address, Folder: folder,
			Raw: msg[:len(msg):len(msg)], At: now, uid: uid})
	}

	w.mu.Lock()
	for i, r := range records {
		if r.folder == inbox {
			r.u.inbox = append(r.u.inbox, delivered[i])
			continue
		}
		if r.u.folders == nil {
			r.u.folders = map[string][]Delivered{}
		}
		r.u.folders[r.folder] = append(r.u.folders[r.folder], delivered[i])
	}
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
	w.log.Info("mail accepted", "id", id, "from", from, "rcpts", len(rcpts), "size", len(raw))
	return nil
}

// existing returns folder if u has an IMAP folder of that exact name (as
// Dovecot's mailbox lookup for lmtp_save_to_detail_mailbox), else INBOX.
func existing(u *user, folder string) string {
	if folder == inbox {
		return inbox
	}
	if _, err := u.imap.Status(folder, &imap.StatusOptions{}); err != nil {
		return inbox
	}
	return folder
}

// idleSession is a memory-server session that, as Dovecot does, reports at
// the start of IDLE the mailbox changes it has not reported yet. go-imap's
// memory server (v2.0.0-beta.8) reports only the changes that come during
// the IDLE: a message delivered between the client's last command and its
// IDLE waited, unseen, for the client's next command (the daemon's poll
// interval). A change in the microseconds between this poll and the
// library's IDLE taking over still waits.
type idleSession struct {
	imapserver.SessionIMAP4rev2
}

func (s idleSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if err := s.Poll(w, true); err != nil {
		return err
	}
	return s.SessionIMAP4rev2.Idle(w, stop)
}

// appendTo appends msg to u's folder, or to INBOX when that folder is gone
// by now (deleted over IMAP since existing looked), and says where it went
// and under which UID.
func appendTo(u *user, folder string, msg []byte, now time.Time) (string, imap.UID, error) {
	data, err := u.imap.Append(folder, bytes.NewReader(msg), &imap.AppendOptions{Time: now})
	var ie *imap.Error
	if folder != inbox && errors.As(err, &ie) && ie.Code == imap.ResponseCodeTryCreate {
		folder = inbox
		data, err = u.imap.Append(folder, bytes.NewReader(msg), &imap.AppendOptions{Time: now})
	}
	if err != nil {
		return folder, 0, err
	}
	return folder, data.UID, nil
}

// session is one SMTP transaction stream.
type session struct {
	w     *World
	conn  *peerConn // nil if the connection is not one of ours
	helo  string
	from  string
	size  int64 // MAIL FROM SIZE=, 0 when not given
	rcpts []string
}

var (
	errUnknownRecipient = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errRelayDenied      = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	errBadAddress       = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	errDeliveryFailed   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local delivery failed, try again"}
	errNoRecipients     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	errTruncated        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Connection closed in the middle of the message"}
)

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

// Auth accepts AUTH PLAIN for a world user; authentication is optional.
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtp.ErrAuthFailed
		}
		s.w.mu.Lock()
		u := s.w.lookupLocked(username)
		s.w.mu.Unlock()
		if u == nil || u.password != password {
			return smtp.ErrAuthFailed
		}
		return nil
	}), nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.from, s.size = from, 0
	if opts != nil {
		s.size = opts.Size
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	_, domain, ok := splitAddress(to)
	if !ok {
		return errBadAddress
	}
	s.w.mu.Lock()
	known := s.w.lookupLocked(to) != nil || s.w.relay[domain]
	ours := s.w.domains[domain]
	s.w.mu.Unlock()
	switch {
	case known:
		s.rcpts = append(s.rcpts, to)
		return nil
	case ours:
		return errUnknownRecipient
	default:
		return errRelayDenied
	}
}

// Data reads the message (DATA, or the BDAT chunks go-smtp joins into r)
// straight behind the first recipient's trace header, into one buffer, and
// delivers it.
func (s *session) Data(r io.Reader) error {
	if len(s.rcpts) == 0 {
		return errNoRecipients // go-smtp refuses DATA before RCPT; kept for safety
	}
	now := s.w.opts.Now()
	id := fmt.Sprintf("%X%04X", now.UnixNano(), s.w.seq.Add(1)&0xffff)
	head := traceHeader(s.from, s.helo, s.rcpts[0], id, now)
	msg, err := readMessage(r, head, min(s.size, s.w.opts.MaxMessageBytes))
	if err != nil {
		return err // the size limit error is already an SMTPError
	}
	if s.conn != nil && s.conn.ended.Load() {
		// The client closed the connection while the message was read:
		// go-smtp (v0.25) takes a BDAT chunk cut short by the close as
		// whole, so a sender killed during its last chunk would have a
		// truncated message delivered. A real MTA drops it; so does this.
		return errTruncated
	}
	raw := msg[len(head):len(msg):len(msg)]
	if err := s.w.deliver(s.from, s.helo, s.rcpts, msg, raw, id, now); err != nil {
		s.w.log.Error("mailworld delivery failed", "err", err)
		return errDeliveryFailed
	}
	if s.w.opts.OnAccept != nil {
		s.w.opts.OnAccept(s.from, slices.Clone(s.rcpts), raw)
	}
	return nil
}

// chunkSize is the size of the pooled buffers a message of unknown size is
// read into before it is joined once.
const chunkSize = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// readMessage returns head followed by everything r yields, in one buffer
// of (about) its final size. With sizeHint (the SMTP SIZE parameter) the
// buffer is allocated once up front; a client that sent more than it
// announced, or no size, gets its message read into pooled chunks and
// joined. Unlike io.ReadAll or bytes.Buffer nothing is grown by doubling,
// which cleared and copied each megabyte several times.
func readMessage(r io.Reader, head []byte, sizeHint int64) ([]byte, error) {
	buf := head
	if sizeHint > 0 {
		// One byte more than announced, so that a message of exactly that
		// size ends with io.EOF without the buffer filling up.
		buf = make([]byte, len(head), len(head)+int(sizeHint)+1)
		copy(buf, head)
		for len(buf) < cap(buf) {
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				if slack := cap(buf) - len(buf); slack > 64<<10 && slack > len(buf)/8 {
					// SIZE overstated a lot: keep no dead capacity.
					return bytes.Clone(buf), nil
				}
				return buf, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}
	var chunks []*[]byte
	defer func() {
		for _, c := range chunks {
			chunkPool.Put(c)
		}
	}()
	total, last := 0, 0 // bytes in chunks; in the last chunk
	for {
		if len(chunks) == 0 || last == chunkSize {
			chunks = append(chunks, chunkPool.Get().(*[]byte))
			last = 0
		}
		c := *chunks[len(chunks)-1]
		n, err := r.Read(c[last:])
		last += n
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, len(buf)+total)
	out = append(out, buf...)
	for i, c := range chunks {
		if i == len(chunks)-1 {
			out = append(out, (*c)[:last]...)
		} else {
			out = append(out, *c...)
		}
	}
	return out, nil
}

func (s *session) Reset() {
	s.from, s.rcpts = "", nil
}

func (s *session) Logout() error { return nil }

// SelfSignedTLS makes a certificate for 127.0.0.1, ::1 and localhost,
// valid around now, and a client config that trusts only it: for servers on
// loopback (this world, and the tests' own).
func SelfSignedTLS(now time.Time) (server, client *tls.Config, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: Hostname},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		DNSNames:     []string{Hostname, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client, nil
}
