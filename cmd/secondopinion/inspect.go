package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"secondopinion/internal/message"
)

// cmdInspect shows how the daemon reads one message: the backoffice uses it
// on a quarantined message, tests on their corpus.
var cmdInspect = &command{
	name:    "inspect",
	args:    "FILE.eml [--expect KIND] [--options 'NAME1;NAME2'] [--authserv-id ID] [--now TIME]",
	summary: "show how an inbound message is read: sender, case, reply text, attachments, answer",
	help: `Prints one JSON object: message_id, from, subject, recipients, case_ref (from
the subject tag [SO-2026-0042], or null), auto_reply, bounce (with
failed_recipients), encrypted, reply_text (the new text, without quoted
history and signature), attachments (name, content_type, size, sha256),
problems met while parsing, and answer.

answer is null unless --expect names the question the message answers, and
for automatic replies, bounces and encrypted messages. Otherwise it is
{"kind": KIND or "unclear", "value": …}: "1"/"2" (or "other:NAME") for
choice, with "backup"; "yes"/"no" for yesno; "physician=yes,employer=no" for
consent; "2026-12-10T14:30" (Europe/Amsterdam) for datetime; the reason
text, or "confirmed", for refusal; the text for question. An unclear answer
says why.

KIND is one of choice, yesno, consent, datetime, refusal, question.
With --authserv-id the strict-mode verdict on Authentication-Results is
added. A message that cannot be parsed (too many parts, nested too deep)
still prints what was read, with "error", and exits with status 1.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		expect := fs.String("expect", "", "the question `KIND` the message answers")
		options := fs.String("options", "", "the proposed physicians' names, in order, separated by ';'")
		authserv := fs.String("authserv-id", "", "our receiving server's authserv-`ID` for the Authentication-Results check")
		now := fs.String("now", "", "read dates as of `TIME` (2026-12-01T09:00, Europe/Amsterdam; default now)")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: want one FILE.eml, got %d arguments", errUsage, len(args))
			}
			o := message.InspectOptions{Expect: message.Kind(*expect), TrustedAuthservID: *authserv}
			if *expect != "" && !validKind(o.Expect) {
				return fmt.Errorf("%w: --expect %q: want one of %s", errUsage, *expect, kindList())
			}
			loc, err := time.LoadLocation("Europe/Amsterdam")
			if err != nil {
				return fmt.Errorf("load time zone: %w", err)
			}
			o.Context.Loc = loc
			o.Context.Now = time.Now().In(loc)
			if *now != "" {
				t, err := time.ParseInLocation("2006-01-02T15:04", *now, loc)
				if err != nil {
					return fmt.Errorf("%w: --now %q: want YYYY-MM-DDTHH:MM", errUsage, *now)
				}
				o.Context.Now = t
			}
			for _, name := range strings.Split(*options, ";") {
				if name = strings.TrimSpace(name); name != "" {
					o.Context.Options = append(o.Context.Options, name)
				}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			rep, perr := message.Inspect(f, o)
			if rep == nil {
				return fmt.Errorf("%s: %w", args[0], perr)
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			if err := enc.Encode(rep); err != nil {
				return err
			}
			if perr != nil {
				fmt.Fprintf(e.stderr, "secondopinion inspect: %s: %v\n", args[0], perr)
				return exitError{1}
			}
			return nil
		}
	},
}

func validKind(k message.Kind) bool {
	for _, v := range message.Kinds {
		if v == k {
			return true
		}
	}
	return false
}

func kindList() string {
	var s []string
	for _, k := range message.Kinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}
