package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMENamesEveryFlag: each flag a verb accepts (as its -h lists it)
// is written in README.md as --flag, so the documentation cannot fall
// behind the CLI.
func TestREADMENamesEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	flagRE := regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`)
	total := 0
	for _, c := range commands(nil) {
		args := []string{c.Name, "-h"}
		if c.Name == "account" {
			args = []string{c.Name, "add", "-h"}
		}
		var stdout, stderr bytes.Buffer
		run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		flags := flagRE.FindAllStringSubmatch(stderr.String(), -1)
		if len(flags) == 0 && !strings.Contains(stderr.String(), "Usage:") {
			t.Errorf("%s -h printed no usage: %s", c.Name, stderr.String())
		}
		if !bytes.Contains(readme, []byte("delegated "+c.Name)) {
			t.Errorf("README.md does not show `delegated %s`", c.Name)
		}
		total += len(flags)
		for _, f := range flags {
			if !bytes.Contains(readme, []byte("--"+f[1])) {
				t.Errorf("README.md does not name `delegated %s --%s`", c.Name, f[1])
			}
		}
	}
	if total < 30 {
		t.Fatalf("found %d flags in the verbs' usage; the usage format changed?", total)
	}
}
