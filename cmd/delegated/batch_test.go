package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseBatch(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // requests as "line:name=domains;…"
		problems string // "line;…"
	}{
		{"empty", "", "", ""},
		{"comments and blanks", "# header\n\n   \n\t# indented\n", "", ""},
		{"one per line", "a a.example.com *.a.example.com\nb\tb.example.com\n", "1:a=a.example.com,*.a.example.com;2:b=b.example.com;", ""},
		{"trailing comment", "a a.example.com # customer 17\n", "1:a=a.example.com;", ""},
		{"hash inside a field is kept", "a a.example.com#x\n", "1:a=a.example.com#x;", ""},
		{"name alone", "ok ok.example.com\nlonely\n  alone  # no domain\n", "1:ok=ok.example.com;", "2;3;"},
		{"CRLF", "a a.example.com\r\n", "1:a=a.example.com;", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, lines, problems, err := parseBatch(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var got, gotP strings.Builder
			for k, r := range reqs {
				fmt.Fprintf(&got, "%d:%s=%s;", lines[k], r.Name, strings.Join(r.Domains, ","))
			}
			for _, p := range problems {
				fmt.Fprintf(&gotP, "%d;", p.Line)
			}
			if got.String() != tc.want || gotP.String() != tc.problems {
				t.Errorf("got %q problems %q, want %q problems %q", got.String(), gotP.String(), tc.want, tc.problems)
			}
		})
	}
	long := "a " + strings.Repeat("x", maxBatchLine) + "\n"
	if _, _, _, err := parseBatch(strings.NewReader(long)); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("over-long line: %v", err)
	}
}

// FuzzParseBatch: any input parses without panic; every request has a name
// and a domain and no blank or comment field, and line numbers grow.
func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{"", "a a.example.com\n", "# c\n\nb b.example *.b.example # x\n", "x\n", "a\tb\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		reqs, lines, problems, err := parseBatch(strings.NewReader(in))
		if err != nil {
			return
		}
		prev := 0
		for k, r := range reqs {
			if r.Name == "" || len(r.Domains) == 0 || strings.HasPrefix(r.Name, "#") {
				t.Fatalf("request %+v from %q", r, in)
			}
			if lines[k] <= prev {
				t.Fatalf("line numbers not increasing: %v", lines)
			}
			prev = lines[k]
		}
		for _, p := range problems {
			if p.Line < 1 {
				t.Fatalf("problem on line %d", p.Line)
			}
		}
	})
}
