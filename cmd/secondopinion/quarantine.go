package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"secondopinion/internal/engine"
	"secondopinion/internal/message"
	"secondopinion/internal/store"
)

// cmdQuarantine shows the messages the daemon did not act on and lets the
// backoffice release or reject them. A quarantined message is never
// dropped: a rejected one stays stored for the record.
var cmdQuarantine = &command{
	name:    "quarantine",
	args:    "list | show ID | release ID | reject ID [--reason TEXT]",
	summary: "list, show, release or reject quarantined inbound mail",
	help: `Subcommands:
  list        every quarantined message: id, when received, size, and why it
              was quarantined
  show ID     why it was quarantined, then how the daemon reads it: sender,
              subject, date, recipients, case reference, automatic reply or
              bounce, attachments (with the start of their SHA-256) and the
              reply text (what the sender wrote, without quoted history)
  release ID  hand the message back to the daemon, which reads it again
              (after a key import, a registry fix, …); recorded in the audit
              log
  reject ID   set the message aside for good; it stays stored for the
              record; recorded in the audit log with --reason`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		cfg := fs.String("config", defaultConfig, "the configuration `FILE`")
		reason := fs.String("reason", "", "reject: why the message is set aside")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: want a subcommand", errUsage)
			}
			sub, rest := args[0], args[1:]
			var id int64
			switch sub {
			case "list":
				if len(rest) != 0 {
					return fmt.Errorf("%w: list takes no arguments", errUsage)
				}
			case "show", "release", "reject":
				if len(rest) != 1 {
					return fmt.Errorf("%w: %s wants one message ID", errUsage, sub)
				}
				var err error
				if id, err = strconv.ParseInt(rest[0], 10, 64); err != nil || id <= 0 {
					return fmt.Errorf("%w: %q is not a message ID (see quarantine list)", errUsage, rest[0])
				}
			default:
				return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
			}
			b, err := openBackoffice(ctx, *cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			now := engine.WallClock{}.Now()
			switch sub {
			case "list":
				return quarantineList(ctx, e.stdout, b)
			case "show":
				return quarantineShow(ctx, e.stdout, b, id)
			case "release":
				return quarantineDecide(ctx, e.stdout, b, id, true, "", now)
			default:
				return quarantineDecide(ctx, e.stdout, b, id, false, *reason, now)
			}
		}
	},
}

func quarantineList(ctx context.Context, w io.Writer, b *backoffice) error {
	list, err := b.st.Quarantined(ctx)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no quarantined messages")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tSIZE\tREASON")
	for _, in := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", in.ID, boTime(in.ReceivedAt, b.loc), boSize(in.Size), boLine(boDash(in.Reason)))
	}
	return tw.Flush()
}

// quarantinedMessage reads a stored message's row and insists it is in
// quarantine.
func quarantinedMessage(ctx context.Context, b *backoffice, id int64) (store.Inbound, error) {
	in, err := b.st.InboundByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return in, fmt.Errorf("no stored message %d", id)
	}
	if err != nil {
		return in, err
	}
	if in.Status != store.InboundQuarantined {
		return in, fmt.Errorf("message %d is not in quarantine (status %s)", id, in.Status)
	}
	return in, nil
}

