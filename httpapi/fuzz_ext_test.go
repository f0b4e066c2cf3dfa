package httpapi

import (
	"encoding/base64"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/miekg/dns"
)

// Fuzz targets for every parser of outside input in the API: request
// bodies (lenient §1 decoding and strict extension decoding), the
// credential headers and X-Forwarded-For. Seeds are in code and in
// testdata/fuzz/<target>/. Run one with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzAPIUpdateBody$' -fuzztime 1000000x -parallel 1 ./httpapi

func FuzzAPIUpdateBody(f *testing.F) {
	for _, s := range []string{
		``, `null`, `{}`, `{"subdomain":"s","txt":"t"}`, `{"Subdomain":"s","TXT":"t"}`,
		`{"txt":5}`, `[]`, `{"a":1} x`, "{\"\xff\":1}", `{"subdomain":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req updateRequest
		if err := decodeJSON(body, &req); err != nil {
			return
		}
		// Decoding twice gives the same result.
		var again updateRequest
		if err := decodeJSON(body, &again); err != nil || again != req {
			t.Fatalf("second decode differs: %v %+v %+v", err, req, again)
		}
		if validTXT(req.TXT) && (len(req.TXT) != 43 || strings.ContainsAny(req.TXT, "+/=\x00")) {
			t.Fatalf("validTXT accepted %q", req.TXT)
		}
	})
}

func FuzzAPIRegisterBody(f *testing.F) {
	for _, s := range []string{
		``, `null`, `{}`, `{"allowfrom":[]}`, `{"AllowFrom":["192.0.2.1/24","[2001:db8::]/32"]}`,
		`{"allowfrom":"x"}`, `{"allowfrom":["::ffff:1.2.3.4/128"]}`, `{"allowfrom":["1.2.3.4"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req registerRequest
		if err := decodeJSON(body, &req); err != nil {
			return
		}
		shown, prefixes, ok := parseAllowFrom(req.AllowFrom)
		if !ok {
			return
		}
		if shown == nil || len(shown) != len(req.AllowFrom) || len(prefixes) != len(shown) {
			t.Fatalf("allowfrom %q: shown %q prefixes %v", req.AllowFrom, shown, prefixes)
		}
		for _, p := range prefixes {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("prefix %v not valid and masked", p)
			}
		}
	})
}

func FuzzAPIHTTPReqBody(f *testing.F) {
	for _, s := range []string{
		`{"fqdn":"_acme-challenge.example.com.","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"fqdn":"0b7c8b56-3f4e-4a4f-9d55-2a8b1b7f3c11.auth.example.org.","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"domain":"*.example.com","token":"t","keyAuth":"t.k"}`,
		`{"fqdn":"x","value":"y","domain":"z"}`, `{"extra":1}`, `{}`, `null`, ``,
		`{"fqdn":"a.b.auth.example.org.","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req httpreqRequest
		if err := decodeStrict(body, &req); err != nil {
			return
		}
		sub, value, code := req.challenge("auth.example.org")
		if code != "" {
			if sub != "" || value != "" {
				t.Fatalf("error %s with a result %q %q", code, sub, value)
			}
			return
		}
		if !validTXT(value) {
			t.Fatalf("challenge produced an invalid value %q", value)
		}
		if fqdn := dns.Fqdn(strings.ToLower(strings.TrimSpace(req.FQDN))); sub != "" && fqdn != sub+".auth.example.org." && fqdn != "_acme-challenge."+sub+".auth.example.org." {
			t.Fatalf("subdomain %q not taken from fqdn %q", sub, req.FQDN)
		}
	})
}

func FuzzAPIDeleteBody(f *testing.F) {
	for _, s := range []string{
		`{"subdomain":"s","txt":"t"}`, `{"subdomain":"s"}`, `{"SUBDOMAIN":"s"}`, `{"subdomain":"s","extra":null}`,
		`{"subdomain":5}`, `[]`, ``, `null`, `{"subdomain":"s"} {"subdomain":"t"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var del deleteRequest
		errDel := decodeStrict(body, &del)
		var sub subdomainRequest
		errSub := decodeStrict(body, &sub)
		// A body the narrower struct accepts, the wider accepts identically.
		if errSub == nil && (errDel != nil || del.Subdomain != sub.Subdomain) {
			t.Fatalf("subdomain-only body %q: delete decode %v %+v", body, errDel, del)
		}
	})
}

func FuzzAPIForwardedFor(f *testing.F) {
	f.Add("127.0.0.1:1", "198.51.100.7, 203.0.113.9", "")
	f.Add("192.0.2.1:1", "198.51.100.7", "10.0.0.1")
	f.Add("[::1]:1", "[2001:db8::1]:80,::ffff:1.2.3.4", "fe80::1%eth0")
	f.Add("127.0.0.1:1", ",,", "unknown")
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, remote, line1, line2 string) {
		var lines []string
		for _, l := range []string{line1, line2} {
			if l != "" {
				lines = append(lines, l)
			}
		}
		got, ok := clientAddr(remote, lines, trusted)
		ap, err := netip.ParseAddrPort(remote)
		if err != nil {
			if ok {
				t.Fatalf("unparseable peer %q gave %v", remote, got)
			}
			return
		}
		peer := ap.Addr().Unmap()
		if !inPrefixes(trusted, peer) {
			// An untrusted peer can never choose its address.
			if !ok || got != peer {
				t.Fatalf("untrusted peer %v with X-Forwarded-For %q became %v, %v", peer, lines, got, ok)
			}
			return
		}
		if !ok || got == peer {
			return
		}
		// Otherwise the client is one of the hops, never an invented address.
		found := false
		for _, l := range lines {
			for _, h := range strings.Split(l, ",") {
				if a, ok := parseHop(h); ok && a == got {
					found = true
				}
			}
		}
		if !found || got.Is4In6() {
			t.Fatalf("client %v is not a hop of %q", got, lines)
		}
	})
}

func FuzzAPICredentialHeaders(f *testing.F) {
	user := "0b7c8b56-3f4e-4a4f-9d55-2a8b1b7f3c11"
	key := strings.Repeat("k", 40)
	f.Add(user, key, "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+key)), "Bearer tok")
	f.Add("{"+user+"}", key, "basic   "+base64.StdEncoding.EncodeToString([]byte(user+":"+key)), "")
	f.Add("urn:uuid:"+user, "short", "Basic !!", "bearer ")
	f.Fuzz(func(t *testing.T, apiUser, apiKey, authorization, token string) {
		h := http.Header{}
		h.Set("X-Api-User", apiUser)
		h.Set("X-Api-Key", apiKey)
		if authorization != "" {
			h.Set("Authorization", authorization)
		}
		r := &http.Request{Header: h}
		if u, k, ok := credentialHeaders(r); ok {
			checkCredential(t, u, k)
		}
		if u, k, ok := basicCredentials(h); ok {
			checkCredential(t, u, k)
		}
		h.Set("X-Registration-Token", token)
		if tok, ok := registrationToken(h); ok && (tok == "" || tok != strings.TrimSpace(tok)) {
			t.Fatalf("registration token %q", tok)
		}
	})
}

func checkCredential(t *testing.T, username, key string) {
	t.Helper()
	u, err := uuid.Parse(username)
	if err != nil || u.String() != username {
		t.Fatalf("username %q not canonical", username)
	}
	if !validKey(key) {
		t.Fatalf("key %q accepted", key)
	}
}
