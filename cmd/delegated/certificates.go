package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/delegated/delegated/issuer"
	"github.com/delegated/delegated/operator"
)

func certificatesCommand() command {
	c := command{
		Name:  "certificates",
		Usage: "[--json] [--status STATUS] [--domain DOMAIN]",
		Short: "List the daemon's certificates: status, expiry, paths",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		of := addOperatorFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		status := fs.String("status", "", "only certificates with this `status` (pending, processing, active, failed, revoked)")
		domain := fs.String("domain", "", "only certificates for this `domain` or names under it")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		q := url.Values{}
		if *status != "" {
			st, err := operator.ParseStatus(*status)
			if err != nil {
				return usageError("--status: %v", err)
			}
			q.Set("status", string(st))
		}
		if *domain != "" {
			q.Set("domain", *domain)
		}
		path := "/v1/certificates"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		cl, err := of.client()
		if err != nil {
			return err
		}
		if *asJSON {
			// The daemon's JSON, indented as it passes: a fleet's list is
			// not decoded and encoded again.
			return cl.indented(ctx, path, stdout)
		}
		var certs []issuer.Cert
		if err := cl.call(ctx, "GET", path, nil, &certs); err != nil {
			return err
		}
		var state operator.IssuerState
		if err := cl.call(ctx, "GET", "/v1/issuer", nil, &state); err == nil {
			paused := false
			for _, ca := range state.CAs {
				if !ca.PausedUntil.IsZero() {
					paused = true
					fmt.Fprintf(stdout, "CA %s paused until %s (%s): %s\n", ca.Name, formatTime(ca.PausedUntil), ca.Kind, ca.Reason)
				}
			}
			if paused {
				fmt.Fprintln(stdout)
			}
		}
		printCertificates(stdout, certs)
		return nil
	}
	return c
}

