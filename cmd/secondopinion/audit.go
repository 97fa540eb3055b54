package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"secondopinion/internal/atomicfile"
	"secondopinion/internal/store"
)

// cmdAudit checks and exports the hash-chained audit log.
var cmdAudit = &command{
	name:    "audit",
	args:    "verify | export [--out FILE]",
	summary: "verify the audit log's hash chain; export it as JSON lines",
	help: `Subcommands:
  verify   recompute the hash chain over every entry. Prints
           "audit chain ok: N entries", or names the first entry that was
           changed or does not follow its predecessor and exits 1.
  export   write the whole audit log as JSON lines, one entry per line:
           id, case_ref, at (RFC 3339, UTC, milliseconds), event, detail,
           disclosure (null, or to, email, documents, consent, at),
           prev_hash, hash. To stdout, or atomically to --out FILE
           (mode 0600: the log names people).`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		cfg := fs.String("config", defaultConfig, "the configuration `FILE`")
		out := fs.String("out", "", "export: write to `FILE` instead of stdout")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 || (args[0] != "verify" && args[0] != "export") {
				return fmt.Errorf("%w: want verify or export", errUsage)
			}
			if args[0] == "verify" && *out != "" {
				return fmt.Errorf("%w: --out is for export", errUsage)
			}
			b, err := openBackoffice(ctx, *cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			if args[0] == "verify" {
				n, err := b.st.VerifyAudit(ctx)
				if err != nil {
					return fmt.Errorf("%w (the %d entries before it verify)", err, n)
				}
				_, err = fmt.Fprintf(e.stdout, "audit chain ok: %d entries\n", n)
				return err
			}
			entries, err := b.st.AuditLog(ctx, 0)
			if err != nil {
				return err
			}
			if *out == "" {
				return writeAuditJSONL(e.stdout, entries)
			}
			if err := atomicfile.Write(*out, 0o600, func(w io.Writer) error { return writeAuditJSONL(w, entries) }); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			_, err = fmt.Fprintf(e.stderr, "exported %d audit entries to %s\n", len(entries), *out)
			return err
		}
	},
}

// writeAuditJSONL writes the export format (store.WriteAuditJSONL).
func writeAuditJSONL(w io.Writer, entries []store.AuditEntry) error {
	return store.WriteAuditJSONL(w, entries)
}
