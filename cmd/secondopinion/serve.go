package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"secondopinion/internal/config"
	"secondopinion/internal/engine"
	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout"
	"secondopinion/internal/metrics"
)

var cmdServe = &command{
	name:    "serve",
	args:    "--config FILE",
	summary: "run the daemon: ingest mail, decide, remind, deliver",
	help: `Runs until SIGTERM or SIGINT, which finish the current step and stop cleanly.
SIGHUP reloads the registry (a registry or configuration file with errors is
refused and the old one stays; other configuration changes need a restart) and
checks the keys, so cases waiting for a newly imported key resume.
Unless http.listen is "", /healthz and /metrics are served there (default
127.0.0.1:9464); see docs/OPERATIONS.md.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		cfgPath := fs.String("config", "secondopinion.yaml", "configuration file")
		return func(ctx context.Context, e *env, args []string) error {
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(gcPercent)
			}
			cfg, reg, errs := config.LoadAll(*cfgPath)
			if len(errs) > 0 {
				for _, err := range errs {
					fmt.Fprintln(e.stderr, err)
				}
				return exitError{1}
			}
			logger := newLogger(e, cfg)
			w, err := engine.FromLoaded(ctx, cfg, reg, logger)
			if err != nil {
				return err
			}
			defer w.Close()
			var (
				observeLag  func(time.Duration)
				observePass func(time.Time)
			)
			if cfg.HTTP.Listen != "" {
				ops, err := metrics.New(metrics.Options{Store: w.Store, Now: w.Engine.Now, Logger: logger, MailboxEvery: cfg.IMAP.PollInterval})
				if err != nil {
					return err
				}
				_, stop, err := metrics.Serve(ctx, cfg.HTTP.Listen, ops, logger)
				if err != nil {
					return err
				}
				defer stop()
				observeLag, observePass = ops.ObserveIngestLag, ops.MailboxRead
			}
			inOpts, transport, err := mailServers(cfg)
			if err != nil {
				return err
			}
			inOpts.Logger, inOpts.Notify, inOpts.ObserveLag, inOpts.ObservePass = logger, w.Engine.KickInbound, observeLag, observePass
			ing, err := mailin.New(engine.Spool{DB: w.Store}, inOpts)
			if err != nil {
				return err
			}
			defer transport.Close() // QUIT on the connections kept for the next mail
			worker := mailout.NewWorker(engine.Queue{Store: w.Store}, transport)
			worker.Logger = logger
			if cfg.SMTP.SentCopy.Address != "" {
				worker.Copies, worker.CopyWait = ing.SentCopies(cfg.SMTP.SentCopy.Address), cfg.SMTP.SentCopy.Wait
			}
			worker.OnPermanentFailure = func(it mailout.Item, err error) {
				_ = w.Store.AddAlert(context.WithoutCancel(ctx), 0, fmt.Sprintf("delivery of %s to %v failed for good: %v", it.MessageID, it.To, err), w.Engine.Now())
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					_ = reloadRegistry(*cfgPath, w.Engine, logger)
					// A key imported with 'keys import' counts at once: the
					// cases that wait for it resume now, not at 06:00.
					if _, err := w.Engine.CheckKeys(ctx); err != nil {
						logger.Error("key check", "err", err)
					}
				}
			}()
			logger.Info("serving", "service", cfg.Service.Address(), "data", cfg.DataDir)
			err = w.Engine.Run(ctx, engine.Loops{Ingester: ing, Worker: worker})
			logger.Info("stopped")
			return err
		}
	},
}

// gcPercent is the daemon's GOGC unless the environment sets one. Its
// live heap is small (about 8 MB: cases live in SQLite, documents stream),
// while every case passes megabytes through short-lived buffers; at Go's
// default of 100 the collector ran three times per case under load, and
// each run empties the buffer pools. At 400 it runs about once per two
// cases, for 8-10 % less CPU, and the peak RSS goes from about 57 to about
// 100 MB (docs/PERFORMANCE.md).
const gcPercent = 400

// mailServers turns the configuration into the ingester's connection
// settings and the SMTP transport: the one place for both, used by serve
// and by check-config -servers. It reads the passwords and the CA files.
func mailServers(cfg *config.Config) (*mailin.Options, *mailout.Transport, error) {
	imapPass, err := cfg.IMAPPassword()
	if err != nil {
		return nil, nil, err
	}
	smtpPass, err := cfg.SMTPPassword()
	if err != nil {
		return nil, nil, err
	}
	imapTLS, err := cfg.IMAPTLS()
	if err != nil {
		return nil, nil, fmt.Errorf("imap.ca_file: %w", err)
	}
	smtpTLS, err := cfg.SMTPTLS()
	if err != nil {
		return nil, nil, fmt.Errorf("smtp.ca_file: %w", err)
	}
	in := &mailin.Options{
		Addr: net.JoinHostPort(cfg.IMAP.Host, strconv.Itoa(cfg.IMAP.Port)), Security: mailin.Security(cfg.IMAP.Security), TLSConfig: imapTLS,
		Username: cfg.IMAP.Username, Password: imapPass, Mailbox: cfg.IMAP.Mailbox,
		ProcessedMailbox: cfg.IMAP.ProcessedMailbox, SentMailbox: cfg.SMTP.SentCopy.Mailbox, MaxSize: int64(cfg.IMAP.MaxMessageSize),
		PollInterval: cfg.IMAP.PollInterval,
	}
	out := &mailout.Transport{
		Addr: net.JoinHostPort(cfg.SMTP.Host, strconv.Itoa(cfg.SMTP.Port)), Security: cfg.SMTP.Security, TLSConfig: smtpTLS,
		AllowInsecure: cfg.SMTP.AllowInsecure, Username: cfg.SMTP.Username, Password: smtpPass, HelloName: cfg.SMTP.HelloName,
	}
	return in, out, nil
}

// reloadRegistry is what SIGHUP does: it loads the configuration and the
// registry it names again and, only if both are free of errors, gives the
// engine the new registry. A registry with errors is refused with a log
// line naming the first problem, and the engine keeps the old one.
func reloadRegistry(cfgPath string, e *engine.Engine, logger *slog.Logger) error {
	_, reg, errs := config.LoadAll(cfgPath)
	if len(errs) > 0 {
		logger.Error("reload refused: the registry or config has errors; the old registry stays", "errors", len(errs), "first", errs[0].Error())
		return fmt.Errorf("reload refused: %w", errors.Join(errs...))
	}
	e.SetRegistry(reg)
	logger.Info("registry reloaded", "physicians", len(reg.Physicians), "employers", len(reg.Employers))
	return nil
}

// newLogger logs to stderr as text or JSON, at the configured level.
func newLogger(e *env, cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}
