package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/delegated/delegated/httpapi"
)

// TestCredentialsNotHTMLEscaped: `account add` prints "<domain>" as is.
func TestCredentialsNotHTMLEscaped(t *testing.T) {
	var out bytes.Buffer
	c := httpapi.Credentials{Username: "u", Password: "p&q", Fulldomain: "s.auth.example.test", Subdomain: "s"}
	if err := printCredentials(&out, c, "", "http://127.0.0.1:8053"); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, `\u00`) || !strings.Contains(s, `{"<domain>":{`) || !strings.Contains(s, `"p&q"`) {
		t.Fatalf("escaped or missing:\n%s", s)
	}
}
