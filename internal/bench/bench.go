// Package bench measures the daemon under load: it runs complete cases of
// the second-opinion procedure (DESIGN.md, "The procedure", steps 1–9: the
// request, the intake with the medical file PGP/MIME signed and encrypted
// per RFC 3156, the choice, both signatures, the acceptance with a consult
// date, the advice, the feedback consent, the completion) through a
// running daemon with scripted participants, and reports throughput, the
// daemon's reaction time per step (from a participant's mail accepted by
// SMTP to the daemon's answer accepted by SMTP), peak memory and database
// size per case.
//
// The daemon runs on internal/rig with the in-process mail world; the
// participants are the package's own driver (Driver, CaseScript), so the
// same script also drives a daemon in another process (the crash test).
package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"secondopinion/internal/engine"
	"secondopinion/internal/mailworld"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
	"secondopinion/internal/workdays"
	"secondopinion/templates"
)

// Options configure a bench run.
type Options struct {
	// Dir holds the daemon's data and keys (required; left behind).
	Dir string
	// Cases is how many complete cases to run (default 100).
	Cases int
	// Concurrency is how many cases are in flight at once (default 8).
	Concurrency int
	// Attachment is the medical file's size in bytes (default 1 MiB).
	Attachment int
	// NoSync turns fsync off in the store (throwaway data only).
	NoSync bool
	// Open, when > 0, first opens that many cases to the choosing state
	// through the engine's Handle (not by mail), with their mail marked
	// sent without delivery, and resets the peak RSS before the daemon
	// starts: the run then shows the daemon's memory with that many open
	// cases.
	Open int
	// Daemon, when set, is a secondopinion binary: the daemon then runs as
	// `Daemon serve` in a process of its own (always with fsync), and the
	// peak RSS is that process's alone.
	Daemon string
	// IMAP, when set with Daemon, is a given IMAP server that holds the
	// service's mailbox in place of the mail world's.
	IMAP *IMAPServer
	// SMTP, when set with Daemon, is a given SMTP server (a relay) that
	// the daemon submits its mail to in place of the mail world's.
	SMTP *SMTPServer
	// Timeout bounds the run (default 10 min).
	Timeout time.Duration
	// Logger gets the daemon's log (default: discard).
	Logger *slog.Logger
	// Progress, if set, is called after each completed case.
	Progress func(done, total int)
}

