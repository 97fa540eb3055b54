package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"secondopinion/internal/bench"
	"secondopinion/internal/config"
	"secondopinion/internal/loopback"
	"secondopinion/internal/mailin"
)

var cmdBench = &command{
	name:    "bench",
	args:    "[--cases N] [--concurrency C] [--attachment-size 1MB] [--nosync] [--open N] [--external] [--imap HOST:PORT --imap-user U --imap-password-file F] [--smtp HOST:PORT --listen ADDR] [--json] [--out DIR]",
	summary: "measure the daemon: complete cases per second, reaction times, memory, database size",
	help: `Runs N complete cases (request, intake with a medical file of the given size
signed and encrypted, choice, both signatures, acceptance with a date, advice,
feedback consent, completion) through the daemon on the embedded mail servers,
with scripted participants, C cases in flight at once.

Reports complete cases per second; the daemon's reaction time per step, from a
participant's mail accepted by SMTP to the daemon's answer accepted by SMTP
(p50/p95/p99); the process's peak RSS (VmHWM: daemon, mail world and
participants together; mailworld_mb is the most mail the embedded servers
held at once); database bytes per case (the data dir's size over the
cases); and, in-process, how long the process's goroutines waited for a core
once ready to run (sched_wait_ms).

The embedded IMAP server keeps the service's mail only while the daemon may
need it: four times a second the bench expunges the inbox's mail the daemon
has handled (flagged \Seen) and the sent copies filed before the previous
round, as a mailbox's retention would.

--open N first opens N cases to the choosing state through the engine (not by
mail; their mail is marked sent undelivered), resets the peak RSS, and then
runs the cases: the peak RSS is then the daemon's with N open cases.

--external runs the daemon as 'secondopinion serve' (this binary) in a process
of its own, on a generated configuration, against the embedded mail servers in
the bench's process: the peak RSS is then the daemon's alone (fsync always on).

--imap HOST:PORT puts the service's mailbox on that IMAP server (a test
account, --imap-user, with its password in --imap-password-file): the daemon
runs as with --external and reads that mailbox, waiting in IDLE as configured
for real; the bench delivers the service's mail into it by APPEND, and
measures the server's own notification delay in a folder of its own
(bench-probe; imap_notify_ms in the JSON). The inbox must be empty: the bench
refuses to start otherwise, and leaves the handled mail in the folder
Verwerkt. --imap-security is tls (default), starttls, or plain (loopback
only); TLS trusts the system's roots and, with --imap-ca FILE, the PEM
certificates in FILE (a staging CA; the daemon's imap.ca_file).

--smtp HOST:PORT has the daemon submit its mail to that SMTP server (a relay
of a staging setup; --smtp-user and --smtp-password-file if it wants AUTH,
--smtp-security and --smtp-ca as for IMAP) instead of the bench's own SMTP server. The relay
must pass every mail on to the bench's SMTP server, which then listens on
--listen (host:port; Postfix: relayhost = [host]:port): the participants read
their mail there, and the service's sent copies go on to its mailbox. A
reaction then ends when the answer has come through the relay.

--nosync turns off fsync in the store (throwaway data only; in-process).`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		cases := fs.Int("cases", 100, "complete cases to run")
		conc := fs.Int("concurrency", 8, "cases in flight at once")
		size := fs.String("attachment-size", "1MB", "size of the medical file (e.g. 1MB, 512KiB, 20000)")
		noSync := fs.Bool("nosync", false, "turn off fsync in the store")
		open := fs.Int("open", 0, "open this many cases to the choosing state before the run")
		asJSON := fs.Bool("json", false, "print one JSON object")
		out := fs.String("out", "", "directory for the daemon's data (default: a temporary one, removed afterwards)")
		timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
		cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
		verbose := fs.Bool("v", false, "log the daemon to stderr (in-process)")
		external := fs.Bool("external", false, "run the daemon as 'secondopinion serve' in a process of its own (fsync on); peak RSS is then the daemon's alone")
		imapAddr := fs.String("imap", "", "the IMAP server (host:port) that holds the service's mailbox (implies --external)")
		imapUser := fs.String("imap-user", "", "with --imap: the test account the daemon reads")
		imapPassFile := fs.String("imap-password-file", "", "with --imap: file holding the account's password")
		imapSec := fs.String("imap-security", "tls", "with --imap: tls, starttls, or plain (loopback only)")
		imapCA := fs.String("imap-ca", "", "with --imap: PEM file of CA certificates trusted besides the system's")
		smtpAddr := fs.String("smtp", "", "the SMTP relay (host:port) the daemon submits to (implies --external; needs --listen)")
		smtpUser := fs.String("smtp-user", "", "with --smtp: the account to log in with (none: no AUTH)")
		smtpPassFile := fs.String("smtp-password-file", "", "with --smtp-user: file holding its password")
		smtpSec := fs.String("smtp-security", "tls", "with --smtp: tls, starttls, or plain (loopback only)")
		smtpCA := fs.String("smtp-ca", "", "with --smtp: PEM file of CA certificates trusted besides the system's")
		listen := fs.String("listen", "", "with --smtp: the bench's SMTP listen address (host:port), where the relay passes all mail on to")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%w: unexpected argument %q", errUsage, args[0])
			}
			n, err := parseSize(*size)
			if err != nil {
				return fmt.Errorf("%w: --attachment-size: %v", errUsage, err)
			}
			if *cases <= 0 || *conc <= 0 || *open < 0 {
				return fmt.Errorf("%w: --cases and --concurrency must be positive, --open not negative", errUsage)
			}
			dir := *out
			if dir == "" {
				if dir, err = os.MkdirTemp("", "secondopinion-bench-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			} else if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			o := bench.Options{Dir: dir, Cases: *cases, Concurrency: *conc, Attachment: n, NoSync: *noSync,
				Open: *open, Timeout: *timeout}
			if *imapAddr != "" {
				if o.IMAP, err = givenIMAP(*imapAddr, *imapUser, *imapPassFile, *imapSec, *imapCA); err != nil {
					return err
				}
			}
			if *smtpAddr != "" {
				if o.SMTP, err = givenSMTP(*smtpAddr, *smtpUser, *smtpPassFile, *smtpSec, *smtpCA, *listen); err != nil {
					return err
				}
			}
			if *external || o.IMAP != nil || o.SMTP != nil {
				if *noSync {
					return fmt.Errorf("%w: --nosync is in-process only; with --external, --imap or --smtp the daemon runs as configured for real", errUsage)
				}
				if o.Daemon, err = os.Executable(); err != nil {
					return err
				}
			}
			if *verbose {
				o.Logger = slog.New(slog.NewTextHandler(e.stderr, nil))
			}
			if !*asJSON {
				o.Progress = func(done, total int) {
					if done%max(total/10, 1) == 0 || done == total {
						fmt.Fprintf(e.stderr, "\r%d/%d cases", done, total)
						if done == total {
							fmt.Fprintln(e.stderr)
						}
					}
				}
			}
			if *cpuProfile != "" {
				f, err := os.Create(*cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			res, err := bench.Run(ctx, o)
			if err != nil {
				return err
			}
			if *asJSON {
				enc := json.NewEncoder(e.stdout)
				return enc.Encode(res)
			}
			printBench(e, res)
			return nil
		}
	},
}

