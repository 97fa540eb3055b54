package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"secondopinion/internal/config"
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
it checks that every physician's key file exists in keys_dir.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		secrets := fs.Bool("secrets", false, "also read and check the configured secrets")
		keys := fs.Bool("keys", false, "also check that every physician's key file exists")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: want one config FILE", errUsage)
			}
			cfg, reg, errs := config.LoadAll(args[0])
			if cfg != nil && *secrets {
				errs = append(errs, cfg.CheckSecrets()...)
			}
			if cfg != nil && reg != nil && *keys {
				errs = append(errs, checkKeyFiles(cfg, reg)...)
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