func quarantineShow(ctx context.Context, w io.Writer, b *backoffice, id int64) error {
	in, err := quarantinedMessage(ctx, b, id)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label, value string) { fmt.Fprintf(tw, "%s:\t%s\n", label, value) }
	fmt.Fprintf(tw, "MESSAGE %d\n", in.ID)
	row("reason", boLine(boDash(in.Reason)))
	row("received", boTime(in.ReceivedAt, b.loc))
	row("size", boSize(in.Size))
	row("sha256", in.SHA256)
	row("message-id", boDash(in.MessageID))
	if in.Purged {
		row("content", "purged with its case")
		return tw.Flush()
	}
	open := func() (io.ReadCloser, error) { return b.st.OpenInbound(ctx, in) }

	// The Date header, which the inspection report leaves out.
	date := "-"
	if f, err := open(); err == nil {
		if m, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(f, 256<<10))); err == nil {
			if t, err := m.Header.Date(); err == nil {
				date = boTime(t, b.loc)
			}
		}
		f.Close()
	}

	if in.Oversize {
		// Too large to parse safely: the daemon never read it, and
		// neither does the backoffice tool.
		row("date", date)
		row("content", "over the size limit: not parsed")
		return tw.Flush()
	}
	f, err := open()
	if err != nil {
		return fmt.Errorf("message %d: %w", id, err)
	}
	rep, perr := message.Inspect(f, message.InspectOptions{})
	f.Close()
	if rep == nil {
		row("date", date)
		row("content", "unreadable: "+boLine(perr.Error()))
		return tw.Flush()
	}
	from := rep.From
	if rep.FromName != "" {
		from = fmt.Sprintf("%s <%s>", rep.FromName, rep.From)
	}
	row("from", boDash(from))
	row("subject", boLine(boDash(rep.Subject)))
	row("date", date)
	row("recipients", boDash(strings.Join(rep.Recipients, ", ")))
	ref := "-"
	if rep.CaseRef != nil {
		ref = *rep.CaseRef
	}
	row("case reference", ref)
	auto := "no"
	if rep.AutoReply {
		auto = "yes"
		if rep.AutoReplyReason != "" {
			auto += " (" + boLine(rep.AutoReplyReason) + ")"
		}
	}
	row("auto_reply", auto)
	bounce := "no"
	if rep.Bounce {
		bounce = "yes"
		if len(rep.FailedRecipients) > 0 {
			bounce += ", failed: " + strings.Join(rep.FailedRecipients, ", ")
		}
	}
	row("bounce", bounce)
	if rep.Encrypted {
		row("encrypted", "yes (the reply text is inside the encryption)")
	}
	if len(rep.Forwarded) > 0 {
		row("forwarded", boLine(strings.Join(rep.Forwarded, "; ")))
	}
	if rep.Error != "" {
		row("error", boLine(rep.Error))
	}
	for _, p := range rep.Problems {
		row("problem", boLine(p))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nATTACHMENTS")
	if len(rep.Attachments) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tTYPE\tSIZE\tSHA256")
		for _, a := range rep.Attachments {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", boLine(boDash(a.Name)), boDash(a.ContentType), boSize(a.Size), boShort(a.SHA256))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nREPLY TEXT")
	text := strings.TrimRight(rep.ReplyText, "\n")
	if strings.TrimSpace(text) == "" {
		fmt.Fprintln(w, "  (empty)")
		return nil
	}
	for _, line := range strings.Split(text, "\n") {
		if _, err := fmt.Fprintln(w, "  "+strings.TrimRight(line, "\r")); err != nil {
			return err
		}
	}
	return nil
}

// quarantineDecide releases (back to the daemon, status new) or rejects
// (kept for the record) a quarantined message, with an audit entry.
func quarantineDecide(ctx context.Context, w io.Writer, b *backoffice, id int64, release bool, reason string, now time.Time) error {
	in, err := quarantinedMessage(ctx, b, id)
	if err != nil {
		return err
	}
	old := boLine(boDash(in.Reason))
	status, event, detail, said := store.InboundNew, "released", "released by the backoffice: "+old, "released: the daemon reads it again"
	if !release {
		why := boLine(reason)
		if why == "" {
			why = "no reason given"
		}
		status, event, detail, said = store.InboundRejected, "rejected", "rejected by the backoffice: "+why+" (quarantined: "+old+")", "rejected: kept for the record, not acted on"
	}
	if err := b.st.MarkInbound(ctx, id, status, detail, 0, now); err != nil {
		return err
	}
	a := store.AuditEntry{CaseRef: "-", At: now, Event: event,
		Detail: fmt.Sprintf("inbound message %d (sha256 %s): %s", id, boShort(in.SHA256), detail)}
	if in.CaseID != 0 {
		// A message already tied to a case shows in that case's timeline.
		if c, err := b.st.Case(ctx, in.CaseID); err == nil {
			a.CaseID, a.CaseRef = c.ID, c.Ref
		}
	}
	if err := b.st.AppendAudit(ctx, a); err != nil {
		return fmt.Errorf("message %d is %s, but the audit entry failed: %w", id, event, err)
	}
	_, err = fmt.Fprintf(w, "message %d %s\n", id, said)
	return err
}

// boSize shows a byte count readably.
func boSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
