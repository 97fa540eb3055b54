package demo

import (
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

	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
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
	tl.say("secondopinion demo: the procedure by mail, with in-process mail servers and a fast clock")
	tl.say("output in %s", o.Out)
	logf, err := os.Create(filepath.Join(o.Out, "daemon.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d := &run{o: o, tl: tl}
	r, err := rig.Start(ctx, rig.Options{
		Dir: o.Out, NoSync: true, Logger: slog.New(slog.NewTextHandler(logf, nil)),
		OnCommit: d.committed, OnAccept: d.accepted,
	})
	if err != nil {
		return nil, err
	}
	d.r = r
	tl.clk = r.Clock
	scriptErr := d.script(ctx)
	sum, finErr := d.finish(ctx)
	closeErr := r.Close()
	if err := errors.Join(scriptErr, finErr, closeErr); err != nil {
		return nil, err
	}
	return sum, nil
}

// run holds one demo's moving parts.
type run struct {
	o      Options
	tl     *timeline
	r      *rig.Rig
	mailMu sync.Mutex
	mailN  int
	forms  int
}

// accepted is called for every mail the SMTP server accepts: it is kept
// as an .eml file.
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
	st := d.r.Store
	n, err := st.VerifyAudit(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := st.AuditLog(ctx, 0)
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
	cases, err := st.Cases(ctx, store.CaseFilter{})
	if err != nil {
		return nil, err
	}
	q, err := st.Quarantined(ctx)
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
	clk *rig.Clock
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
	stamp := "--- -- --- --:--"
	if t.clk != nil {
		stamp = t.clk.Now().In(rig.Amsterdam).Format("Mon 02 Jan 15:04")
	}
	t.say("%s  %-13s %s", stamp, who, fmt.Sprintf(format, a...))
}
