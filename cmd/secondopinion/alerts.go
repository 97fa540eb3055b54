package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"
)

var cmdAlerts = &command{
	name:    "alerts",
	args:    "[--all] | resolve ID | resolve --all",
	summary: "list the backoffice's alerts; mark them resolved",
	help: `Alerts are what the daemon asks the backoffice to look at: a quarantined
message, a physician's key that expires within 30 days or is unusable, a
delivery that failed for good, a step that got no answer in time. They stay
open until resolved here; the metric secondopinion_alerts_unresolved counts them.

  alerts               the open alerts, oldest first
  alerts --all         also the resolved ones
  alerts resolve ID    mark one resolved
  alerts resolve --all mark every open alert resolved`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		cfg := fs.String("config", defaultConfig, "the configuration `FILE`")
		all := fs.Bool("all", false, "list resolved alerts too; with resolve: resolve every open alert")
		return func(ctx context.Context, e *env, args []string) error {
			b, err := openBackoffice(ctx, *cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			if len(args) > 0 && args[0] == "resolve" {
				var id int64
				switch {
				case len(args) == 2 && !*all:
					if id, err = strconv.ParseInt(args[1], 10, 64); err != nil || id <= 0 {
						return fmt.Errorf("%w: alert ID %q", errUsage, args[1])
					}
				case len(args) == 1 && *all:
				default:
					return fmt.Errorf("%w: resolve takes one alert ID, or --all", errUsage)
				}
				n, err := b.st.ResolveAlert(ctx, id, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%d alert(s) resolved\n", n)
				return nil
			}
			if len(args) > 0 {
				return fmt.Errorf("%w: unexpected %q", errUsage, args[0])
			}
			alerts, err := b.st.Alerts(ctx, *all)
			if err != nil {
				return err
			}
			if len(alerts) == 0 {
				fmt.Fprintln(e.stdout, "no open alerts")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tWHEN\tCASE\tSTATUS\tREASON")
			for _, a := range alerts {
				ref := "-"
				if a.CaseID != 0 {
					if c, err := b.st.Case(ctx, a.CaseID); err == nil {
						ref = c.Ref
					}
				}
				status := "open"
				if a.Resolved {
					status = "resolved"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", a.ID, boTime(a.At, b.loc), ref, status, boLine(a.Reason))
			}
			return tw.Flush()
		}
	},
}