// Result is what a run measured. The JSON names are the bench command's
// output.
type Result struct {
	Cases int `json:"cases"`
	// Daemon is "in-process" (the rig) or "external" (serve, own process).
	Daemon string `json:"daemon"`
	// IMAP is the IMAP server the daemon reads: "mailworld" (the embedded
	// one) or IMAPServer.Name.
	IMAP string `json:"imap"`
	// SMTP is the SMTP server the daemon submits to: "mailworld" or a
	// given relay's address.
	SMTP           string  `json:"smtp"`
	Concurrency    int     `json:"concurrency"`
	AttachmentB    int     `json:"attachment_bytes"`
	Fsync          bool    `json:"fsync"`
	Seconds        float64 `json:"seconds"`
	CasesPerSecond float64 `json:"cases_per_second"`
	Reaction       Percent `json:"reaction_ms"`
	// Reactions is how many participant mails were timed.
	Reactions int `json:"reactions"`
	// ReactionByStep is Reaction for each of ReactionSteps.
	ReactionByStep map[string]Percent `json:"reaction_by_step_ms"`
	// IMAPNotify is a given IMAP server's own notification delay during
	// the run (from a message stored to the EXISTS a client in IDLE gets),
	// measured on a mailbox of its own; IMAPNotifySamples how many.
	IMAPNotify        *Percent `json:"imap_notify_ms,omitempty"`
	IMAPNotifySamples int      `json:"imap_notify_samples,omitempty"`
	// CaseMS is a complete case's wall time (request to completion).
	CaseMS Percent `json:"case_ms"`
	// PeakRSSMB is the process's peak RSS: in-process, daemon, mail world
	// and participants together; external, the daemon's alone.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// MailWorldMB is the most the embedded mail world held at once: the
	// service's mail (the participants' mail to it and its sent copies),
	// kept twice, in the IMAP store and the delivery record, until the
	// bench's retention expunges what the daemon is done with (see
	// retention). The participants' domains are relayed, so their mail is
	// not stored. In-process it is part of PeakRSSMB, not of the daemon.
	MailWorldMB    float64 `json:"mailworld_mb"`
	DBBytesPerCase int64   `json:"db_bytes_per_case"`
	DataDirBytes   int64   `json:"data_dir_bytes"`
	// CPUSeconds is the bench process's user+system CPU time during the
	// run (in-process: daemon, mail world and participants together;
	// external: mail world and participants). DaemonCPUSeconds is the
	// external daemon's, from its start to its stop.
	CPUSeconds       float64 `json:"cpu_seconds"`
	DaemonCPUSeconds float64 `json:"daemon_cpu_seconds,omitempty"`
	// SchedWait is how long the process's goroutines waited for a core
	// once ready to run, during the run (Go's runtime/metrics): in-process
	// only, where daemon, mail world and participants share the process.
	SchedWait  *Percent `json:"sched_wait_ms,omitempty"`
	MailsIn    int      `json:"mails_in"`
	MailsOut   int      `json:"mails_out"`
	Duplicates int      `json:"duplicates"`
	// Open is the number of cases opened before the run (Options.Open)
	// and OpenSetupSeconds how long opening them took.
	Open             int     `json:"open_cases,omitempty"`
	OpenSetupSeconds float64 `json:"open_setup_seconds,omitempty"`
	GoVersion        string  `json:"go_version"`
	CPUs             int     `json:"cpus"`
}

