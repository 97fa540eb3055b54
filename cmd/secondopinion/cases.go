package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"secondopinion/internal/engine"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
)

// cmdCases lists the cases for the backoffice.
var cmdCases = &command{
	name:    "cases",
	args:    "[--state STATE] [--overdue] [--open] [--config FILE]",
	summary: "list cases: state, whom each waits on, next deadline",
	help: `One line per case, the earliest deadline first: reference, state, the role
the case waits on, the next deadline (Europe/Amsterdam) and OVERDUE when
that moment has passed.

STATE is one of ` + boStateList() + `.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		cfg := fs.String("config", defaultConfig, "the configuration `FILE`")
		state := fs.String("state", "", "only cases in `STATE`")
		overdue := fs.Bool("overdue", false, "only open cases with a deadline that has passed")
		open := fs.Bool("open", false, "only cases not yet closed")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return fmt.Errorf("%w: cases takes no arguments", errUsage)
			}
			f := store.CaseFilter{State: procedure.State(*state), Open: *open}
			if *state != "" && !boKnownState(f.State) {
				return fmt.Errorf("%w: --state %q: want one of %s", errUsage, *state, boStateList())
			}
			b, err := openBackoffice(ctx, *cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			now := engine.WallClock{}.Now()
			if *overdue {
				f.OverdueAt = now
			}
			list, err := b.st.Cases(ctx, f)
			if err != nil {
				return err
			}
			return writeCases(e.stdout, list, now, b.loc)
		}
	},
}

func writeCases(w io.Writer, list []store.CaseSummary, now time.Time, loc *time.Location) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no cases")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tSTATE\tWAITING ON\tNEXT DEADLINE")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", c.Ref, c.State, boDash(c.WaitingOn), boTime(c.NextDue, loc))
		if !c.NextDue.IsZero() && !c.NextDue.After(now) && !c.State.Final() {
			fmt.Fprint(tw, "\tOVERDUE")
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func boKnownState(s procedure.State) bool {
	for _, st := range procedure.States {
		if st == s {
			return true
		}
	}
	return false
}

func boStateList() string {
	names := make([]string, len(procedure.States))
	for i, s := range procedure.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// cmdCase shows one case and carries out the backoffice's actions on it.
var cmdCase = &command{
	name:    "case",
	args:    "show REF [--question] | approve REF | withdraw REF [--reason TEXT] | propose REF PHYSICIAN_ID [PHYSICIAN_ID]",
	summary: "show a case with its timeline and disclosures; approve, withdraw, propose",
	help: `Subcommands:
  show REF        the case: parties, state, choices, consents, open
                  questions, deadlines, the timeline from the audit log and
                  every disclosure of medical content (when, to whom, which
                  documents, under which consent). The vraagstelling (the
                  question for the second opinion) is medical and is shown
                  only with --question; document titles are never shown.
  approve REF     the backoffice check of a complete authorisation; the
                  chosen physician is then asked to accept.
  withdraw REF    withdraw the case on the employee's behalf; everyone
                  involved so far is told. --reason is recorded as the
                  outcome.
  propose REF ID [ID]
                  propose one or two second-opinion physicians from the
                  registry (replacing any earlier proposal); each must work
                  for another arbodienst than the original physician
                  (Arbobesluit art. 2.14d).

The actions go through the procedure like any answer by mail. When the
procedure refuses one (not expected in the case's state, a physician who
is not independent, an incomplete authorisation) its reason is printed and
the exit status is 1. On success the new state is printed.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		cfg := fs.String("config", defaultConfig, "the configuration `FILE`")
		question := fs.Bool("question", false, "show: print the vraagstelling (medical)")
		reason := fs.String("reason", "", "withdraw: the reason, recorded as the case's outcome")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: want a subcommand", errUsage)
			}
			sub, rest := args[0], args[1:]
			switch sub {
			case "show", "approve", "withdraw":
				if len(rest) != 1 {
					return fmt.Errorf("%w: %s wants one REF", errUsage, sub)
				}
			case "propose":
				if len(rest) < 2 || len(rest) > 3 {
					return fmt.Errorf("%w: propose wants REF and one or two PHYSICIAN_IDs", errUsage)
				}
			default:
				return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
			}
			if sub == "show" {
				b, err := openBackoffice(ctx, *cfg)
				if err != nil {
					return err
				}
				defer b.Close()
				return caseShow(ctx, e.stdout, b, rest[0], *question, engine.WallClock{}.Now())
			}
			w, err := openEngine(ctx, *cfg)
			if err != nil {
				return err
			}
			defer w.Close()
			var in procedure.Input
			switch sub {
			case "approve":
				in = procedure.Approve{}
			case "withdraw":
				in = procedure.Withdraw{By: procedure.RoleBackoffice, Reason: *reason}
			case "propose":
				ps, err := boProposal(w.Registry, rest[1:])
				if err != nil {
					return err
				}
				in = procedure.Propose{Physicians: ps}
			}
			return caseAct(ctx, e, w, rest[0], in)
		}
	},
}