// givenIMAP checks the --imap flags and reads the password.
func givenIMAP(addr, user, passFile, security, caFile string) (*bench.IMAPServer, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w: --imap %q: want host:port", errUsage, addr)
	}
	if user == "" || passFile == "" {
		return nil, fmt.Errorf("%w: --imap needs --imap-user and --imap-password-file", errUsage)
	}
	if err := checkTLSFlags("imap", addr, security, caFile); err != nil {
		return nil, err
	}
	pass, err := config.LoadSecret(passFile, "")
	if err != nil {
		return nil, fmt.Errorf("--imap-password-file: %w", err)
	}
	return &bench.IMAPServer{Addr: addr, Security: mailin.Security(security), CAFile: caFile, User: user, Password: string(pass), Probe: true}, nil
}

// givenSMTP checks the --smtp flags and reads the password.
func givenSMTP(addr, user, passFile, security, caFile, listen string) (*bench.SMTPServer, error) {
	for flag, a := range map[string]string{"--smtp": addr, "--listen": listen} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%w: %s %q: want host:port", errUsage, flag, a)
		}
	}
	if err := checkTLSFlags("smtp", addr, security, caFile); err != nil {
		return nil, err
	}
	s := &bench.SMTPServer{Addr: addr, Security: security, CAFile: caFile, User: user, Listen: listen}
	if (user == "") != (passFile == "") {
		return nil, fmt.Errorf("%w: --smtp-user and --smtp-password-file go together", errUsage)
	}
	if user != "" {
		pass, err := config.LoadSecret(passFile, "")
		if err != nil {
			return nil, fmt.Errorf("--smtp-password-file: %w", err)
		}
		s.Password = string(pass)
	}
	return s, nil
}

