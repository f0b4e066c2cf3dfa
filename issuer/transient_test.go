package issuer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/go-acme/lego/v4/acme"
)

func TestTransient(t *testing.T) {
	timeout := &url.Error{Op: "Post", URL: "https://ca/finalize/1", Err: errors.New("net/http: request canceled (Client.Timeout exceeded while awaiting headers)")}
	badRoots := &url.Error{Op: "Get", URL: "https://ca/dir", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"timeout", timeout, true},
		{"wrapped timeout", fmt.Errorf("finalize: %w", timeout), true},
		{"reset", &url.Error{Op: "Post", URL: "https://ca/chal/1", Err: errors.New("EOF")}, true},
		{"CA overloaded", &acme.ProblemDetails{Type: "urn:ietf:params:acme:error:serverInternal", HTTPStatus: 503}, true},
		{"CA verdict", &acme.ProblemDetails{Type: "urn:ietf:params:acme:error:orderNotReady", HTTPStatus: 403}, false},
		{"rate limited", &acme.ProblemDetails{Type: "urn:ietf:params:acme:error:rateLimited", HTTPStatus: 429}, false},
		{"untrusted CA certificate", badRoots, false},
		{"other", errors.New("order invalid"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transient(tc.err); got != tc.want {
				t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
