package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/delegated/delegated/issuer"
)

// domainList is the repeatable -d flag.
type domainList []string

func (s *domainList) String() string     { return strings.Join(*s, ",") }
func (s *domainList) Set(v string) error { *s = append(*s, v); return nil }

func issueCommand(stdin io.Reader) command {
	c := command{
		Name:  "issue",
		Usage: "--cert-name NAME -d DOMAIN [-d DOMAIN]... [--challenge dns-01|dns-account-01|dns-persist-01] [--profile NAME] [--ca NAME] [--no-wait] | --batch FILE|-",
		Short: "Obtain a certificate through the running daemon",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		of := addOperatorFlags(fs)
		name := fs.String("cert-name", "", "certificate `name` (its folder under live/)")
		var domains domainList
		fs.Var(&domains, "d", "`domain` to cover (repeatable; *.example.com for a wildcard)")
		challenge := fs.String("challenge", "", "validation `method`: dns-01, dns-account-01 or dns-persist-01 (default [issuer] challenge, else dns-01)")
		profile := fs.String("profile", "", "ACME profile `name` the CA lists, e.g. classic or shortlived (default [issuer] profile, else the CA's choice)")
		noWait := fs.Bool("no-wait", false, "return once the request is recorded")
		ca := fs.String("ca", "", "order only from the configured CA `name` (no fallback), now and at renewals")
		batch := fs.String("batch", "", "`file` of certificates, one per line: NAME DOMAIN [DOMAIN]... (- for stdin); implies --no-wait")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError("unexpected argument %q", fs.Arg(0))
		}
		if *batch != "" {
			if *name != "" || len(domains) > 0 {
				return usageError("--batch takes the names and domains from the file; drop --cert-name and -d")
			}
			if *ca != "" {
				return usageError("--ca pins one certificate; issue the certificates to pin one by one with --cert-name, -d and --ca")
			}
			cl, err := of.client()
			if err != nil {
				return err
			}
			return issueBatch(ctx, cl, *batch, stdin, stdout)
		}
		if *name == "" && len(domains) > 0 {
			*name = strings.TrimPrefix(domains[0], "*.")
		}
		if *name == "" || len(domains) == 0 {
			return usageError("need --cert-name NAME and at least one -d DOMAIN")
		}
		if *challenge != "" {
			if _, err := issuer.ParseChallenge(*challenge); err != nil {
				return usageError("--challenge: %v", err)
			}
		}
		cl, err := of.client()
		if err != nil {
			return err
		}
		body := map[string]any{"name": *name, "domains": []string(domains), "ca": *ca, "wait": !*noWait}
		if *challenge != "" {
			body["challenge"] = *challenge
		}
		if *profile != "" {
			body["profile"] = *profile
		}
		if *noWait {
			var cert issuer.Cert
			if err := cl.call(ctx, "POST", "/v1/certificates", body, &cert); err != nil {
				return err
			}
			printRecords(stdout, cert)
			fmt.Fprintf(stdout, "status: %s\n", cert.Status)
			if cert.LastError != "" {
				fmt.Fprintf(stdout, "last error: %s\n", cert.LastError)
			}
			return nil
		}
		var cert issuer.Cert
		last, err := cl.stream(ctx, "/v1/certificates", body,
			func(c issuer.Cert) {
				cert = c
				printRecords(stdout, c)
				if c.Status == issuer.StatusPendingDelegation {
					for _, d := range c.Delegations {
						fmt.Fprintln(stdout, progressLine(issuer.Event{Step: issuer.StepDelegation, OK: d.OK, Detail: d.Name, Error: d.Explain()}))
					}
				}
			},
			func(ev issuer.Event) {
				if ev.Step != issuer.StepDone {
					fmt.Fprintln(stdout, progressLine(ev))
				}
			})
		if err != nil {
			return err
		}
		return issueOutcome(stdout, cert, last)
	}
	return c
}

// issueOutcome prints the result and turns anything but active into an error.
func issueOutcome(stdout io.Writer, cert issuer.Cert, last *issuer.Event) error {
	status, msg := cert.Status, cert.LastError
	if last != nil {
		status, msg = last.Status, last.Error
	}
	switch {
	case status == issuer.StatusActive && msg == "":
		fmt.Fprintf(stdout, "certificate %q is active: %s\n", cert.Name, cert.Paths.FullChain)
		return nil
	case status == issuer.StatusPendingDelegation:
		return fmt.Errorf("certificate %q is %s: create the records above; the daemon re-checks them periodically (or run `delegated delegation --cert-name %s`)", cert.Name, status, cert.Name)
	case msg != "":
		return fmt.Errorf("certificate %q is %s: %s", cert.Name, status, msg)
	}
	return errors.New("certificate " + cert.Name + " is " + string(status))
}

func printRecords(w io.Writer, c issuer.Cert) {
	fmt.Fprintln(w, "; records to create (zone-file form):")
	for _, d := range c.Delegations {
		fmt.Fprintln(w, d.Record())
	}
}

func progressLine(ev issuer.Event) string {
	mark := "✓"
	text := ev.Detail
	if !ev.OK {
		mark = "✗"
		if ev.Error != "" {
			text = ev.Error
		}
	}
	return fmt.Sprintf("%s %s %s", ev.Step, mark, text)
}