// Percent are percentiles in milliseconds.
type Percent struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Percentiles of ds (nearest rank).
func Percentiles(ds []time.Duration) Percent {
	if len(ds) == 0 {
		return Percent{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1
		i = min(max(i, 0), len(s)-1)
		return float64(s[i].Microseconds()) / 1000
	}
	return Percent{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: float64(s[len(s)-1].Microseconds()) / 1000}
}

// Run runs the bench and returns what it measured.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Dir == "" {
		return nil, errors.New("bench: no directory")
	}
	if o.Cases <= 0 {
		o.Cases = 100
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	o.Concurrency = min(o.Concurrency, o.Cases)
	if o.Attachment <= 0 {
		o.Attachment = 1 << 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	res := &Result{Cases: o.Cases, Concurrency: o.Concurrency, AttachmentB: o.Attachment, Fsync: !o.NoSync,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Open: o.Open}

	var (
		target *daemon
		err    error
	)
	if (o.IMAP != nil || o.SMTP != nil) && o.Daemon == "" {
		return nil, errors.New("bench: a given mail server needs the daemon in a process of its own")
	}
	res.IMAP, res.SMTP = "mailworld", "mailworld"
	if o.IMAP != nil {
		res.IMAP = o.IMAP.name()
	}
	if o.SMTP != nil {
		res.SMTP = o.SMTP.Addr
	}
	if o.Daemon != "" {
		target, err = startExternal(ctx, o, res)
	} else {
		target, err = startRig(ctx, o, res)
	}
	if err != nil {
		return nil, err
	}
	defer target.close()
	res.Daemon = target.kind
	employees := Employees("werknemer", 1, o.Cases)

	var probe *notifyProbe
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	if o.IMAP != nil && o.IMAP.Probe {
		if probe, err = startNotifyProbe(probeCtx, o.IMAP); err != nil {
			return nil, err
		}
		// On every path the probe has logged out before Run returns.
		defer func() {
			stopProbe()
			probe.stop()
		}()
	}
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	// A mail the given server did not take never reaches the daemon: the
	// run stops then, instead of waiting for its timeout.
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	if target.failed != nil {
		go func() {
			select {
			case <-target.failed:
				stopRun(target.deliveryErr())
			case <-runCtx.Done():
			}
		}()
	}
	var ret *retention
	if target.world != nil {
		ret = startRetention(runCtx, target.world, target.service)
	}
	waits0 := schedWaits()
	start := time.Now()
	dones, err := RunCases(runCtx, target.driver, target.cast, employees, o.Concurrency, o.Attachment, o.Progress)
	elapsed := time.Since(start)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if target.kind == "in-process" {
		res.SchedWait = schedWaitBetween(waits0, schedWaits())
	}
	if target.deliveryErr != nil {
		err = errors.Join(err, target.deliveryErr())
	}
	if ret != nil {
		held, rerr := ret.Stop()
		err = errors.Join(err, rerr)
		res.MailWorldMB = float64(2*held) / (1 << 20)
	}
	if err != nil {
		if target.problems != nil {
			if p := target.problems(5); p != "" {
				err = fmt.Errorf("%w\nthe daemon's last warnings and errors:\n%s", err, p)
			}
		}
		return nil, err
	}
	if probe != nil {
		stopProbe()
		delays, err := probe.stop()
		if err != nil {
			return nil, err
		}
		p := Percentiles(delays)
		res.IMAPNotify, res.IMAPNotifySamples = &p, len(delays)
	}
	res.Seconds = elapsed.Seconds()
	res.CasesPerSecond = float64(len(dones)) / elapsed.Seconds()
	res.CPUSeconds = cpu(ru1) - cpu(ru0)
	var caseTimes, reactions []time.Duration
	bystep := map[string][]time.Duration{}
	for _, dn := range dones {
		caseTimes = append(caseTimes, dn.Duration)
		for _, r := range dn.Reactions {
			reactions = append(reactions, r.Took)
			bystep[r.Step] = append(bystep[r.Step], r.Took)
		}
	}
	res.Reaction, res.Reactions = Percentiles(reactions), len(reactions)
	res.ReactionByStep = map[string]Percent{}
	for step, ds := range bystep {
		res.ReactionByStep[step] = Percentiles(ds)
	}
	res.CaseMS = Percentiles(caseTimes)
	tr := target.driver.Box.Traffic()
	res.MailsIn, res.MailsOut, res.Duplicates = tr.Inbound, tr.Outbound, tr.Duplicates
	res.PeakRSSMB = float64(target.peakRSS()) / (1 << 20)
	if err := target.stop(); err != nil {
		return nil, err
	}
	if target.cpu != nil {
		res.DaemonCPUSeconds = target.cpu().Seconds()
	}

	st, err := store.Open(ctx, target.dataDir, &store.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	for _, dn := range dones {
		c, err := st.CaseByRef(ctx, dn.Ref)
		if err != nil {
			return nil, err
		}
		if c.State != procedure.StateCompleted {
			return nil, fmt.Errorf("case %s ended %s, want completed", dn.Ref, c.State)
		}
	}
	if q, err := st.Quarantined(ctx); err != nil {
		return nil, err
	} else if len(q) > 0 {
		return nil, fmt.Errorf("%d messages quarantined, first: %s", len(q), q[0].Reason)
	}
	size, err := DirSize(target.dataDir)
	if err != nil {
		return nil, err
	}
	res.DataDirBytes = size
	res.DBBytesPerCase = size / int64(o.Cases+o.Open)
	return res, nil
}

// daemon is the daemon under test with its mail world and participants.
type daemon struct {
	kind    string // "in-process" or "external"
	driver  *Driver
	cast    Cast
	dataDir string
	// world, if set, holds the service's mailbox (service); the bench's
	// retention runs over it.
	world   *mailworld.World
	service string
	peakRSS func() int64
	stop    func() error // stops the daemon (the store may then be opened)
	cpu     func() time.Duration
	// deliveryErr, if set, is the first failed delivery to a given IMAP
	// server; failed is closed when there is one.
	deliveryErr func() error
	failed      <-chan struct{}
	// problems, if set, is the last n warnings and errors of the daemon's
	// log, shown with a failed run.
	problems func(n int) string
	close    func()
}

// startRig runs the daemon in this process on the rig.
func startRig(ctx context.Context, o Options, res *Result) (*daemon, error) {
	if o.Open > 0 {
		t0 := time.Now()
		if err := OpenCases(ctx, filepath.Join(o.Dir, "data"), o.Open, o.NoSync); err != nil {
			return nil, fmt.Errorf("open %d cases: %w", o.Open, err)
		}
		res.OpenSetupSeconds = time.Since(t0).Seconds()
		runtime.GC()
		debug.FreeOSMemory()
		if err := ResetPeakRSS(); err != nil {
			return nil, err
		}
	}
	box := NewPostbox("so@" + rig.ServiceDomain)
	r, err := rig.Start(ctx, rig.Options{Dir: o.Dir, NoSync: o.NoSync, Logger: o.Logger, OnAccept: box.Accept,
		PollInterval: time.Second, Relay: true})
	if err != nil {
		return nil, err
	}
	if o.Open > 0 {
		// The sweep runs over every open case, as the cron would.
		if _, err := r.Engine.Sweep(ctx); err != nil {
			r.Close()
			return nil, err
		}
	}
	// Mail sent while the ingester is still logging in and selecting is
	// sometimes never seen by its IMAP session (about 1 run in 20 on the
	// in-process server: the session's IDLE/NOOP/SEARCH keep missing it
	// until it reconnects); give it a moment to reach IDLE first.
	time.Sleep(300 * time.Millisecond)
	keys, err := ParticipantKeyring(filepath.Join(o.Dir, "participant-keys"), r.Service.Public(), r.Clock.Now())
	if err != nil {
		r.Close()
		return nil, err
	}
	d := &Driver{SMTPAddr: r.World.SMTPAddr(), Service: r.Service.Public(), Keys: keys, Box: box, Now: r.Clock.Now,
		Tag: fmt.Sprintf("%d", time.Now().UnixNano())}
	cast := Cast{Service: r.Info.Address(), SO: map[string]*Person{}}
	conv := func(p *rig.Person) *Person { return &Person{Name: p.Name, Addr: p.Addr, Key: p.Key} }
	cast.Original = conv(r.Person(rig.AddrOriginal))
	for _, p := range rig.DemoRegistry().Physicians {
		if p.HasRole(registry.RoleSecondOpinion) {
			cast.SO[p.Name] = conv(r.Person(p.Email))
		}
	}
	closed := false
	stop := func() error {
		if closed {
			return nil
		}
		closed = true
		return r.Close()
	}
	return &daemon{kind: "in-process", driver: d, cast: cast, dataDir: filepath.Join(o.Dir, "data"),
		world: r.World, service: r.Info.Address(),
		peakRSS: PeakRSS, stop: stop, close: func() { stop() }}, nil
}

// startExternal runs `secondopinion serve` from o.Daemon in a process of
// its own (fsync on, as configured for real); the peak RSS is that
// process's alone.
func startExternal(ctx context.Context, o Options, res *Result) (*daemon, error) {
	x, err := NewExternal(o.Dir, o.Daemon, Given{IMAP: o.IMAP, SMTP: o.SMTP})
	if err != nil {
		return nil, err
	}
	if o.Open > 0 {
		t0 := time.Now()
		if err := OpenCases(ctx, x.DataDir(), o.Open, true); err != nil {
			x.Close()
			return nil, fmt.Errorf("open %d cases: %w", o.Open, err)
		}
		res.OpenSetupSeconds = time.Since(t0).Seconds()
	}
	if err := x.Start(); err != nil {
		x.Close()
		return nil, err
	}
	if err := x.WaitReady(ctx); err != nil {
		x.Close()
		return nil, err
	}
	res.Fsync = true
	var peak int64
	d := &daemon{kind: "external", driver: x.Driver, cast: x.Cast, dataDir: x.DataDir(),
		peakRSS: func() int64 { peak = x.PeakRSS(); return peak },
		stop:    x.Stop, cpu: x.CPU, deliveryErr: x.DeliveryError, failed: x.Failed(), problems: x.logProblems, close: func() { x.Close() }}
	if o.IMAP == nil {
		d.world, d.service = x.World, ServiceAddr // else the given server holds it
	}
	return d, nil
}

func cpu(r syscall.Rusage) float64 {
	return float64(r.Utime.Sec+r.Stime.Sec) + float64(r.Utime.Usec+r.Stime.Usec)/1e6
}

// RunCases plays one CaseScript per employee, concurrency at a time, and
// returns the finished cases; the first failure stops the rest.
func RunCases(ctx context.Context, d *Driver, cast Cast, employees []*Person, concurrency, attachment int, progress func(done, total int)) ([]*Done, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan *Person)
	var mu sync.Mutex
	var dones []*Done
	var errs []error
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for emp := range next {
				s := &CaseScript{D: d, Cast: cast, Employee: emp, Attachment: attachment, Quote: true}
				dn, err := s.Run(ctx)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel(err)
					return
				}
				mu.Lock()
				dones = append(dones, dn)
				n := len(dones)
				mu.Unlock()
				if progress != nil {
					progress(n, len(employees))
				}
			}
		}()
	}