// printCertificates is the human form of `certificates`. Names and errors
// go through printable: one stored before names were validated must not
// put raw escapes on the terminal.
func printCertificates(stdout io.Writer, certs []issuer.Cert) {
	if len(certs) == 0 {
		fmt.Fprintln(stdout, "no certificates")
		return
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for _, c := range certs {
		fmt.Fprintf(w, "Certificate Name: %s\n", printable(c.Name))
		fmt.Fprintf(w, "  Domains: %s\n", printable(strings.Join(c.Domains, " ")))
		fmt.Fprintf(w, "  Status: %s\n", c.Status)
		fmt.Fprintf(w, "  Challenge: %s\n", c.Challenge)
		if c.Profile != "" {
			fmt.Fprintf(w, "  Profile: %s\n", printable(c.Profile))
		}
		if c.LastError != "" {
			fmt.Fprintf(w, "  Last error: %s\n", strings.ReplaceAll(printableText(c.LastError), "\n", "\n    "))
		}
		if !c.NotAfter.IsZero() {
			fmt.Fprintf(w, "  Expiry: %s (%d days left)\n", formatTime(c.NotAfter), c.DaysLeft)
			fmt.Fprintf(w, "  Serial: %s\n", c.Serial)
		}
		if c.CA != "" {
			fmt.Fprintf(w, "  CA: %s\n", printable(c.CA))
		}
		if c.CAPin != "" {
			fmt.Fprintf(w, "  Pinned to CA: %s\n", printable(c.CAPin))
		}
		if !c.RenewAt.IsZero() {
			fmt.Fprintf(w, "  Renewal: %s\n", formatTime(c.RenewAt))
		}
		if !c.NextAttempt.IsZero() {
			fmt.Fprintf(w, "  Next attempt: %s (after %d failed)\n", formatTime(c.NextAttempt), c.Attempts)
		} else if c.Attempts > 0 {
			fmt.Fprintf(w, "  Failed attempts: %d (run `delegated retry --cert-name %s`)\n", c.Attempts, printable(c.Name))
		}
		fmt.Fprintf(w, "  Certificate Path: %s\n", printable(c.Paths.FullChain))
		fmt.Fprintf(w, "  Private Key Path: %s\n", printable(c.Paths.PrivKey))
	}
}

func delegationCommand() command {
	c := command{
		Name:  "delegation",
		Usage: "[--cert-name NAME]",
		Short: "Show the CNAME records to create and check each now",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		of := addOperatorFlags(fs)
		name := fs.String("cert-name", "", "only this certificate")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		cl, err := of.client()
		if err != nil {
			return err
		}
		var certs []issuer.Cert
		if err := cl.call(ctx, "GET", "/v1/delegation?cert-name="+url.QueryEscape(*name), nil, &certs); err != nil {
			return err
		}
		missing := 0
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, c := range certs {
			fmt.Fprintf(tw, "; %s (%s)\n", printable(c.Name), c.Status)
			for _, d := range c.Delegations {
				state := "✓ in place"
				if !d.OK {
					missing++
					state = "✗ " + d.Explain()
				}
				fmt.Fprintf(tw, "%s\t; %s\n", d.Record(), state)
			}
		}
		tw.Flush()
		if missing > 0 {
			return fmt.Errorf("%d record(s) not in place", missing)
		}
		return nil
	}
	return c
}

func retryCommand() command {
	c := command{
		Name:  "retry",
		Usage: "--cert-name NAME [--no-wait]",
		Short: "Run a certificate's next attempt now",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		var noWait *bool
		name, cl, err := parseOneCertVerb(c, args, stderr, func(fs *flag.FlagSet) {
			noWait = fs.Bool("no-wait", false, "return once the attempt is started")
		})
		if err != nil {
			return err
		}
		cert, last, _, err := streamProgress(ctx, cl, "/v1/certificates/"+url.PathEscape(name)+"/retry", map[string]bool{"wait": !*noWait}, stdout)
		if err != nil {
			return err
		}
		if *noWait {
			fmt.Fprintf(stdout, "status: %s\n", cert.Status)
			return nil
		}
		return issueOutcome(stdout, cert, last)
	}
	return c
}

func revokeCommand() command {
	c := command{
		Name:  "revoke",
		Usage: "--cert-name NAME [--reason unspecified|keycompromise|superseded|cessationofoperation|affiliationchanged]",
		Short: "Revoke a certificate at the CA",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		var reason *string
		name, cl, err := parseOneCertVerb(c, args, stderr, func(fs *flag.FlagSet) {
			reason = fs.String("reason", "unspecified", "revocation `reason`")
		})
		if err != nil {
			return err
		}
		var cert issuer.Cert
		if err := cl.call(ctx, "POST", "/v1/certificates/"+url.PathEscape(name)+"/revoke", map[string]string{"reason": *reason}, &cert); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "certificate %q (serial %s) is %s\n", cert.Name, cert.Serial, cert.Status)
		return nil
	}
	return c
}

func deleteCommand(stdin io.Reader) command {
	c := command{
		Name:  "delete",
		Usage: "--cert-name NAME [--yes]",
		Short: "Delete a certificate's files and stored material (asks first)",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		var yes *bool
		name, cl, err := parseOneCertVerb(c, args, stderr, func(fs *flag.FlagSet) {
			yes = fs.Bool("yes", false, "do not ask for confirmation")
		})
		if err != nil {
			return err
		}
		path := "/v1/certificates/" + url.PathEscape(name)
		if !*yes {
			var cert issuer.Cert
			if err := cl.call(ctx, "GET", path, nil, &cert); err != nil {
				return err
			}
			if err := confirmDelete(cert, stdin, stderr); err != nil {
				return err
			}
		}
		if err := cl.call(ctx, "DELETE", path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "certificate %q deleted\n", name)
		return nil
	}
	return c
}

