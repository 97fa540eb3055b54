package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"secondopinion/internal/bench"
	"secondopinion/internal/procedure"
	"secondopinion/internal/store"
	"secondopinion/internal/testenv"
)

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// TestKill9UnderLoad runs cases while the daemon is killed with SIGKILL
// at random moments and restarted; then it checks every case, every
// message and the audit chain.
func TestKill9UnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the daemon")
	}
	kill9UnderLoad(t, nil)
}

// TestKill9UnderLoadDovecot is TestKill9UnderLoad with the service's
// mailbox on a real Dovecot: its UIDs, MOVE and sent-copy folder across
// the kills, and the daemon reconnecting to it at every start.
func TestKill9UnderLoadDovecot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the daemon")
	}
	const pass = "crash-dovecot"
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{bench.ServiceAddr: pass}})
	kill9UnderLoad(t, &bench.IMAPServer{Name: "dovecot", Addr: dc.Addr, Password: pass, Deliver: dc.DeliverTo})
}

// kill9UnderLoad is the crash test, with the service's mailbox on imap
// (nil: the mail world's).
func kill9UnderLoad(t *testing.T, imap *bench.IMAPServer) {
	kills := envInt(t, "CRASH_KILLS", 20)
	minCases := envInt(t, "CRASH_CASES", 6)
	attachment := envInt(t, "CRASH_ATTACHMENT", 256<<10)
	concurrency := envInt(t, "CRASH_CONCURRENCY", 4)
	seed := uint64(envInt(t, "CRASH_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("CRASH_KILLS=%d CRASH_CASES=%d CRASH_ATTACHMENT=%d CRASH_CONCURRENCY=%d CRASH_SEED=%d", kills, minCases, attachment, concurrency, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	bin := testenv.BuildDaemon(t)
	dir := t.TempDir()
	x, err := bench.NewExternal(dir, bin, bench.Given{IMAP: imap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	timeout := 60*time.Second + time.Duration(kills)*2*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	if err := x.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// The killer: SIGKILL at a random moment, restart at once, until the
	// kills are done. The daemon is killed whatever it is doing: ingesting,
	// deciding, committing, delivering.
	killerDone := make(chan struct{})
	var killErr error
	go func() {
		defer close(killerDone)
		for i := 0; i < kills; i++ {
			select {
			case <-ctx.Done():
				killErr = ctx.Err()
				return
			case <-time.After(time.Duration(50+rng.IntN(450)) * time.Millisecond):
			}
			if !x.Running() {
				killErr = fmt.Errorf("the daemon exited on its own before kill %d (see %s/daemon.log)", i+1, dir)
				return
			}
			if err := x.Kill(); err != nil {
				killErr = err
				return
			}
			if err := x.Start(); err != nil {
				killErr = err
				return
			}
		}
	}()

	// The load: cases, concurrency at a time, until the kills are done and
	// at least minCases have been started.
	var (
		mu    sync.Mutex
		dones []*bench.Done
		errs  []error
		wg    sync.WaitGroup
		next  = make(chan *bench.Person)
	)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for emp := range next {
				s := &bench.CaseScript{D: x.Driver, Cast: x.Cast, Employee: emp, Attachment: attachment}
				d, err := s.Run(ctx)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					dones = append(dones, d)
				}
				mu.Unlock()
			}
		}()
	}
	started := 0
feed:
	for {
		select {
		case <-killerDone:
			if started >= minCases {
				break feed
			}
		default:
		}
		select {
		case next <- bench.Employees("crash", started+1, 1)[0]:
			started++
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	<-killerDone
	if killErr != nil {
		t.Fatalf("killer: %v\n%s", killErr, logTail(dir, 40))
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d cases failed; first: %v\n%s\n%s", len(errs), started, errs[0], caseLog(dir, errs[0]), logTail(dir, 20))
	}
	// Let the daemon finish what it sends after the last answer (e.g. a
	// backoffice notice), then stop it cleanly.
	settle(ctx, x)
	peak := x.PeakRSS()
	if err := x.Stop(); err != nil {
		t.Fatal(err)
	}
	tr := x.Box.Traffic()
	t.Logf("%d cases through %d kills (%d daemon starts); %d mails in, %d out (%d distinct), %d sent twice; daemon peak RSS %.1f MB",
		len(dones), kills, x.Starts, tr.Inbound, tr.Outbound, tr.Distinct, tr.Duplicates, float64(peak)/(1<<20))
	if log, err := os.ReadFile(filepath.Join(dir, "daemon.log")); err == nil {
		t.Logf("mails cut off by a kill: %d found in the sent-copy folder (not sent again), %d not found there (sent again)",
			strings.Count(string(log), `by="sent copy"`), strings.Count(string(log), "no sent copy"))
	}
	check(t, x, dones, started, kills, tr)
}

// settle waits until the daemon's mail has been quiet for a moment.
func settle(ctx context.Context, x *bench.External) {
	// The daemon's store, read beside it (SQLite WAL): a mail a kill cut
	// off is sent again only once its sent copy has not come for the
	// configured wait (3 s), which quiet traffic alone does not show.
	st, err := store.Open(ctx, x.DataDir(), nil)
	if err == nil {
		defer st.Close()
	}
	last := -1
	for {
		n := x.Box.Traffic().Outbound
		pending := false
		if st != nil {
			o, err := st.OutboxStats(ctx)
			pending = err == nil && o.Queued+o.Sending > 0
		}
		if n == last && !pending {
			return
		}
		last = n
		select {
		case <-ctx.Done():
			return
		case <-time.After(1500 * time.Millisecond):
		}
	}
}

// check opens the stopped daemon's store and checks the promises.
func check(t *testing.T, x *bench.External, dones []*bench.Done, started, kills int, tr bench.Traffic) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, x.DataDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// Every case in the right state, and exactly one case per request (a
	// request handled twice would open a second case).
	cases, err := st.Cases(ctx, store.CaseFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != started {
		t.Errorf("%d cases in the store for %d requests", len(cases), started)
	}
	for _, c := range cases {
		if c.State != procedure.StateCompleted {
			t.Errorf("case %s is %s, want %s", c.Ref, c.State, procedure.StateCompleted)
		}
	}

	// Every inbound message had exactly one effect: none pending, none
	// quarantined (a message handled twice would find its question closed
	// and be quarantined as a replay), and every case took the same steps.
	if p, err := st.PendingInbound(ctx, 10); err != nil || len(p) > 0 {
		t.Errorf("inbound still pending: %d (%v)", len(p), err)
	}
	if q, err := st.Quarantined(ctx); err != nil || len(q) > 0 {
		for _, m := range q {
			t.Errorf("quarantined: message %d %s: %s", m.ID, m.MessageID, m.Reason)
		}
	}
	if tr.Inbound != started*bench.Steps {
		t.Errorf("the participants sent %d mails, want %d", tr.Inbound, started*bench.Steps)
	}
	var want []string
	var wantRef string
	for _, c := range cases {
		log, err := st.AuditLog(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		var events []string
		for _, e := range log {
			events = append(events, e.Event)
		}
		if want == nil {
			want, wantRef = events, c.Ref
			continue
		}
		if !slices.Equal(events, want) {
			t.Errorf("case %s took other steps than case %s:\n got %v\nwant %v", c.Ref, wantRef, events, want)
		}
	}

	// No outbound message lost: every outbox row was sent, and the SMTP
	// server received each (distinct Message-IDs) — and every case got
	// the same number of mails.
	ob, err := st.OutboxStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ob.Queued != 0 || ob.Sending != 0 || ob.Failed != 0 {
		t.Errorf("outbox: %d queued, %d sending, %d failed after the run", ob.Queued, ob.Sending, ob.Failed)
	}
	if ob.Sent != tr.Distinct {
		t.Errorf("outbox has %d mails sent, the SMTP server received %d distinct Message-IDs", ob.Sent, tr.Distinct)
	}
	per := -1
	for ref, n := range tr.PerCase {
		if per < 0 {
			per = n
		} else if n != per {
			t.Errorf("case %s: %d distinct mails from the daemon, other cases %d", ref, n, per)
		}
	}
	// Nothing sent twice: a mail cut off by a kill is settled by its copy
	// in the sent-copy folder, not sent again blindly.
	if tr.Duplicates > 0 {
		t.Errorf("%d mails sent twice in %d kills: %s", tr.Duplicates, kills, strings.Join(tr.DuplicateIDs, " "))
	}
	if tr.Filed != ob.Sent {
		t.Errorf("%d copies filed in the sent-copy folder for %d mails sent", tr.Filed, ob.Sent)
	}

	n, err := st.VerifyAudit(ctx)
	if err != nil {
		t.Errorf("audit chain: %v", err)
	}
	if len(dones) != started {
		t.Errorf("%d of %d cases completed by their participants", len(dones), started)
	}
	t.Logf("audit chain verified: %d entries; %d cases completed, each with %d daemon mails", n, len(cases), per)
}

// caseLog is every line of the daemon's log in dir about the case a
// failure names ([SO-2026-0008] in its subject): its steps and the
// deliveries of its mails, across the kills.
func caseLog(dir string, failure error) string {
	ref := caseRef.FindString(failure.Error())
	if ref == "" {
		return ""
	}
	all, err := logLines(dir)
	if err != nil {
		return "daemon.log: " + err.Error()
	}
	var lines []string
	for _, l := range all {
		if strings.Contains(l, ref) || strings.Contains(l, strings.ToLower(ref)) {
			lines = append(lines, l)
		}
	}
	return "daemon.log, lines about " + ref + ":\n" + strings.Join(lines, "\n")
}

var caseRef = regexp.MustCompile(`SO-\d{4}-\d{4}`)

// logTail is the end of the daemon's log in dir, for a failure's message:
// the test's directory is gone once it fails.
func logTail(dir string, lines int) string {
	all, err := logLines(dir)
	if err != nil {
		return "daemon.log: " + err.Error()
	}
	return "daemon.log, last lines:\n" + strings.Join(all[max(0, len(all)-lines):], "\n")
}

// logLines reads the daemon's log in dir.
func logLines(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n"), nil
}
