package issuer

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-acme/lego/v4/acme"
)

// The example of draft-ietf-acme-dns-account-label (section 3.2): account
// https://example.com/acme/acct/ExampleAccount validating example.org reads
// _ujmmovf2vn55tgye._acme-challenge.example.org.
func TestAccountLabelDraftExample(t *testing.T) {
	const acct = "https://example.com/acme/acct/ExampleAccount"
	if got := AccountLabel(acct); got != "ujmmovf2vn55tgye" {
		t.Errorf("AccountLabel = %q, want ujmmovf2vn55tgye", got)
	}
	if got, want := AccountChallengeName(acct, "example.org"), "_ujmmovf2vn55tgye._acme-challenge.example.org."; got != want {
		t.Errorf("AccountChallengeName = %q, want %q", got, want)
	}
	// Two accounts never share a name: that is the point of the method.
	if AccountLabel(acct) == AccountLabel(acct+"2") {
		t.Error("two accounts got one label")
	}
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"", ChallengeDNS01, ""},
		{"dns-01", ChallengeDNS01, ""},
		{" DNS-Account-01 ", ChallengeDNSAccount01, ""},
		{"dns-persist-01", ChallengeDNSPersist01, ""},
		{"http-01", "", `unknown challenge "http-01"; expected dns-01, dns-account-01, dns-persist-01`},
	}
	for _, tc := range tests {
		got, err := ParseChallenge(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseChallenge(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseChallenge(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// The persist value has the syntax the draft gives (an RFC 8659
// issue-value) and that Pebble v2.10.3 parses (va.go
// splitIssuerDomainName, parseDNSPersistIssueValues).
func TestPersistValue(t *testing.T) {
	tests := []struct {
		issuer, account string
		wildcard        bool
		want            string
	}{
		{"letsencrypt.org", "https://acme-v02.api.letsencrypt.org/acme/acct/123", false,
			"letsencrypt.org; accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/123"},
		{"pebble.letsencrypt.org", "https://127.0.0.1:14000/my-account/1", true,
			"pebble.letsencrypt.org; accounturi=https://127.0.0.1:14000/my-account/1; policy=wildcard"},
	}
	for _, tc := range tests {
		got := PersistValue(tc.issuer, tc.account, tc.wildcard)
		if got != tc.want {
			t.Errorf("PersistValue = %q, want %q", got, tc.want)
		}
		iss, acct, wc := persistParts(got)
		if iss != tc.issuer || acct != tc.account || wc != tc.wildcard {
			t.Errorf("persistParts(%q) = %q %q %v", got, iss, acct, wc)
		}
	}
	// Tags are case-insensitive and whitespace around them is allowed.
	iss, acct, wc := persistParts("ca.example ;AccountURI= https://ca.example/a/1 ; Policy=WILDCARD")
	if iss != "ca.example" || acct != "https://ca.example/a/1" || !wc {
		t.Errorf("persistParts: %q %q %v", iss, acct, wc)
	}
}

func TestProfileOffered(t *testing.T) {
	offered := map[string]string{"shortlived": "6-day certificates", "classic": "", "tlsserver": "TLS server"}
	if err := profileOffered(offered, "shortlived", "https://ca/dir"); err != nil {
		t.Errorf("offered profile refused: %v", err)
	}
	err := profileOffered(offered, "longlived", "https://ca/dir")
	want := `invalid request: profile "longlived" is not offered by the CA at https://ca/dir; known profiles: classic, shortlived (6-day certificates), tlsserver (TLS server)`
	if !errors.Is(err, ErrInvalid) || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	err = profileOffered(nil, "classic", "https://ca/dir")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "offers no profiles") {
		t.Errorf("no profiles: got %v", err)
	}
}

func TestBodyTap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"path":"`+r.URL.Path+`"}`)
	}))
	defer srv.Close()
	tap := newBodyTap(http.DefaultTransport)
	cl := &http.Client{Transport: tap}
	get := func(u string) string {
		resp, err := cl.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	take := tap.watch(srv.URL + "/authz/1")
	// The reader of the response sees it whole, watched or not.
	if got := get(srv.URL + "/authz/1"); got != `{"path":"/authz/1"}` {
		t.Errorf("watched body reached the client as %q", got)
	}
	if got := get(srv.URL + "/authz/2"); got != `{"path":"/authz/2"}` {
		t.Errorf("unwatched body %q", got)
	}
	if got := string(take()); got != `{"path":"/authz/1"}` {
		t.Errorf("kept %q", got)
	}
	if len(tap.bodies) != 0 || len(tap.watched) != 0 {
		t.Errorf("tap keeps state after take: %v %v", tap.bodies, tap.watched)
	}
	cl.CloseIdleConnections()
}

// A CA that does not offer the chosen method gets an error naming the
// method, the domain and what it does offer, before anything is placed.
func TestPresentMethodNotOffered(t *testing.T) {
	i := &Issuer{}
	authz := acme.Authorization{
		Identifier: acme.Identifier{Type: "dns", Value: "example.com"},
		Challenges: []acme.Challenge{{Type: "http-01"}, {Type: "dns-01"}},
	}
	_, sol, err := i.present(context.Background(), nil, nil, "https://ca/authz/1", authz, "example.com", ChallengeDNSAccount01, []string{"example.com"})
	want := "the CA does not offer dns-account-01 for example.com (it offers http-01, dns-01); choose another method with --challenge or [issuer] challenge"
	if err == nil || err.Error() != want || sol != nil {
		t.Errorf("got %v, %v; want %q", sol, err, want)
	}
}

// persistParts reads back what PersistValue writes, for any issuer name
// and account URL an RFC 8659 value may hold (printable ASCII without
// ';', and no '=' in the issuer name). testdata keeps a control character
// the fuzzer found, which no such value holds.
func FuzzPersistRoundTrip(f *testing.F) {
	f.Add("letsencrypt.org", "https://acme-v02.api.letsencrypt.org/acme/acct/1", true)
	f.Add("pebble.letsencrypt.org", "https://127.0.0.1:14000/my-account/1", false)
	f.Fuzz(func(t *testing.T, issuerName, account string, wildcard bool) {
		if issuerName == "" || !rfc8659Value(issuerName) || strings.Contains(issuerName, "=") || !rfc8659Value(account) {
			t.Skip()
		}
		i, a, w := persistParts(PersistValue(issuerName, account, wildcard))
		if i != issuerName || a != account || w != wildcard {
			t.Errorf("round trip of %q %q %v gave %q %q %v", issuerName, account, wildcard, i, a, w)
		}
	})
}

// rfc8659Value reports whether s is made of the characters an RFC 8659
// parameter value allows: printable ASCII except ';'.
func rfc8659Value(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == ';' {
			return false
		}
	}
	return true
}
