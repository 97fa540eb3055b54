package main

import (
	"context"
	"flag"
	"fmt"

	"secondopinion/internal/demo"
)

var cmdDemo = &command{
	name:    "demo",
	args:    "[--out DIR]",
	summary: "run the whole procedure on the embedded default, with in-process mail servers",
	help: `With no configuration, runs the procedure end to end: in-process IMAP and SMTP
servers route mail between the service and the participants' mailboxes, SQLite
in DIR/data, fresh demo keys, scripted participants who answer as people do, and
a clock that runs fast. The timeline is printed as it happens. DIR keeps:
  mail/         every mail that crossed the SMTP server, as .eml
  forms/        the PDF authorisation forms
  keys/         every participant's armored private key (no passphrase; demo only)
  audit.jsonl   the hash-chained audit log
  timeline.txt  the timeline printed here
Earlier demo output in DIR is replaced.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		out := fs.String("out", "demo-out", "output directory")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%w: unexpected argument %q", errUsage, args[0])
			}
			_, err := demo.Run(ctx, demo.Options{Out: *out, Stdout: e.stdout})
			return err
		}
	},
}
