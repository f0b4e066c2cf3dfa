// Command delegated serves an authoritative DNS zone and an
// acme-dns-compatible API for DNS-01 challenges delegated by CNAME.
//
// main only wires: it reads flags and config, builds store, DNS view, DNS
// server and API in that order, each handed to the next.
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

	"github.com/delegated/delegated/config"
)

// command is one verb of the CLI.
type command struct {
	Name  string
	Usage string
	Short string
	// Run executes the verb with its own arguments.
	Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError reports bad command-line use (exit status 2).
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// commands lists the verbs; stdin is read only by the verbs that ask.
func commands(stdin io.Reader) []command {
	return []command{
		serveCommand(),
		accountCommand(),
		importACMEDNSCommand(),
		issueCommand(stdin),
		certificatesCommand(),
		delegationCommand(),
		retryCommand(),
		renewCommand(),
		revokeCommand(),
		deleteCommand(stdin),
		migrateCommand(),
		healthCommand(),
		dnssecCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands(stdin)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range cmds {
		if c.Name != args[0] {
			continue
		}
		err := c.Run(ctx, args[1:], stdout, stderr)
		if err == nil {
			return 0
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "delegated %s: %v\n", c.Name, err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	fmt.Fprintf(stderr, "delegated: unknown command %q\n\n", args[0])
	printUsage(stderr, cmds)
	return 2
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "Usage: delegated <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-18s %s\n", c.Name, c.Short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'delegated <command> -h' for a command's flags.")
}

// newFlagSet makes a FlagSet whose errors are returned, not printed-and-exit.
func newFlagSet(c command, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("delegated "+c.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: delegated %s %s\n\n%s\n\nFlags:\n", c.Name, c.Usage, c.Short)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; a flag error becomes exit status 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2, err: err}
	}
	return nil
}

// parseAndLoad parses args, refuses positional arguments and loads the
// config file *path names: the start of every verb that only reads config.
func parseAndLoad(fs *flag.FlagSet, args []string, path *string) (*config.Config, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError("unexpected argument %q", fs.Arg(0))
	}
	return loadConfig(*path)
}
