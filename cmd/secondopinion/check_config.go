package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"secondopinion/internal/config"
	"secondopinion/internal/engine"
	"secondopinion/internal/mailin"
	"secondopinion/internal/registry"
)

// cmdCheckConfig loads the configuration and the registry it names and
// prints every problem with its place, like a compiler: one per line.
var cmdCheckConfig = &command{
	name:    "check-config",
	args:    "FILE",
	summary: "check the configuration and its registry; print every problem",
	help: `Loads FILE and the registry it names, checks both and prints every problem on
its own line with its place (file:line: field: problem), then exits 1. When all
is well it prints a one-line summary and exits 0.

With -secrets it also reads every configured secret (password files and
variables, the token key, the key passphrase) and checks that secret files are
not readable by every user; the secrets themselves are never printed. With -keys
it checks that every physician's key file exists in keys_dir.

With -servers it connects to the IMAP and SMTP servers as the daemon would
(TLS with the system's roots and ca_file, then login), looks at the mailbox
read-only and ends the SMTP session before any mail: a certificate that is not
trusted, a wrong password or a missing mailbox shows here instead of in the
daemon's log. Run it as the daemon's user, which can read the passwords.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		secrets := fs.Bool("secrets", false, "also read and check the configured secrets")
		keys := fs.Bool("keys", false, "also check that every physician's key file exists")
		servers := fs.Bool("servers", false, "also connect and log in to the IMAP and SMTP servers (no mail is read or sent)")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: want one config FILE", errUsage)
			}
			cfg, reg, errs := config.LoadAll(args[0])
			if cfg != nil && *secrets {
				errs = append(errs, cfg.CheckSecrets()...)
			}
			if cfg != nil && cfg.TemplatesDir != "" {
				if err := engine.CheckTemplates(os.DirFS(cfg.TemplatesDir)); err != nil {
					errs = append(errs, cfg.FieldError("templates_dir", err))
				}
			}
			if cfg != nil && reg != nil && *keys {
				errs = append(errs, checkKeyFiles(cfg, reg)...)
			}
			if cfg != nil && len(errs) == 0 && *servers {
				errs = append(errs, checkServers(ctx, e, cfg)...)
			}
			for _, err := range errs {
				fmt.Fprintln(e.stdout, err)
			}
			if len(errs) > 0 {
				fmt.Fprintf(e.stderr, "check-config: %d problem(s)\n", len(errs))
				return exitError{1}
			}
			pool := 0
			for _, p := range reg.Physicians {
				if p.Pool {
					pool++
				}
			}
			fmt.Fprintf(e.stdout, "ok: %d arbodiensten, %d physicians (%d in the LPBSO pool), %d employers; service address %s\n",
				len(reg.Arbodiensten), len(reg.Physicians), pool, len(reg.Employers), cfg.Service.Address())
			return nil
		}
	},
}

// checkServers connects to both mail servers with the daemon's own settings
// (mailServers) and prints a line for each that works; it returns the
// problems.
func checkServers(ctx context.Context, e *env, cfg *config.Config) []error {
	inOpts, transport, err := mailServers(cfg)
	if err != nil {
		return []error{err}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var errs []error
	inOpts.Logger = slog.New(slog.DiscardHandler)
	if line, err := mailin.Check(ctx, inOpts); err != nil {
		errs = append(errs, fmt.Errorf("imap %s: %w", inOpts.Addr, err))
	} else {
		fmt.Fprintf(e.stdout, "imap %s: ok: logged in as %s; %s\n", inOpts.Addr, inOpts.Username, line)
	}
	if how, err := transport.Check(ctx); err != nil {
		errs = append(errs, fmt.Errorf("smtp %s: %w", transport.Addr, err))
	} else {
		fmt.Fprintf(e.stdout, "smtp %s: ok: %s\n", transport.Addr, how)
	}
	return errs
}

// checkKeyFiles reports physicians whose key file is missing from keys_dir.
func checkKeyFiles(cfg *config.Config, reg *registry.Registry) []error {
	var errs []error
	for i, p := range reg.Physicians {
		path := filepath.Join(cfg.KeysDir, filepath.FromSlash(p.KeyFile))
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: physicians[%d].key_file: %w", cfg.Registry, i, err))
		}
	}
	return errs
}
