package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"secondopinion/internal/engine"
	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout"
	"secondopinion/internal/mailworld"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/store"
	"secondopinion/internal/workdays"
	"secondopinion/templates"
)

// Options for a demo run.
type Options struct {
	// Out is the directory the run leaves behind: mail/, forms/, keys/,
	// data/, audit.jsonl, timeline.txt. Earlier demo output there is
	// replaced.
	Out string
	// Stdout receives the timeline as it happens.
	Stdout io.Writer
	// Timeout bounds the whole run (default 60 s).
	Timeout time.Duration
}

// Summary is what a run produced, for the caller and for tests.
type Summary struct {
	Cases        map[string]procedure.State // by reference
	Mails        int                        // mails accepted by the SMTP server
	Forms        int
	AuditEntries int
	Quarantined  int
}

// start is a Monday morning in Amsterdam.
var start = time.Date(2026, 3, 2, 9, 0, 0, 0, mustLoc("Europe/Amsterdam"))

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// Run runs the demo and returns what it produced.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Out == "" {
		return nil, errors.New("demo: no output directory")
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for _, sub := range []string{"mail", "forms", "keys", "data", "keyring", "audit.jsonl", "timeline.txt", "daemon.log"} {
		if err := os.RemoveAll(filepath.Join(o.Out, sub)); err != nil {
			return nil, err
		}
	}
	for _, sub := range []string{"mail", "forms", "keys", "keyring"} {
		if err := os.MkdirAll(filepath.Join(o.Out, sub), 0o700); err != nil {
			return nil, err
		}
	}
	tl, err := newTimeline(o)
	if err != nil {
		return nil, err
	}
	defer tl.close()
	d := &run{o: o, tl: tl, clk: &clock{t: start}}
	tl.clk = d.clk
	return d.run(ctx)
}

// run holds one demo's moving parts.
type run struct {
	o     Options
	tl    *timeline
	clk   *clock
	world *mailworld.World
	st    *store.Store
	eng   *engine.Engine
	keys  *pgpmime.Keyring
	svc   *pgpmime.ServiceKey
	// people's private keys, by address (the physicians).
	private map[string]*pgpmime.ServiceKey
	mailN   int
	mailMu  sync.Mutex
	forms   int
}