// checkTLSFlags checks --imap-security or --smtp-security and the CA file
// of --imap-ca or --smtp-ca, as the daemon's configuration check does
// security and ca_file, before anything starts.
func checkTLSFlags(server, addr, security, caFile string) error {
	switch security {
	case config.SecurityTLS, config.SecurityStartTLS:
	case config.SecurityPlain:
		if !loopback.Addr(addr) {
			return fmt.Errorf("%w: --%s-security plain is for a loopback server only, not %q", errUsage, server, addr)
		}
	default:
		return fmt.Errorf("%w: --%s-security %q: want tls, starttls or plain", errUsage, server, security)
	}
	if caFile == "" {
		return nil
	}
	if security == config.SecurityPlain {
		return fmt.Errorf("%w: --%s-ca is for tls or starttls, not plain", errUsage, server)
	}
	if _, err := config.LoadCAFile(caFile); err != nil {
		return fmt.Errorf("%w: --%s-ca: %v", errUsage, server, err)
	}
	return nil
}

func printBench(e *env, r *bench.Result) {
	w := e.stdout
	sync := "on"
	if !r.Fsync {
		sync = "off"
	}
	fmt.Fprintf(w, "%d cases, %d in flight, %s medical file, fsync %s, daemon %s, %d CPUs, %s\n",
		r.Cases, r.Concurrency, boSize(int64(r.AttachmentB)), sync, r.Daemon, r.CPUs, r.GoVersion)
	if r.IMAP != "mailworld" || r.SMTP != "mailworld" {
		fmt.Fprintf(w, "mail servers: IMAP %s, SMTP %s\n", r.IMAP, r.SMTP)
	}
	if r.Open > 0 {
		fmt.Fprintf(w, "open cases before the run: %d (set up in %.1f s)\n", r.Open, r.OpenSetupSeconds)
	}
	fmt.Fprintf(w, "complete cases per second: %.1f  (%.2f s; CPU %.2f s, %.0f ms per case)\n",
		r.CasesPerSecond, r.Seconds, r.CPUSeconds, 1000*r.CPUSeconds/float64(r.Cases))
	if r.DaemonCPUSeconds > 0 {
		fmt.Fprintf(w, "daemon CPU:                %.2f s, %.0f ms per case (the bench process's above: mail servers and participants)\n",
			r.DaemonCPUSeconds, 1000*r.DaemonCPUSeconds/float64(r.Cases))
	}
	fmt.Fprintf(w, "reaction per step (ms):    p50 %.1f  p95 %.1f  p99 %.1f  max %.1f  (%d steps)\n",
		r.Reaction.P50, r.Reaction.P95, r.Reaction.P99, r.Reaction.Max, r.Reactions)
	for _, step := range bench.ReactionSteps {
		if p, ok := r.ReactionByStep[step]; ok {
			fmt.Fprintf(w, "  %-23s p50 %.1f  p95 %.1f  p99 %.1f  max %.1f\n", step+":", p.P50, p.P95, p.P99, p.Max)
		}
	}
	if sw := r.SchedWait; sw != nil {
		fmt.Fprintf(w, "wait for a core (ms):      p50 %.3f  p95 %.3f  p99 %.3f  max %.1f  (goroutines of the process, once ready)\n",
			sw.P50, sw.P95, sw.P99, sw.Max)
	}
	if n := r.IMAPNotify; n != nil {
		fmt.Fprintf(w, "IMAP server %s, its own notification delay (ms): p50 %.1f  p99 %.1f  (%d samples); reaction p99 above it: %.1f\n",
			r.IMAP, n.P50, n.P99, r.IMAPNotifySamples, r.Reaction.P99-n.P99)
	}
	fmt.Fprintf(w, "case, request to completion (ms): p50 %.0f  p95 %.0f  p99 %.0f\n", r.CaseMS.P50, r.CaseMS.P95, r.CaseMS.P99)
	if r.Daemon == "external" {
		fmt.Fprintf(w, "peak RSS of the daemon:    %.1f MB\n", r.PeakRSSMB)
	} else {
		fmt.Fprintf(w, "peak RSS:                  %.1f MB (the whole process; at most %.1f MB of it mail held by the embedded servers)\n", r.PeakRSSMB, r.MailWorldMB)
	}
	fmt.Fprintf(w, "database bytes per case:   %s (data dir %s)\n", boSize(int64(r.DBBytesPerCase)), boSize(int64(r.DataDirBytes)))
	fmt.Fprintf(w, "mail: %d in, %d out, %d duplicates\n", r.MailsIn, r.MailsOut, r.Duplicates)
}

// parseSize reads 1MB, 512KiB, 1.5MiB, 20000 (bytes). MB and MiB are both
// taken as 2^20: the bench's sizes are file sizes, not disk marketing.
func parseSize(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f*mult > 1<<30 {
		return 0, fmt.Errorf("%q is not a size between 1 byte and 1 GiB", s)
	}
	return int(f * mult), nil
}
