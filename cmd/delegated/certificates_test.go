package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/delegated/delegated/issuer"
)

func TestConfirmDelete(t *testing.T) {
	cert := issuer.Cert{Name: "shop", Domains: []string{"shop.example", "*.shop.example"}, Status: issuer.StatusActive}
	cert.Paths.Dir = "/var/lib/delegated/live/shop"
	for _, tc := range []struct {
		name     string
		stdin    *strings.Reader // nil: no stdin at all
		wantOK   bool
		wantCode int // exit status carried by the error; 1 when plain
	}{
		{"y", strings.NewReader("y\n"), true, 0},
		{"yes, loud, spaced", strings.NewReader("  YES \n"), true, 0},
		{"y without a newline", strings.NewReader("y"), true, 0},
		{"n", strings.NewReader("n\n"), false, 1},
		{"just enter", strings.NewReader("\n"), false, 1},
		{"anything else", strings.NewReader("delete it\n"), false, 1},
		{"closed stdin", strings.NewReader(""), false, 2},
		{"no stdin", nil, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			var err error
			if tc.stdin == nil {
				err = confirmDelete(cert, nil, &stderr)
			} else {
				err = confirmDelete(cert, tc.stdin, &stderr)
			}
			if !strings.Contains(stderr.String(), `Delete certificate "shop" (shop.example, *.shop.example)?`) || !strings.Contains(stderr.String(), cert.Paths.Dir) {
				t.Errorf("the question does not name the certificate, its domains and its files:\n%s", stderr.String())
			}
			if !strings.Contains(stderr.String(), "delegated revoke --cert-name shop first") {
				t.Errorf("the question does not warn that an active certificate can no longer be revoked:\n%s", stderr.String())
			}
			if tc.wantOK {
				if err != nil {
					t.Fatalf("confirmDelete = %v, want consent", err)
				}
				return
			}
			if err == nil {
				t.Fatal("confirmDelete consented")
			}
			code := 1
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			}
			if code != tc.wantCode {
				t.Errorf("exit status %d (%v), want %d", code, err, tc.wantCode)
			}
		})
	}
}

// TestCertificatesPrintNoEscapes: a name or error holding a newline or an
// escape sequence (stored before names were validated) is printed quoted,
// never raw.
func TestCertificatesPrintNoEscapes(t *testing.T) {
	evil := "x\x1b[2J\ny"
	cert := issuer.Cert{Name: evil, Domains: []string{"a.example"}, Status: issuer.StatusFailed, Challenge: "dns-01", Attempts: 2, LastError: "deploy: open live/" + evil + ": bad\nsecond line"}
	cert.Paths.FullChain = "/certs/live/" + evil + "/fullchain.pem"
	cert.Paths.PrivKey = "/certs/live/" + evil + "/privkey.pem"
	var out bytes.Buffer
	printCertificates(&out, []issuer.Cert{cert})
	if strings.ContainsRune(out.String(), '\x1b') {
		t.Fatalf("raw escape printed:\n%q", out.String())
	}
	for _, want := range []string{`Certificate Name: "x\x1b[2J\ny"`, `--cert-name "x\x1b[2J\ny"`, "\n    second line\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 10 {
		t.Errorf("%d lines, want 10 (the name's newline must not start a line):\n%s", n, out.String())
	}
}
