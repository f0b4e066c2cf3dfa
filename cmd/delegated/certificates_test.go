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
