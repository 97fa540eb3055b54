// Package rig wires a complete daemon — store, keys, engine, IMAP ingest,
// SMTP outbox — to a mail world, with the procedure's participants as
// scripted people who read and answer mail the way a mail client does
// (physicians PGP-signed and -encrypted). The demo, the bench and the
// end-to-end tests run on it. The mail world is the in-process one
// (internal/mailworld) unless real servers are given.
package rig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"secondopinion/internal/engine"
	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout"
	"secondopinion/internal/mailworld"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
	"secondopinion/internal/workdays"
	"secondopinion/templates"
)

// Clock is a clock that stands still until the script moves it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t (never backwards).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

// Amsterdam is the procedure's time zone.
var Amsterdam = mustLoc("Europe/Amsterdam")

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// DefaultStart is a Monday morning in Amsterdam.
var DefaultStart = time.Date(2026, 3, 2, 9, 0, 0, 0, Amsterdam)

// Mailboxes is how participants see their mail: the in-process world, or
// real servers (a test reads Postfix's maildirs).
type Mailboxes interface {
	// WaitFor returns the first message to addr (past or future) that
	// pred accepts.
	WaitFor(ctx context.Context, addr string, pred func(raw []byte) bool) ([]byte, error)
	// Count returns how many messages addr has received.
	Count(addr string) int
}

// Options configure a rig. Zero values give the demo's defaults.
type Options struct {
	// Dir holds data/, keyring/ and keys/ (the participants' private keys).
	Dir string
	// Start is the clock's start (default DefaultStart).
	Start time.Time
	// Registry (default the demo registry, DemoRegistry).
	Registry *registry.Registry
	// Policy (default procedure.DefaultPolicy with the Dutch calendar).
	Policy *procedure.Policy
	// Servers, when set, are real mail servers; otherwise an in-process
	// mail world is started.
	Servers *Servers
	// Logger for the daemon (default: discard).
	Logger *slog.Logger
	// OnCommit and OnAccept observe the run (the demo's timeline).
	OnCommit func(c *procedure.Case, effects []procedure.Effect, audit []store.AuditEntry)
	OnAccept func(from string, to []string, raw []byte)
	// NoSync turns off fsync in the store (throwaway data only).
	NoSync bool
	// KeylessPhysicians are physicians who get no key (to test the
	// missing-key path); ExpiredKeys get a key that expired yesterday.
	KeylessPhysicians, ExpiredKeys []string
	// PollInterval of the IMAP ingest when the server lacks IDLE.
	PollInterval time.Duration
	// ServiceLocalPart is the local part of the service's address in
	// ServiceDomain (default "so"). Several rigs on one real mail server
	// each need their own mailbox.
	ServiceLocalPart string
	// Backoffice is the backoffice's notice address (default AddrBackoffice).
	Backoffice string
	// Participants are further people's addresses (employees) who get a
	// mailbox in the in-process world and a Person, besides the registry's
	// and the demo's.
	Participants []string
	// Relay keeps only the service's mailboxes in the in-process world:
	// the participants' domains are relayed (mailworld.Options.Relay), so
	// their mail reaches OnAccept and is stored nowhere. For a load
	// generator that reads participants' mail in OnAccept (the bench);
	// Person's mail methods then find nothing.
	Relay bool
}

// SentCopyMailbox is the service's folder for the copies of its own mail
// (see mailout.SentCopies); real servers must file SentCopyAddress there.
const SentCopyMailbox = "verzonden"

// SentCopyAddress is the address that gets a copy of every mail the
// service with this local part sends.
func SentCopyAddress(localPart string) string {
	return localPart + "+verzonden@" + ServiceDomain
}

// Servers are real mail servers for the daemon and the participants.
type Servers struct {
	IMAPAddr, IMAPUser, IMAPPassword string
	SMTPAddr                         string
	Mailboxes                        Mailboxes
}

// Rig is a running daemon with its participants.
type Rig struct {
	Clock   *Clock
	Store   *store.Store
	Engine  *engine.Engine
	Keys    *pgpmime.Keyring
	Service *pgpmime.ServiceKey
	// World is the in-process mail world (nil with real servers).
	World *mailworld.World
	// Mail is how participants read their mail.
	Mail Mailboxes
	// Info is the service's address and names.
	Info engine.ServiceInfo
	// People by address; physicians have their own keys.
	People map[string]*Person

	smtpAddr  string
	dir       string
	transport *mailout.Transport
	stop      context.CancelFunc
	done      chan error
	seenMu    sync.Mutex
	seen      map[string]bool
	msgMu     sync.Mutex
	msgN      int
}

