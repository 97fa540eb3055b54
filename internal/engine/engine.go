// Package engine is the daemon's imperative shell around the pure
// procedure. Every input — an inbound message, a due deadline, a backoffice
// command — takes one path: read the case, procedure.Decide, compose the
// effects (mail rendered from templates, encrypted where medical; the
// authorisation form; alerts), and commit all of it with one store.Apply.
// Around that path run the loops: IMAP ingest, inbound processing, the
// deadline sweep on a cron schedule, and the SMTP outbox worker.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
	"secondopinion/internal/workdays"
)

// Clock tells the time. The daemon uses the wall clock; tests and the demo
// use one they can advance, so a week of the procedure runs in a second.
type Clock interface{ Now() time.Time }

// WallClock is the real time.
type WallClock struct{}

// Now returns the current time.
func (WallClock) Now() time.Time { return time.Now() }

// ServiceInfo is how the service presents itself by mail.
type ServiceInfo struct {
	LocalPart   string // so
	Domain      string // secondopinion.example.nl
	DisplayName string
	Provider    string
	Backoffice  string // the backoffice's notice address
	Lang        string // default language
}

// Address is the service's own address.
func (s ServiceInfo) Address() string { return s.LocalPart + "@" + s.Domain }

// Options wire an engine. All fields are required unless noted.
type Options struct {
	Store    *store.Store
	Registry *registry.Registry
	Policy   procedure.Policy
	Calendar *workdays.Calendar
	Keyring  *pgpmime.Keyring
	Service  *pgpmime.ServiceKey
	TokenKey []byte
	Info     ServiceInfo
	// Templates holds mail/<lang>/*.tmpl and form/*.yaml.
	Templates fs.FS
	Clock     Clock
	Logger    *slog.Logger
	// StrictAuth requires an Authentication-Results pass from AuthservID.
	StrictAuth bool
	AuthservID string
	// OnCommit, if set, is called after each committed decision with the
	// procedure's effects and the audit entries as committed (which say
	// what really left: a medical mail without a usable key is recorded as
	// withheld). The demo prints its timeline from it.
	OnCommit func(c *procedure.Case, effects []procedure.Effect, audit []store.AuditEntry)
}

// Engine runs the procedure over the store.
type Engine struct {
	o       Options
	reg     atomic.Pointer[registry.Registry]
	decider procedure.Decider
	log     *slog.Logger
	// afterCommit is set by Run: it kicks the outbox worker.
	afterCommit atomic.Pointer[func()]
	// inKick wakes the inbound loop (size 1, non-blocking sends).
	inKick chan struct{}
	// stored counts KickInbound's calls and stored is closed and replaced
	// by each: they wake a ProcessPending under way (see watchKicks).
	storedMu  sync.Mutex
	storedGen uint64
	stored    chan struct{}
}

// New checks the options and returns an engine.
func New(o Options) (*Engine, error) {
	switch {
	case o.Store == nil:
		return nil, errors.New("engine: no store")
	case o.Registry == nil:
		return nil, errors.New("engine: no registry")
	case o.Keyring == nil || o.Service == nil:
		return nil, errors.New("engine: no keys")
	case len(o.TokenKey) < 32:
		return nil, errors.New("engine: token key shorter than 32 bytes")
	case o.Templates == nil:
		return nil, errors.New("engine: no templates")
	case o.Info.LocalPart == "" || o.Info.Domain == "":
		return nil, errors.New("engine: no service address")
	}
	if o.Clock == nil {
		o.Clock = WallClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Info.Lang == "" {
		o.Info.Lang = "nl"
	}
	if o.Policy.Calendar == nil && o.Calendar != nil {
		o.Policy.Calendar = o.Calendar
	}
	e := &Engine{o: o, decider: procedure.Decider{Policy: o.Policy}, log: o.Logger, inKick: make(chan struct{}, 1),
		stored: make(chan struct{})}
	e.reg.Store(o.Registry)
	return e, nil
}

// Registry returns the registry in use.
func (e *Engine) Registry() *registry.Registry { return e.reg.Load() }

// SetRegistry replaces the registry (SIGHUP). The caller validated it.
func (e *Engine) SetRegistry(r *registry.Registry) { e.reg.Store(r) }

// Store returns the engine's store.
func (e *Engine) Store() *store.Store { return e.o.Store }

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.o.Clock.Now() }

// Source is where an input came from, committed with its decision.
type Source struct {
	// Inbound is the stored message the input was read from (0: none).
	Inbound int64
	// Documents were received with the input and are already sealed.
	Documents []store.DocumentRow
	// Via names the channel for the log ("mail", "deadline", "backoffice").
	Via string
}

// maxStaleRetries bounds how often a decision is retried after another
// writer changed the case in between.
const maxStaleRetries = 5

// Handle is the one path for every input: read the case (caseID 0 opens a
// new one, for a Request), decide, compose, commit. A procedure error
// (procedure.ErrUnexpected, ErrInvalid, ErrClosed) is returned unchanged
// and nothing is committed.
func (e *Engine) Handle(ctx context.Context, caseID int64, in procedure.Input, src Source) (*procedure.Case, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		var c *procedure.Case
		if caseID != 0 {
			var err error
			if c, err = e.o.Store.Case(ctx, caseID); err != nil {
				return nil, err
			}
		} else {
			id, ref, err := e.o.Store.NextCase(ctx, e.Now())
			if err != nil {
				return nil, err
			}
			c = &procedure.Case{ID: id, Ref: ref}
		}
		now := e.Now()
		next, effects, err := e.decider.Decide(c, in, now)
		if err != nil {
			return nil, err
		}
		d, missing, err := e.compose(ctx, next, effects, now)
		if err != nil {
			return nil, fmt.Errorf("case %s: compose: %w", next.Ref, err)
		}
		// A medical mail that could not be encrypted is kept by the case
		// and sent when a key arrives. Keeping it is a decision of its own
		// (procedure.KeyMissing), committed in the same transaction: a
		// crash can never lose it between the two.
		for _, km := range missing {
			kept, keptEffects, err := e.decider.Decide(d.Case, km, now)
			if err != nil {
				return nil, fmt.Errorf("case %s: keep withheld %s: %w", next.Ref, km.Mail.Template, err)
			}
			more, _, err := e.compose(ctx, kept, keptEffects, now)
			if err != nil {
				return nil, fmt.Errorf("case %s: compose: %w", next.Ref, err)
			}
			d.Case = kept
			d.Audit = append(d.Audit, more.Audit...)
			d.Alerts = append(d.Alerts, more.Alerts...)
			d.Outbox = append(d.Outbox, more.Outbox...)
			effects = append(effects, keptEffects...)
		}
		d.Inbound = src.Inbound
		d.Documents = append(d.Documents, src.Documents...)
		saved, err := e.o.Store.Apply(ctx, d)
		if errors.Is(err, store.ErrStale) && attempt < maxStaleRetries && caseID != 0 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("case %s: %w", next.Ref, err)
		}
		e.log.Info("case step", "case", saved.Ref, "input", inputName(in), "via", src.Via, "inbound", src.Inbound,
			"state", string(saved.State), "mails", len(d.Outbox), "alerts", len(d.Alerts),
			"duration", time.Since(start).Round(time.Microsecond))
		if f := e.afterCommit.Load(); f != nil && len(d.Outbox) > 0 {
			(*f)()
		}
		if e.o.OnCommit != nil {
			e.o.OnCommit(saved, effects, d.Audit)
		}
		return saved, nil
	}
}

func inputName(in procedure.Input) string {
	return fmt.Sprintf("%T", in)[len("procedure."):]
}
