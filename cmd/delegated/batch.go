package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/delegated/delegated/operator"
)

// maxBatchLine bounds one line of a batch file (a name and its domains).
const maxBatchLine = 64 << 10

// parseBatch reads a batch file: one certificate per line, "NAME DOMAIN
// [DOMAIN]...", fields separated by blanks; blank lines and lines starting
// with # (after blanks) are ignored, as is anything after a # preceded by
// a blank. It returns the requests with their line numbers, and every
// line it cannot read (the daemon checks the names and domains).
func parseBatch(r io.Reader) ([]operator.Request, []int, []operator.LineProblem, error) {
	var (
		reqs     []operator.Request
		lines    []int
		problems []operator.LineProblem
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxBatchLine)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if k := strings.Index(text, "#"); k == 0 || k > 0 && (text[k-1] == ' ' || text[k-1] == '\t') {
			text = text[:k]
		}
		fields := strings.Fields(text)
		switch {
		case len(fields) == 0:
			continue
		case len(fields) == 1:
			problems = append(problems, operator.LineProblem{Line: n, Error: fmt.Sprintf("%q has no domain; expected NAME DOMAIN [DOMAIN]...", fields[0])})
			continue
		}
		reqs = append(reqs, operator.Request{Name: fields[0], Domains: fields[1:]})
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, nil, nil, fmt.Errorf("line %d: longer than %d KiB", n+1, maxBatchLine>>10)
		}
		return nil, nil, nil, err
	}
	return reqs, lines, problems, nil
}

// issueBatch sends the file at path ("-": stdin) as one request and prints
// every record to create in zone-file form.
func issueBatch(ctx context.Context, cl *operatorClient, path string, stdin io.Reader, stdout io.Writer) error {
	in := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--batch: %w", err)}
		}
		defer f.Close()
		in = f
	}
	if in == nil {
		in = strings.NewReader("")
	}
	reqs, lines, problems, err := parseBatch(in)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--batch %s: %w", path, err)}
	}
	if len(problems) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("--batch %s: %w", path, &operator.BatchError{Problems: problems})}
	}
	if len(reqs) == 0 {
		return &exitError{code: 2, err: fmt.Errorf("--batch %s: no certificates; expected lines of \"NAME DOMAIN [DOMAIN]…\"", path)}
	}
	var res operator.BatchResult
	if err := cl.call(ctx, "POST", "/v1/batch", map[string]any{"certificates": reqs, "lines": lines}, &res); err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	fmt.Fprintln(w, "; records to create (zone-file form):")
	printed := map[string]bool{}
	for _, c := range res.Certificates {
		fmt.Fprintf(w, "; %s (%s)\n", c.Name, c.Status)
		for _, d := range c.Delegations {
			if !printed[d.Name] {
				printed[d.Name] = true
				fmt.Fprintln(w, d.Record())
			}
		}
	}
	fmt.Fprintf(w, "; %d certificates: %d created, %d changed, %d unchanged; the daemon checks the records every delegation_recheck\n",
		len(res.Certificates), res.Created, res.Changed, res.Unchanged)
	return w.Flush()
}