// Start builds and starts the rig; Close stops it.
func Start(ctx context.Context, o Options) (r *Rig, err error) {
	if o.Dir == "" {
		return nil, errors.New("rig: no directory")
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart
	}
	if o.Registry == nil {
		o.Registry = DemoRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, sub := range []string{"keys", "keyring"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if o.ServiceLocalPart == "" {
		o.ServiceLocalPart = "so"
	}
	if o.Backoffice == "" {
		o.Backoffice = AddrBackoffice
	}
	r = &Rig{Clock: NewClock(o.Start), dir: o.Dir, seen: map[string]bool{}, People: map[string]*Person{},
		Info: engine.ServiceInfo{LocalPart: o.ServiceLocalPart, Domain: ServiceDomain, DisplayName: "Second opinion bedrijfsarts",
			Provider: "Arbo Noord", Backoffice: o.Backoffice, Lang: "nl"}}
	// A failed start closes what it started; the error return sets r to
	// nil, so the deferred close keeps its own reference.
	started := r
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	if err := r.setupKeys(o); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	imapAddr, imapUser, imapPass := "", r.Info.Address(), "demo"
	if o.Servers != nil {
		imapAddr, imapUser, imapPass = o.Servers.IMAPAddr, o.Servers.IMAPUser, o.Servers.IMAPPassword
		r.smtpAddr, r.Mail = o.Servers.SMTPAddr, o.Servers.Mailboxes
	} else {
		var domains []string
		for d := range domainsOf(o.Registry) {
			domains = append(domains, d)
		}
		domains = append(domains, "mail.example")
		wo := &mailworld.Options{Domains: append(domains, ServiceDomain), OnAccept: o.OnAccept, Now: r.Clock.Now}
		users := append(append(participantAddrs(o.Registry), r.Info.Address(), r.Info.Backoffice, AddrEmployee, AddrEmployee2), o.Participants...)
		if o.Relay {
			wo.Domains, wo.Relay = []string{ServiceDomain}, domains
			users = []string{r.Info.Address(), r.Info.Backoffice}
		}
		world, err := mailworld.New(wo)
		if err != nil {
			return nil, err
		}
		r.World = world
		added := map[string]bool{}
		for _, a := range users {
			if added[a] {
				continue
			}
			added[a] = true
			if err := world.AddUser(a, "demo"); err != nil {
				return nil, err
			}
		}
		imapAddr, r.smtpAddr, r.Mail = world.IMAPAddr(), world.SMTPAddr(), worldMailboxes{world}
	}
	st, err := store.Open(ctx, filepath.Join(o.Dir, "data"), &store.Options{NoSync: o.NoSync})
	if err != nil {
		return nil, err
	}
	r.Store = st
	pol := o.Policy
	if pol == nil {
		cal, err := workdays.New(workdays.Policy{})
		if err != nil {
			return nil, err
		}
		p := procedure.DefaultPolicy(cal)
		pol = &p
	}
	var cal *workdays.Calendar
	if c, ok := pol.Calendar.(*workdays.Calendar); ok {
		cal = c
	}
	eng, err := engine.New(engine.Options{
		Store: st, Registry: o.Registry, Policy: *pol, Calendar: cal,
		Keyring: r.Keys, Service: r.Service, TokenKey: bytes.Repeat([]byte("rig-token-key-"), 3),
		Info: r.Info, Templates: templates.FS, Clock: r.Clock, Logger: o.Logger, OnCommit: o.OnCommit,
	})
	if err != nil {
		return nil, err
	}
	r.Engine = eng
	poll := o.PollInterval
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	ing, err := mailin.New(engine.Spool{DB: st}, &mailin.Options{
		Addr: imapAddr, Security: mailin.SecurityPlain, Username: imapUser, Password: imapPass, SentMailbox: SentCopyMailbox,
		Notify: eng.KickInbound, Logger: o.Logger, PollInterval: poll,
		Backoff: mailin.Backoff{Min: 50 * time.Millisecond, Max: time.Second},
	})
	if err != nil {
		return nil, err
	}
	r.transport = &mailout.Transport{Addr: r.smtpAddr, Security: mailout.SecurityPlain, HelloName: ServiceDomain}
	worker := mailout.NewWorker(engine.Queue{Store: st}, r.transport)
	worker.Clock = engine.WorkerClock{Clock: r.Clock}
	worker.Logger = o.Logger
	worker.Copies = ing.SentCopies(SentCopyAddress(o.ServiceLocalPart))
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stop, r.done = stop, make(chan error, 1)
	go func() {
		r.done <- eng.Run(runCtx, engine.Loops{Ingester: ing, Worker: worker, SweepSpec: "@every 1h", InboundPoll: 500 * time.Millisecond})
	}()
	return r, nil
}

// Close stops the daemon's loops and closes the store and the mail world.
func (r *Rig) Close() error {
	var errs []error
	if r.stop != nil {
		r.stop()
		errs = append(errs, <-r.done)
		r.stop = nil
	}
	if r.transport != nil {
		errs = append(errs, r.transport.Close())
	}
	if r.Store != nil {
		errs = append(errs, r.Store.Close())
	}
	if r.World != nil {
		errs = append(errs, r.World.Close())
	}
	return errors.Join(errs...)
}

// setupKeys makes the service key and a key per physician, writes every
// private key armored to keys/ (no passphrase: test and demo only) and the
// public keys into the service's keyring.
func (r *Rig) setupKeys(o Options) error {
	keys, err := pgpmime.OpenKeyring(filepath.Join(o.Dir, "keyring"))
	if err != nil {
		return err
	}
	r.Keys = keys
	gen := func(name, email string, at time.Time) (*pgpmime.ServiceKey, []byte, error) {
		armored, err := pgpmime.GenerateServiceKey(name, email, at, nil)
		if err != nil {
			return nil, nil, err
		}
		k, err := pgpmime.ParseServiceKey(armored, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(filepath.Join(o.Dir, "keys", email+".asc"), armored, 0o600); err != nil {
			return nil, nil, err
		}
		return k, armored, nil
	}
	svc, armored, err := gen(r.Info.DisplayName, r.Info.Address(), o.Start.Add(-24*time.Hour))
	if err != nil {
		return err
	}
	if _, err := keys.WriteServiceKey(armored); err != nil {
		return err
	}
	r.Service = svc
	skip := map[string]bool{}
	for _, a := range o.KeylessPhysicians {
		skip[a] = true
	}
	expired := map[string]bool{}
	for _, a := range o.ExpiredKeys {
		expired[a] = true
	}
	for _, p := range o.Registry.Physicians {
		person := &Person{Name: p.Name, Addr: p.Email}
		r.People[p.Email] = person
		if skip[p.Email] {
			continue
		}
		k, _, err := gen(p.Name, p.Email, o.Start.Add(-24*time.Hour))
		if err != nil {
			return err
		}
		person.Key = k
		pub, err := k.ArmoredPublic()
		if err != nil {
			return err
		}
		if expired[p.Email] {
			if err := writeExpiredPublic(keys, p.Email, o.Start); err != nil {
				return err
			}
			continue
		}
		if _, err := keys.Import(pub, o.Start); err != nil {
			return fmt.Errorf("import %s: %w", p.Email, err)
		}
	}
	for _, e := range o.Registry.Employers {
		r.People[e.NoticeEmail] = &Person{Name: e.Name, Addr: e.NoticeEmail}
	}
	r.People[AddrEmployee] = &Person{Name: "Şahin Yılmaz", Addr: AddrEmployee}
	r.People[AddrEmployee2] = &Person{Name: "Łukasz Kowalski", Addr: AddrEmployee2}
	r.People[r.Info.Backoffice] = &Person{Name: "Backoffice", Addr: r.Info.Backoffice}
	for _, a := range o.Participants {
		if r.People[a] == nil {
			r.People[a] = &Person{Name: a, Addr: a}
		}
	}
	return nil
}

// writeExpiredPublic files a public key for addr that expired before the
// start: made 30 days before it with a lifetime that ended the day before.
// (Import would refuse it, rightly; the file is written directly, as an
// old key left in the keys dir would be.)
func writeExpiredPublic(keys *pgpmime.Keyring, addr string, start time.Time) error {
	priv, err := pgpmime.GenerateKey(addr, addr, start.Add(-30*24*time.Hour), 29*24*time.Hour, nil)
	if err != nil {
		return err
	}
	k, err := pgpmime.ParseServiceKey(priv, nil)
	if err != nil {
		return err
	}
	armored, err := k.ArmoredPublic()
	if err != nil {
		return err
	}
	path, err := keys.PathFor(addr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, armored, 0o600)
}

// Person returns the participant with an address.
func (r *Rig) Person(addr string) *Person {
	p, ok := r.People[addr]
	if !ok {
		p = &Person{Name: addr, Addr: addr}
		r.People[addr] = p
	}
	return p
}

func domainsOf(reg *registry.Registry) map[string]bool {
	out := map[string]bool{}
	for _, a := range participantAddrs(reg) {
		if i := bytes.IndexByte([]byte(a), '@'); i >= 0 {
			out[a[i+1:]] = true
		}
	}
	return out
}

func participantAddrs(reg *registry.Registry) []string {
	var out []string
	for _, p := range reg.Physicians {
		out = append(out, p.Email)
	}
	for _, e := range reg.Employers {
		out = append(out, e.NoticeEmail)
	}
	return out
}

// worldMailboxes reads participants' mail from the in-process world.
type worldMailboxes struct{ w *mailworld.World }

func (m worldMailboxes) WaitFor(ctx context.Context, addr string, pred func([]byte) bool) ([]byte, error) {
	d, err := m.w.WaitFor(ctx, addr, func(d mailworld.Delivered) bool { return pred(d.Raw) })
	return d.Raw, err
}

func (m worldMailboxes) Count(addr string) int { return len(m.w.Inbox(addr)) }
