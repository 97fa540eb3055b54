package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"secondopinion/internal/bench"
)

var cmdBench = &command{
	name:    "bench",
	args:    "[--cases N] [--concurrency C] [--attachment-size 1MB] [--nosync] [--open N] [--external] [--json] [--out DIR]",
	summary: "measure the daemon: complete cases per second, reaction times, memory, database size",
	help: `Runs N complete cases (request, intake with a medical file of the given size
signed and encrypted, choice, both signatures, acceptance with a date, advice,
feedback consent, completion) through the daemon on the embedded mail servers,
with scripted participants, C cases in flight at once.

Reports complete cases per second; the daemon's reaction time per step, from a
participant's mail accepted by SMTP to the daemon's answer accepted by SMTP
(p50/p95/p99); the process's peak RSS (VmHWM: daemon, mail world and
participants together; mailworld_mb is the mail the embedded servers hold);
and database bytes per case (the data dir's size over the cases).

--open N first opens N cases to the choosing state through the engine (not by
mail; their mail is marked sent undelivered), resets the peak RSS, and then
runs the cases: the peak RSS is then the daemon's with N open cases.

--external runs the daemon as 'secondopinion serve' (this binary) in a process
of its own, on a generated configuration, against the embedded mail servers in
the bench's process: the peak RSS is then the daemon's alone (fsync always on).

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
			if *external {
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

func printBench(e *env, r *bench.Result) {
	w := e.stdout
	sync := "on"
	if !r.Fsync {
		sync = "off"
	}
	fmt.Fprintf(w, "%d cases, %d in flight, %s medical file, fsync %s, daemon %s, %d CPUs, %s\n",
		r.Cases, r.Concurrency, boSize(int64(r.AttachmentB)), sync, r.Daemon, r.CPUs, r.GoVersion)
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
	fmt.Fprintf(w, "case, request to completion (ms): p50 %.0f  p95 %.0f  p99 %.0f\n", r.CaseMS.P50, r.CaseMS.P95, r.CaseMS.P99)
	if r.Daemon == "external" {
		fmt.Fprintf(w, "peak RSS of the daemon:    %.1f MB\n", r.PeakRSSMB)
	} else {
		fmt.Fprintf(w, "peak RSS:                  %.1f MB (the whole process; mail held by the embedded servers ~%.1f MB)\n", r.PeakRSSMB, r.MailWorldMB)
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