// confirmDelete asks on stderr, as certbot's delete does, and reads the
// answer from stdin: only "y" or "yes" goes ahead. A closed stdin (a
// script, a cron job) is no answer, and says how to skip the question.
func confirmDelete(cert issuer.Cert, stdin io.Reader, stderr io.Writer) error {
	fmt.Fprintf(stderr, "Delete certificate %q (%s)?\n", cert.Name, strings.Join(cert.Domains, ", "))
	if cert.Paths.Dir != "" {
		fmt.Fprintf(stderr, "Its files in %s and its private key are removed.\n", cert.Paths.Dir)
	}
	if cert.Status == issuer.StatusActive {
		fmt.Fprintf(stderr, "It is still valid; afterwards delegated can no longer revoke it (delegated revoke --cert-name %s first if it must be).\n", printable(cert.Name))
	}
	fmt.Fprint(stderr, "Type y to delete [y/N]: ")
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	answer, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || answer == "") {
		fmt.Fprintln(stderr)
		return usageError("no answer on stdin; repeat with --yes to delete %q without asking", cert.Name)
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("not deleted: %q kept (answer was %q)", cert.Name, strings.TrimSpace(answer))
}

func renewCommand() command {
	c := command{
		Name:  "renew",
		Usage: "[--cert-name NAME] [--force] [--no-wait]",
		Short: "Renew certificates that are due (or one; --force: now)",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		of := addOperatorFlags(fs)
		name := fs.String("cert-name", "", "only this certificate (default: every one that is due)")
		force := fs.Bool("force", false, "renew even when not due")
		noWait := fs.Bool("no-wait", false, "return once the renewal is started")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		cl, err := of.client()
		if err != nil {
			return err
		}
		if *name == "" {
			var res struct {
				Started []string `json:"started"`
			}
			if err := cl.call(ctx, "POST", "/v1/renew", map[string]bool{"force": *force}, &res); err != nil {
				return err
			}
			if len(res.Started) == 0 {
				fmt.Fprintln(stdout, "no certificate is due for renewal")
			}
			for _, n := range res.Started {
				fmt.Fprintf(stdout, "renewal started: %s\n", n)
			}
			return nil
		}
		cert, last, started, err := streamProgress(ctx, cl, "/v1/certificates/"+url.PathEscape(*name)+"/renew", map[string]bool{"force": *force, "wait": !*noWait}, stdout)
		if err != nil {
			return err
		}
		if *noWait {
			fmt.Fprintf(stdout, "status: %s\n", cert.Status)
			return nil
		}
		if !started && last == nil && cert.Status == issuer.StatusActive {
			fmt.Fprintf(stdout, "certificate %q is not due for renewal until %s (use --force)\n", cert.Name, formatTime(cert.RenewAt))
			return nil
		}
		return issueOutcome(stdout, cert, last)
	}
	return c
}

// parseOneCertVerb parses the flags of a verb that acts on one certificate:
// the operator connection, --cert-name (required) and the verb's own flags,
// which addOwn defines. It returns the name and a client.
func parseOneCertVerb(c command, args []string, stderr io.Writer, addOwn func(*flag.FlagSet)) (string, *operatorClient, error) {
	fs := newFlagSet(c, stderr)
	of := addOperatorFlags(fs)
	name := fs.String("cert-name", "", "certificate `name`")
	addOwn(fs)
	if err := parseFlags(fs, args); err != nil {
		return "", nil, err
	}
	if *name == "" {
		return "", nil, usageError("need --cert-name NAME")
	}
	cl, err := of.client()
	if err != nil {
		return "", nil, err
	}
	return *name, cl, nil
}

// streamProgress calls an operator endpoint that streams a certificate's
// events, printing a line per step as it comes. It returns the certificate
// as last sent, the final event (nil if none) and whether any event came.
func streamProgress(ctx context.Context, cl *operatorClient, path string, body any, stdout io.Writer) (cert issuer.Cert, last *issuer.Event, started bool, err error) {
	last, err = cl.stream(ctx, path, body,
		func(c issuer.Cert) { cert = c },
		func(ev issuer.Event) {
			started = true
			if ev.Step != issuer.StepDone {
				fmt.Fprintln(stdout, progressLine(ev))
			}
		})
	return cert, last, started, err
}