// proposal looks up the physicians the backoffice proposes.
func boProposal(reg *registry.Registry, ids []string) ([]procedure.Physician, error) {
	var out []procedure.Physician
	for _, id := range ids {
		p, ok := reg.PhysicianByID(id)
		if !ok {
			return nil, fmt.Errorf("no physician with id %q in the registry", id)
		}
		if !p.HasRole(registry.RoleSecondOpinion) {
			return nil, fmt.Errorf("%s (%s) is not registered as a second-opinion physician (roles: %s)", id, p.Name, strings.Join(p.Roles, ", "))
		}
		out = append(out, procedurePhysician(p))
	}
	return out, nil
}

// caseAct hands one backoffice input to the engine and prints the case's
// new state.
func caseAct(ctx context.Context, e *env, w *engine.Wired, ref string, in procedure.Input) error {
	c, err := w.Store.CaseByRef(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no case %s", ref)
	}
	if err != nil {
		return err
	}
	before := c.State
	next, err := w.Engine.Handle(ctx, c.ID, in, engine.Source{Via: "backoffice"})
	if isProcedureError(err) {
		fmt.Fprintf(e.stderr, "%s: refused: %v\n", ref, err)
		return exitError{1}
	}
	if err != nil {
		return err
	}
	wait := ""
	if r := next.WaitingOn(); r != "" {
		wait = fmt.Sprintf(", waiting on %s", r)
	}
	_, err = fmt.Fprintf(e.stdout, "%s: %s -> %s%s\n", next.Ref, before, next.State, wait)
	return err
}

