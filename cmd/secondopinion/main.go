// Command secondopinion runs the Dutch second-opinion (second opinion
// bedrijfsarts) procedure by e-mail. main only parses the command line and
// hands over to the subcommand; every subcommand is a row in the commands
// table below, with its own flags and help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: its name, the argument synopsis, a one-line
// summary for the overview, a longer help text, and setup, which declares the
// command's flags on fs and returns the function that runs it with the
// positional arguments. Help output calls setup on a fresh flag set.
type command struct {
	name    string
	args    string
	summary string
	help    string
	setup   func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
}

// env is what a subcommand may touch of the outside world. Tests run
// subcommands with buffers instead of the real stdout and stderr.
type env struct {
	stdout io.Writer
	stderr io.Writer
}

// errUsage asks main to print the command's help and exit 2.
var errUsage = errors.New("usage")

// exitError carries an exit status other than 1 without printing anything
// more (the command already explained itself).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// commands is the one table of subcommands.
func commands() []*command {
	return []*command{
		cmdAlerts,
		cmdCheckConfig,
		cmdDemo,
		cmdServe,
		cmdForm,
		cmdInspect,
		cmdKeys,
		cmdCases,
		cmdCase,
		cmdQuarantine,
		cmdAudit,
		cmdBench,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit status.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				printHelp(e.stdout, c)
				return 0
			}
		}
		overview(e.stdout)
		return 0
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "secondopinion: unknown command %q\n\n", args[0])
		overview(e.stderr)
		return 2
	}
	fs := newFlagSet(c.name)
	runner := c.setup(fs)
	err := parseInterspersed(fs, args[1:])
	if err == nil {
		err = runner(ctx, e, fs.Args())
	}
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		printHelp(e.stdout, c)
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "secondopinion %s: %v\n\n", c.name, err)
		printHelp(e.stderr, c)
		return 2
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(e.stderr, "secondopinion %s: %v\n", c.name, err)
		return 1
	}
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

func overview(w io.Writer) {
	fmt.Fprintln(w, "secondopinion runs the second-opinion procedure for occupational physicians by e-mail.")
	fmt.Fprintln(w, "\nUsage: secondopinion COMMAND [flags] [args]\n\nCommands:")
	cs := commands()
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'secondopinion help COMMAND' for a command's flags.")
}

func printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: secondopinion %s %s\n\n%s\n", c.name, c.args, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", c.help)
	}
	fs := newFlagSet(c.name)
	c.setup(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// newFlagSet makes a flag set that returns errors instead of exiting and
// prints nothing on its own: run prints the help.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments ("form case.json --out f.pdf"); "--" ends the flags.
// A flag error becomes errUsage so the help is shown; -h becomes flag.ErrHelp.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}