func (d *run) run(ctx context.Context) (*Summary, error) {
	d.tl.say("secondopinion demo: the procedure by mail, with in-process mail servers and a fast clock")
	d.tl.say("output in %s", d.o.Out)
	if err := d.setupKeys(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	world, err := mailworld.New(&mailworld.Options{
		Domains:  []string{domainService, "mail.example", "acme.example", "arbo-noord.example", "arbo-zuid.example", "arbo-west.example", "arbo-oost.example"},
		OnAccept: d.accepted,
		Now:      d.clk.Now,
	})
	if err != nil {
		return nil, err
	}
	defer world.Close()
	d.world = world
	for _, a := range []string{addrService, addrBackoff, addrEmployee, addrEmployee2, addrEmployer, addrOriginal, addrBakker, addrJansen, addrVisser, addrSmit} {
		if err := world.AddUser(a, "demo"); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(ctx, filepath.Join(d.o.Out, "data"), &store.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	d.st = st
	logf, err := os.Create(filepath.Join(d.o.Out, "daemon.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	logger := slog.New(slog.NewTextHandler(logf, nil))
	cal, err := workdays.New(workdays.Policy{})
	if err != nil {
		return nil, err
	}
	tokenKey := bytes.Repeat([]byte("demo-token-key-"), 3)
	eng, err := engine.New(engine.Options{
		Store: st, Registry: demoRegistry(), Policy: procedure.DefaultPolicy(cal), Calendar: cal,
		Keyring: d.keys, Service: d.svc, TokenKey: tokenKey,
		Info: engine.ServiceInfo{LocalPart: "so", Domain: domainService, DisplayName: "Second opinion bedrijfsarts",
			Provider: "Arbo Noord", Backoffice: addrBackoff, Lang: "nl"},
		Templates: templates.FS, Clock: d.clk, Logger: logger,
		OnCommit: d.committed,
	})
	if err != nil {
		return nil, err
	}
	d.eng = eng
	ing, err := mailin.New(engine.Spool{DB: st}, &mailin.Options{
		Addr: world.IMAPAddr(), Security: mailin.SecurityPlain, Username: addrService, Password: "demo",
		Notify: eng.KickInbound, Logger: logger, PollInterval: 200 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	worker := mailout.NewWorker(engine.Queue{Store: st}, &mailout.Transport{Addr: world.SMTPAddr(), Security: "plain", HelloName: domainService})
	worker.Clock = engine.WorkerClock{Clock: d.clk}
	worker.Logger = logger
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- eng.Run(runCtx, engine.Loops{Ingester: ing, Worker: worker, SweepSpec: "@every 1h", InboundPoll: 500 * time.Millisecond})
	}()

	scriptErr := d.script(ctx)
	stop()
	runErr := <-done
	if scriptErr != nil {
		return nil, scriptErr
	}
	if runErr != nil {
		return nil, runErr
	}
	return d.finish(ctx)
}

// setupKeys makes the service key and the physicians' keys, writes every
// private key armored to keys/ (demo only: no passphrase) and the public
// keys into the service's keyring.
func (d *run) setupKeys() error {
	kr := filepath.Join(d.o.Out, "keyring")
	keys, err := pgpmime.OpenKeyring(kr)
	if err != nil {
		return err
	}
	d.keys = keys
	d.private = map[string]*pgpmime.ServiceKey{}
	gen := func(name, email string) (*pgpmime.ServiceKey, []byte, error) {
		armored, err := pgpmime.GenerateServiceKey(name, email, start.Add(-24*time.Hour), nil)
		if err != nil {
			return nil, nil, err
		}
		k, err := pgpmime.ParseServiceKey(armored, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(filepath.Join(d.o.Out, "keys", email+".asc"), armored, 0o600); err != nil {
			return nil, nil, err
		}
		return k, armored, nil
	}
	svc, armored, err := gen("Second opinion bedrijfsarts", addrService)
	if err != nil {
		return err
	}
	if _, err := keys.WriteServiceKey(armored); err != nil {
		return err
	}
	d.svc = svc
	for _, p := range []struct{ name, email string }{
		{"A. de Vries", addrOriginal}, {"B. Bakker", addrBakker}, {"C. Jansen", addrJansen}, {"E. Smit", addrSmit},
	} {
		k, _, err := gen(p.name, p.email)
		if err != nil {
			return err
		}
		pub, err := k.ArmoredPublic()
		if err != nil {
			return err
		}
		if _, err := keys.Import(pub, start); err != nil {
			return fmt.Errorf("import %s: %w", p.email, err)
		}
		d.private[p.email] = k
	}
	// The participants know the service's public key (to encrypt to it).
	pub, err := svc.ArmoredPublic()
	if err != nil {
		return err
	}
	_, err = keys.Import(pub, start)
	return err
}

// accepted is called for every mail the SMTP server accepts: it is kept
// as an .eml file, and the timeline says who got what.
func (d *run) accepted(from string, to []string, raw []byte) {
	d.mailMu.Lock()
	d.mailN++
	n := d.mailN
	d.mailMu.Unlock()
	name := fmt.Sprintf("%03d-%s.eml", n, safe(strings.Join(to, ",")))
	_ = os.WriteFile(filepath.Join(d.o.Out, "mail", name), raw, 0o600)
}

func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '@' {
			return r
		}
		return '_'
	}, strings.ToLower(s))
}

// committed prints each committed step of a case.
func (d *run) committed(c *procedure.Case, effects []procedure.Effect, audit []store.AuditEntry) {
	withheld := map[string]bool{}
	var parts []string
	for _, a := range audit {
		switch {
		case a.Disclosure != nil:
			parts = append(parts, fmt.Sprintf("disclosed %d document(s) to %s", len(a.Disclosure.Documents), a.Disclosure.To))
		case a.Event == "withheld":
			withheld[strings.Fields(a.Detail)[0]] = true
		}
	}
	var mails []string
	for _, e := range effects {
		switch e := e.(type) {
		case procedure.Mail:
			s := fmt.Sprintf("%s→%s", e.Template, e.To)
			switch {
			case e.Medical && withheld[e.Template]:
				s = fmt.Sprintf("medical_notice→%s (no PGP key: %s withheld)", e.To, e.Template)
			case e.Medical:
				s += " (encrypted)"
			}
			mails = append(mails, s)
		case procedure.Alert:
			mails = append(mails, "ALERT backoffice: "+e.Reason)
		}
	}
	all := append(mails, parts...)
	if len(all) == 0 {
		all = []string{"(recorded; nothing sent)"}
	}
	d.tl.event(c.Ref, "%-17s %s", c.State, strings.Join(all, "; "))
}

// finish writes audit.jsonl, verifies the chain and sums up.
func (d *run) finish(ctx context.Context) (*Summary, error) {
	n, err := d.st.VerifyAudit(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := d.st.AuditLog(ctx, 0)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(d.o.Out, "audit.jsonl"))
	if err != nil {
		return nil, err
	}
	if err := store.WriteAuditJSONL(f, entries); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	cases, err := d.st.Cases(ctx, store.CaseFilter{})
	if err != nil {
		return nil, err
	}
	q, err := d.st.Quarantined(ctx)
	if err != nil {
		return nil, err
	}
	s := &Summary{Cases: map[string]procedure.State{}, Mails: d.mailN, Forms: d.forms, AuditEntries: n, Quarantined: len(q)}
	var lines []string
	for _, c := range cases {
		s.Cases[c.Ref] = c.State
		lines = append(lines, fmt.Sprintf("  %s  %s", c.Ref, c.State))
	}
	sort.Strings(lines)
	d.tl.say("")
	d.tl.say("done: %d cases", len(cases))
	for _, l := range lines {
		d.tl.say("%s", l)
	}
	d.tl.say("%d mails crossed the SMTP server (mail/), %d forms (forms/), %d quarantined", s.Mails, s.Forms, s.Quarantined)
	d.tl.say("audit chain verified: %d entries (audit.jsonl); participants' demo keys in keys/", n)
	return s, nil
}

// timeline prints to stdout and timeline.txt at once.
type timeline struct {
	mu  sync.Mutex
	w   io.Writer
	f   *os.File
	clk *clock
}

func newTimeline(o Options) (*timeline, error) {
	f, err := os.Create(filepath.Join(o.Out, "timeline.txt"))
	if err != nil {
		return nil, err
	}
	return &timeline{w: io.MultiWriter(o.Stdout, f), f: f}, nil
}

func (t *timeline) close() { t.f.Close() }

func (t *timeline) say(format string, a ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, format+"\n", a...)
}

// event prints a line stamped with the demo clock.
func (t *timeline) event(who, format string, a ...any) {
	stamp := t.clk.Now().In(start.Location()).Format("Mon 02 Jan 15:04")
	t.say("%s  %-13s %s", stamp, who, fmt.Sprintf(format, a...))
}