// caseShow prints one case. The vraagstelling and the documents' titles
// are medical content: the question only with showQuestion, titles never.
func caseShow(ctx context.Context, w io.Writer, b *backoffice, ref string, showQuestion bool, now time.Time) error {
	c, err := b.st.CaseByRef(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no case %s", ref)
	}
	if err != nil {
		return err
	}
	audit, err := b.st.AuditLog(ctx, c.ID)
	if err != nil {
		return err
	}
	alerts, err := b.st.Alerts(ctx, false)
	if err != nil {
		return err
	}
	loc := b.loc
	dienst := func(id string) string {
		if a, ok := b.reg.ArbodienstByID(id); ok {
			return a.Name
		}
		return boDash(id)
	}
	phys := func(p *procedure.Physician) string {
		if p == nil || p.Email == "" && p.Name == "" {
			return "-"
		}
		pool := "not in the pool"
		if p.InPool {
			pool = "pool"
		}
		return fmt.Sprintf("%s <%s>, %s, %s", p.Name, p.Email, dienst(p.Arbodienst), pool)
	}
	consent := func(x *procedure.Consent) string {
		if x == nil {
			return "-"
		}
		return fmt.Sprintf("%s via %s", boTime(x.At, loc), x.Via)
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label, value string) { fmt.Fprintf(tw, "%s:\t%s\n", label, value) }
	state := string(c.State)
	if r := c.WaitingOn(); r != "" {
		state += ", waiting on " + string(r)
	}
	fmt.Fprintf(tw, "CASE %s\n", c.Ref)
	row("state", state)
	if c.Outcome != "" {
		row("outcome", boLine(c.Outcome))
	}
	row("created", boTime(c.CreatedAt, loc))
	if !c.ClosedAt.IsZero() {
		row("closed", boTime(c.ClosedAt, loc))
	}
	row("requested by", boDash(string(c.RequestedBy)))
	row("employee", fmt.Sprintf("%s <%s>", boDash(c.Employee.Name), boDash(c.Employee.Email)))
	row("language", boDash(c.Lang))
	emp := "-"
	if c.Employer.ID != "" {
		emp = fmt.Sprintf("%s (%s), contract %s", c.Employer.Name, c.Employer.ID, boDash(string(c.Employer.Contract)))
		if c.EmployerKnows {
			emp += "; knows of the procedure"
		} else {
			emp += "; does not know of the procedure"
		}
	}
	row("employer", emp)
	row("original physician", phys(&c.OriginalPhysician))
	row("subject", boDash(string(c.Subject)))
	switch {
	case c.Question == "":
		row("question", "-")
	case showQuestion:
		q := strings.ReplaceAll(strings.TrimSpace(c.Question), "\n", "\n\t")
		row("question", q)
	default:
		row("question", "(medical; shown with --question)")
	}
	confirmed := "no"
	if c.QuestionConfirmed {
		confirmed = "yes"
	}
	row("question confirmed", confirmed)
	earlier := fmt.Sprint(c.EarlierRequests)
	// A case opened before the breakdown was kept has only the count.
	if c.EarlierRequests > 0 && c.Earlier.Total() == c.EarlierRequests {
		earlier += " (" + engine.EarlierOutcomes(c.Earlier, "en") + ")"
	}
	row("earlier requests", earlier)
	if len(c.Proposed) > 0 {
		var names []string
		for i, p := range c.Proposed {
			names = append(names, fmt.Sprintf("%d. %s (%s)", i+1, p.Name, dienst(p.Arbodienst)))
		}
		row("proposed", strings.Join(names, "; "))
	}
	row("chosen physician", phys(c.Chosen))
	row("backup physician", phys(c.Backup))
	if len(c.Declined) > 0 {
		row("declined", strings.Join(c.Declined, ", "))
	}
	if c.EmployerApproval != procedure.ApprovalNone {
		row("employer approval", string(c.EmployerApproval))
	}
	payer := boDash(string(c.Payer))
	if c.PayerReason != "" {
		payer += " (" + boLine(c.PayerReason) + ")"
	}
	row("payer", payer)
	var docs []string
	for _, d := range c.Documents {
		docs = append(docs, boShort(d.SHA256))
	}
	row("documents", strings.TrimSpace(fmt.Sprintf("%d %s", len(c.Documents), strings.Join(docs, " "))))
	if c.FormVersion > 0 {
		row("form version", fmt.Sprint(c.FormVersion))
	} else {
		row("form version", "-")
	}
	var auth []string
	for _, a := range c.Authorised {
		auth = append(auth, boShort(a))
	}
	row("authorised documents", boDash(strings.Join(auth, " ")))
	row("employee consent", consent(c.EmployeeConsent))
	row("physician co-signature", consent(c.PhysicianCosign))
	if c.WaitingKey != "" {
		row("waiting for a key of", c.WaitingKey)
	}
	row("consult target", boDate(c.ConsultTarget, loc))
	row("consult", boTime(c.ConsultAt, loc))
	advice := "-"
	switch {
	case c.NoAdvice:
		advice = "no substantive advice, " + boTime(c.AdviceAt, loc)
	case len(c.Advice) > 0:
		advice = fmt.Sprintf("%d documents, %s", len(c.Advice), boTime(c.AdviceAt, loc))
	}
	row("advice", advice)
	feedback := "not answered (no answer means no sharing)"
	if c.FeedbackAnswered {
		feedback = fmt.Sprintf("own physician: %s, employer: %s", boYesNo(c.FeedbackPhysician), boYesNo(c.FeedbackEmployer))
	}
	row("feedback consent", feedback)
	if err := tw.Flush(); err != nil {
		return err
	}

	var open []procedure.Question
	for _, q := range c.Questions {
		if q.Open {
			open = append(open, q)
		}
	}
	fmt.Fprintln(w, "\nOPEN QUESTIONS")
	if len(open) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tKIND\tTO\tADDRESS\tSTEP\tASKED")
		for _, q := range open {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", q.ID, q.Kind, q.Role, q.Email, q.Step, boTime(q.Asked, loc))
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\nDEADLINES")
	if len(c.Deadlines) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  DUE\tSTEP\tKIND")
		for _, d := range c.Deadlines {
			fmt.Fprintf(tw, "  %s\t%s\t%s", boTime(d.Due, loc), d.Step, d.Kind)
			if !d.Due.After(now) {
				fmt.Fprint(tw, "\tOVERDUE")
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}

	var caseAlerts []store.Alert
	for _, a := range alerts {
		if a.CaseID == c.ID {
			caseAlerts = append(caseAlerts, a)
		}
	}
	if len(caseAlerts) > 0 {
		fmt.Fprintln(w, "\nALERTS")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, a := range caseAlerts {
			fmt.Fprintf(tw, "  %s\t%s\n", boTime(a.At, loc), boLine(a.Reason))
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\nTIMELINE")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tEVENT\tDETAIL")
	for _, a := range audit {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", boTime(a.At, loc), boLine(a.Event), boLine(a.Detail))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nDISCLOSURES")
	n := 0
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, a := range audit {
		d := a.Disclosure
		if d == nil {
			continue
		}
		if n == 0 {
			fmt.Fprintln(tw, "  TIME\tTO\tADDRESS\tDOCUMENTS\tCONSENT")
		}
		n++
		at := d.At
		if at.IsZero() {
			at = a.At
		}
		var hashes []string
		for _, h := range d.Documents {
			hashes = append(hashes, boShort(h))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", boTime(at, loc), d.To, boDash(d.Email), boDash(strings.Join(hashes, " ")), boDash(boLine(d.Consent)))
	}
	if n == 0 {
		fmt.Fprintln(tw, "  none: no medical content has left")
	}
	return tw.Flush()
}

func boDate(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format("2006-01-02")
}

func boYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
