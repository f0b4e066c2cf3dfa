package issuer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/delegated/delegated/store"
)

const testZone = "auth.example.test."

// TestCheckDomain: each kind of name a CA cannot issue for, or whose
// challenge name cannot exist, is refused with ErrInvalid and a reason.
func TestCheckDomain(t *testing.T) {
	long := func(n int) string { // a valid name of exactly n characters
		labels := strings.Repeat("abcdefghi.", 30)
		s := labels[len(labels)-(n-len("example")):] + "example"
		if s[0] == '.' {
			s = "x" + s[1:]
		}
		return s
	}
	tests := []struct {
		domain, wantErr string
	}{
		{"example.com", ""},
		{"*.example.com", ""},
		{"xn--bcher-kva.example", ""},
		{"a-b.c0.example", ""},
		{"123.example.com", ""},     // numeric labels are fine below the TLD
		{"auth.example.test", ""},   // our zone: answered by the zone itself
		{"*.auth.example.test", ""}, // and its wildcard
		{long(maxBaseLen), ""},
		{"*." + long(maxBaseLen), ""},
		{"192.0.2.1", "is an IP address"},
		{"*.192.0.2.1", "is an IP address"},
		{"2001:db8::1", "is an IP address"},
		{"[2001:db8::1]", "is an IP address"},
		{"foo.123", "numeric label \"123\""},
		{long(maxBaseLen + 1), "characters long; at most 219"},
		{long(253), "characters long"},
		{"www.auth.example.test", "inside this server's zone"},
		{"*.x.auth.example.test", "inside this server's zone"},
		{"bücher.example", `ASCII form "xn--bcher-kva.example"`},
		{"a_b.example", `"_" is not allowed`},
		{"-a.example", "starts or ends with '-'"},
		{"a..example", "empty label"},
		{strings.Repeat("a", 64) + ".example", "at most 63"},
		{"localhost", "single label"},
		{"a.*.example", "wildcard is allowed only"},
		{"*", "wildcard is allowed only"},
		{"", "empty"},
		{"a\x1b[31m.example", "not a domain name"},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			err := checkDomain(tc.domain)
			if err == nil {
				err = checkOutsideZone([]string{tc.domain}, testZone)
			}
			checkVerdict(t, err, tc.wantErr)
		})
	}
}

// checkVerdict: err is nil when wantErr is empty, else ErrInvalid
// containing wantErr, printable throughout.
func checkVerdict(t *testing.T, err error, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("got %v; want ErrInvalid containing %q", err, wantErr)
	}
	for _, r := range err.Error() {
		if r != '…' && (r < 0x20 || r == 0x7f || !unicode.IsPrint(r)) {
			t.Fatalf("message carries %q raw: %q", r, err.Error())
		}
	}
}

func TestCheckCertName(t *testing.T) {
	tests := []struct{ name, wantErr string }{
		{"example.com", ""},
		{"Example_2-test.v1", ""},
		{strings.Repeat("a", 64), ""},
		{strings.Repeat("a", 65), "65 characters long"},
		{strings.Repeat("a", 300), "300 characters long"},
		{"", "is empty"},
		{"../etc", "does not start with a letter or digit"},
		{"a/b", "slash"},
		{`a\b`, "slash"},
		{".hidden", "does not start"},
		{"a\nb", "control character"},
		{"a\x1b[2Jb", "control character"},
		{"a b", `contains " "`},
		{"*.example.com", "does not start"},
		{"née", `contains`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkVerdict(t, checkCertName(tc.name), tc.wantErr)
		})
	}
}

// FuzzNames: operator input never panics; an accepted certificate name is
// one short printable file name; an accepted domain is LDH, short enough
// for both challenge names, not an IP and not below our zone; every
// message is printable.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com", "192.0.2.1", "foo.123", "a\x1b[31m", "bücher.de", "www.auth.example.test", "a/b", ".."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		domainErr := checkDomain(s)
		if domainErr == nil {
			domainErr = checkOutsideZone([]string{s}, testZone)
		}
		for _, err := range []error{checkCertName(s), domainErr} {
			if err == nil {
				continue
			}
			for _, r := range err.Error() {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("message carries %q raw: %q", r, err.Error())
				}
			}
		}
		if checkCertName(s) == nil {
			if len(s) > maxCertNameLen || strings.ContainsAny(s, "/\\\x00\n") || s == "." || s == ".." {
				t.Fatalf("certificate name %q accepted", s)
			}
		}
		if domainErr == nil {
			base := strings.TrimPrefix(s, "*.")
			if len("_0123456789abcdef."+challengePrefix+base) > maxNameLen || strings.ContainsAny(base, "*: _/") || strings.HasSuffix(base, ".auth.example.test") {
				t.Fatalf("domain %q accepted", s)
			}
		}
	})
}

// TestMaxBaseLen: the longest accepted name still fits under both
// challenge prefixes, and one more character would not.
func TestMaxBaseLen(t *testing.T) {
	if got := len("_0123456789abcdef." + challengePrefix + strings.Repeat("a", maxBaseLen)); got != maxNameLen {
		t.Fatalf("dns-account-01 name of the longest base is %d characters, want %d", got, maxNameLen)
	}
}

// TestIssueRefusesBadNames: Issue refuses before recording anything: no
// certificate row and no challenge subdomain for any refused request.
func TestIssueRefusesBadNames(t *testing.T) {
	iss, st := newTestIssuer(t, &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	ctx := context.Background()
	for _, req := range []Request{
		{Name: "ip", Domains: []string{"192.0.2.1"}},
		{Name: "numeric", Domains: []string{"foo.123"}},
		{Name: "long", Domains: []string{strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 40) + ".example"}},
		{Name: "ours", Domains: []string{"ok.example", "www.auth.example.org"}},
		{Name: strings.Repeat("n", 300), Domains: []string{"ok.example"}},
		{Name: "x\x1b[2Jy", Domains: []string{"ok.example"}},
	} {
		if _, err := iss.Issue(ctx, req); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q %v: %v, want ErrInvalid", req.Name, req.Domains, err)
		}
		if _, err := st.CertificateByName(ctx, req.Name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%q: recorded (%v)", req.Name, err)
		}
	}
	for _, base := range []string{"192.0.2.1", "foo.123", "ok.example", "www.auth.example.org"} {
		if _, err := st.ChallengeNameByBase(ctx, base); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s got a challenge subdomain (%v)", base, err)
		}
	}
}