feed:
	for _, e := range employees {
		select {
		case next <- e:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return dones, fmt.Errorf("%d of %d cases done; %w", len(dones), len(employees), errors.Join(errs...))
	}
	if err := context.Cause(ctx); err != nil {
		return dones, err
	}
	return dones, nil
}

// OpenCases opens n cases to the choosing state in the store at dataDir,
// through an engine's Handle (a request, then the intake answer), the way
// the daemon would after the mail; their outgoing mail is marked sent
// without delivery. The engine uses throwaway keys of its own; the rig
// that runs afterwards makes its own.
func OpenCases(ctx context.Context, dataDir string, n int, noSync bool) error {
	st, err := store.Open(ctx, dataDir, &store.Options{NoSync: noSync})
	if err != nil {
		return err
	}
	defer st.Close()
	keysDir := filepath.Join(filepath.Dir(dataDir), "open-keys")
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return err
	}
	keys, err := pgpmime.OpenKeyring(keysDir)
	if err != nil {
		return err
	}
	now := rig.DefaultStart
	reg := rig.DemoRegistry()
	svcArmored, err := pgpmime.GenerateServiceKey("bench", "so@"+rig.ServiceDomain, now.Add(-24*time.Hour), nil)
	if err != nil {
		return err
	}
	if _, err := keys.WriteServiceKey(svcArmored); err != nil {
		return err
	}
	svc, err := pgpmime.ParseServiceKey(svcArmored, nil)
	if err != nil {
		return err
	}
	for _, p := range reg.Physicians {
		armored, err := pgpmime.GenerateServiceKey(p.Name, p.Email, now.Add(-24*time.Hour), nil)
		if err != nil {
			return err
		}
		k, err := pgpmime.ParseServiceKey(armored, nil)
		if err != nil {
			return err
		}
		pub, err := k.ArmoredPublic()
		if err != nil {
			return err
		}
		if _, err := keys.Import(pub, now); err != nil {
			return err
		}
	}
	cal, err := workdays.New(workdays.Policy{})
	if err != nil {
		return err
	}
	eng, err := engine.New(engine.Options{Store: st, Registry: reg, Policy: procedure.DefaultPolicy(cal), Calendar: cal,
		Keyring: keys, Service: svc, TokenKey: []byte(strings.Repeat("open-cases-token-key-", 2)),
		Info: engine.ServiceInfo{LocalPart: "so", Domain: rig.ServiceDomain, DisplayName: "Second opinion bedrijfsarts",
			Provider: "Arbo Noord", Backoffice: rig.AddrBackoffice, Lang: "nl"},
		Templates: templates.FS, Clock: fixedClock(now)})
	if err != nil {
		return err
	}
	var orig procedure.Physician
	var cands []procedure.Physician
	for _, p := range reg.Physicians {
		pp := procedure.Physician{ID: p.ID, Name: p.Name, Email: p.Email, Arbodienst: p.Arbodienst, InPool: p.Pool, Lang: "nl"}
		if p.Email == rig.AddrOriginal {
			orig = pp
		}
		if p.HasRole(registry.RoleSecondOpinion) {
			cands = append(cands, pp)
		}
	}
	e := reg.Employers[0]
	emp := procedure.Employer{ID: e.ID, Name: e.Name, Contract: procedure.Contract(e.Contract), NoticeEmail: e.NoticeEmail}
	for i := range n {
		c, err := eng.Handle(ctx, 0, procedure.Request{From: procedure.RoleEmployee,
			Employee: procedure.Person{Name: fmt.Sprintf("Open %d", i+1), Email: fmt.Sprintf("open%06d@mail.example", i+1)},
			Employer: &emp, OriginalPhysician: &orig, Subject: procedure.SubjectVerzuim,
			Question: "Kan ik mijn eigen werk in aangepaste vorm hervatten?"}, engine.Source{Via: "bench"})
		if err != nil {
			return fmt.Errorf("request %d: %w", i+1, err)
		}
		// The document is described, not stored: these cases stay in the
		// choosing state, where nothing reads its bytes.
		sum := sha256.Sum256([]byte(c.Ref))
		doc := procedure.Document{Title: "Probleemanalyse", Name: "Probleemanalyse.pdf", SHA256: hex.EncodeToString(sum[:]), Size: 1 << 20, Date: now}
		if _, err := eng.Handle(ctx, c.ID, procedure.IntakeAnswer{Candidates: cands, Documents: []procedure.Document{doc}}, engine.Source{Via: "bench"}); err != nil {
			return fmt.Errorf("intake %d: %w", i+1, err)
		}
		if (i+1)%500 == 0 || i+1 == n {
			if err := drainOutbox(ctx, st, now); err != nil {
				return err
			}
		}
	}
	states, err := st.CountByState(ctx)
	if err != nil {
		return err
	}
	if states[procedure.StateChoosing] < n {
		return fmt.Errorf("only %d of %d cases choosing: %v", states[procedure.StateChoosing], n, states)
	}
	return nil
}

// drainOutbox marks every queued mail sent (the open cases' mail is not
// what the bench measures).
func drainOutbox(ctx context.Context, st *store.Store, now time.Time) error {
	for {
		items, err := st.DueOutbox(ctx, now.Add(time.Hour), 500)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return nil
		}
		for _, it := range items {
			if err := st.OutboxSent(ctx, it.ID, now); err != nil {
				return err
			}
		}
	}
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

// DirSize is the total size of the regular files under dir.
func DirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// PeakRSS is the process's peak resident set size in bytes (VmHWM from
// /proc/self/status; 0 where there is none).
func PeakRSS() int64 { return procStatusKB("/proc/self/status", "VmHWM:") * 1024 }

// PeakRSSOf is another process's peak resident set size in bytes.
func PeakRSSOf(pid int) int64 {
	return procStatusKB(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:") * 1024
}

func procStatusKB(path, field string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb
		}
	}
	return 0
}

// ResetPeakRSS resets the kernel's peak RSS record of this process
// (writing 5 to /proc/self/clear_refs), so that setup work does not count.
func ResetPeakRSS() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}
