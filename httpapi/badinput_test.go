package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/delegated/delegated/httpapi"
)

// endpoint describes one route for the bad-input table: how a request
// authenticates and what a valid body looks like.
type endpoint struct {
	method, path string
	auth         string // "none", "headers" or "basic"
	compat       bool   // §1 surface: lenient decoding, as acme-dns
	valid        func(c httpapi.Credentials) string
}

func (ep endpoint) headers(c httpapi.Credentials) [][2]string {
	switch ep.auth {
	case "headers":
		return apiHeaders(c)
	case "basic":
		return [][2]string{basicHeader(c.Username, c.Password)}
	}
	return nil
}

var badInputEndpoints = []endpoint{
	{"POST", "/register", "none", true, func(httpapi.Credentials) string { return `{"allowfrom":["192.0.2.0/24"]}` }},
	{"POST", "/update", "headers", true, func(c httpapi.Credentials) string {
		return `{"subdomain":"` + c.Subdomain + `","txt":"` + txt(7) + `"}`
	}},
	{"POST", "/present", "basic", false, func(httpapi.Credentials) string {
		return `{"fqdn":"_acme-challenge.example.com.","value":"` + txt(7) + `"}`
	}},
	{"POST", "/cleanup", "basic", false, func(httpapi.Credentials) string {
		return `{"domain":"example.com","token":"t","keyAuth":"t.k"}`
	}},
	{"DELETE", "/update", "headers", false, func(c httpapi.Credentials) string {
		return `{"subdomain":"` + c.Subdomain + `","txt":"` + txt(1) + `"}`
	}},
	{"POST", "/delete", "headers", false, func(c httpapi.Credentials) string {
		return `{"subdomain":"` + c.Subdomain + `","txt":"` + txt(1) + `"}`
	}},
	{"POST", "/clear", "headers", false, func(c httpapi.Credentials) string { return `{"subdomain":"` + c.Subdomain + `"}` }},
	{"POST", "/deregister", "headers", false, func(c httpapi.Credentials) string { return `{"subdomain":"` + c.Subdomain + `"}` }},
	{"DELETE", "/register", "headers", false, func(c httpapi.Credentials) string { return `{"subdomain":"` + c.Subdomain + `"}` }},
	{"POST", "/sync", "headers", false, func(c httpapi.Credentials) string { return `{"subdomain":"` + c.Subdomain + `"}` }},
}

type badCase struct {
	name string
	hdr  [][2]string
	body string
	code int
	resp string
}

const (
	errMalformed = `{"error": "malformed_json_payload"}`
	errForbidden = `{"error": "forbidden"}`
	errTooLarge  = `{"error": "payload_too_large"}`
	errUnknown   = `{"error": "unknown_key"}`
)

// badCases are the refusals every endpoint must give; none may change the
// store.
func badCases(ep endpoint, c, other httpapi.Credentials) []badCase {
	h := ep.headers(c)
	valid := ep.valid(c)
	huge := `{"subdomain":"` + strings.Repeat("a", 64<<10) + `"}`
	cases := []badCase{
		{"truncated JSON", h, valid[:len(valid)-1], 400, errMalformed},
		{"not JSON", h, "subdomain=x&txt=y", 400, errMalformed},
		{"array instead of object", h, `[]`, 400, errMalformed},
		{"string instead of object", h, `"x"`, 400, errMalformed},
		{"trailing data", h, valid + ` {}`, 400, errMalformed},
		{"two objects", h, valid + valid, 400, errMalformed},
		{"oversized body", h, huge, 413, errTooLarge},
		{"invalid UTF-8 key", h, "{\"\xff\":1}", 0, ""},
	}
	if ep.auth == "none" { // POST /register
		cases = append(cases,
			badCase{"allowfrom a string", nil, `{"allowfrom":"192.0.2.0/24"}`, 400, errMalformed},
			badCase{"allowfrom numbers", nil, `{"allowfrom":[1,2]}`, 400, errMalformed},
			badCase{"allowfrom object", nil, `{"allowfrom":{"a":"b"}}`, 400, errMalformed},
			badCase{"allowfrom invalid CIDR", nil, `{"allowfrom":["192.0.2.0/33"]}`, 400, `{"error": "invalid_allowfrom_cidr"}`},
			badCase{"allowfrom one of two invalid", nil, `{"allowfrom":["192.0.2.0/24","nope"]}`, 400, `{"error": "invalid_allowfrom_cidr"}`},
		)
		// The "invalid UTF-8" row: register ignores unknown keys (compat).
		cases[7].code, cases[7].resp = 201, ""
		return cases
	}
	// Authenticated endpoints: header problems.
	var missing, dup, wrongSecret [][2]string
	switch ep.auth {
	case "headers":
		missing = [][2]string{{"X-Api-User", c.Username}}
		dup = append(apiHeaders(c), [2]string{"X-Api-User", other.Username})
		wrongSecret = [][2]string{{"X-Api-User", c.Username}, {"X-Api-Key", strings.Repeat("k", 40)}}
		cases = append(cases,
			badCase{"key too short", [][2]string{{"X-Api-User", c.Username}, {"X-Api-Key", "short"}}, valid, 401, errForbidden},
			badCase{"user not a UUID", [][2]string{{"X-Api-User", "admin"}, {"X-Api-Key", c.Password}}, valid, 401, errForbidden},
			badCase{"duplicate key header", append(apiHeaders(c), [2]string{"X-Api-Key", c.Password}), valid, 401, errForbidden},
		)
	case "basic":
		missing = nil
		dup = [][2]string{basicHeader(c.Username, c.Password), basicHeader(c.Username, c.Password)}
		wrongSecret = [][2]string{basicHeader(c.Username, strings.Repeat("k", 40))}
		cases = append(cases,
			badCase{"bearer instead of basic", [][2]string{{"Authorization", "Bearer " + c.Password}}, valid, 401, errForbidden},
			badCase{"basic not base64", [][2]string{{"Authorization", "Basic !!!"}}, valid, 401, errForbidden},
			badCase{"basic without colon", [][2]string{{"Authorization", "Basic " + "dXNlcg=="}}, valid, 401, errForbidden},
			badCase{"X-Api headers instead of basic", apiHeaders(c), valid, 401, errForbidden},
		)
	}
	cases = append(cases,
		badCase{"missing credentials", missing, valid, 401, errForbidden},
		badCase{"no headers at all", nil, valid, 401, errForbidden},
		badCase{"duplicate user header", dup, valid, 401, errForbidden},
		badCase{"wrong key", wrongSecret, valid, 401, errForbidden},
	)
	if ep.compat { // /update
		cases = append(cases,
			badCase{"txt a number", h, `{"subdomain":"` + c.Subdomain + `","txt":5}`, 400, errMalformed},
			badCase{"subdomain an array", h, `{"subdomain":["` + c.Subdomain + `"],"txt":"` + txt(7) + `"}`, 400, errMalformed},
			badCase{"txt too short", h, `{"subdomain":"` + c.Subdomain + `","txt":"abc"}`, 400, `{"error": "bad_txt"}`},
			badCase{"txt with a bad character", h, `{"subdomain":"` + c.Subdomain + `","txt":"` + txt(7)[:42] + `="}`, 400, `{"error": "bad_txt"}`},
			badCase{"another account's subdomain", h, `{"subdomain":"` + other.Subdomain + `","txt":"` + txt(7) + `"}`, 401, errForbidden},
			badCase{"empty body", h, ``, 401, errForbidden},
		)
		// The "invalid UTF-8" row: unknown keys are ignored (compat), so
		// the request lacks its subdomain.
		cases[7].code, cases[7].resp = 401, errForbidden
		return cases
	}
	cases[7].code, cases[7].resp = 400, errUnknown
	cases = append(cases,
		badCase{"empty body", h, ``, 400, errMalformed},
		badCase{"null body", h, `null`, 400, nullBodyError(ep)},
		badCase{"unknown key", h, valid[:len(valid)-1] + `,"extra":1}`, 400, errUnknown},
		badCase{"misspelt key", h, strings.NewReplacer(`"subdomain"`, `"subdomian"`, `"fqdn"`, `"fdqn"`, `"keyAuth"`, `"keyAuht"`).Replace(valid), 400, errUnknown},
	)
	switch ep.auth {
	case "basic":
		cases = append(cases,
			badCase{"value a number", h, `{"fqdn":"_acme-challenge.example.com.","value":7}`, 400, errMalformed},
			badCase{"both forms", h, `{"fqdn":"_acme-challenge.example.com.","value":"` + txt(7) + `","keyAuth":"a.b"}`, 400, errMalformed},
			badCase{"bad value", h, `{"fqdn":"_acme-challenge.example.com.","value":"short"}`, 400, `{"error": "bad_txt"}`},
			badCase{"bad fqdn", h, `{"fqdn":"exa mple..com","value":"` + txt(7) + `"}`, 400, `{"error": "bad_fqdn"}`},
			badCase{"fqdn of another account", h, `{"fqdn":"` + other.Subdomain + `.auth.example.org.","value":"` + txt(7) + `"}`, 401, errForbidden},
			badCase{"RAW without keyAuth", h, `{"domain":"example.com","token":"t"}`, 400, `{"error": "bad_keyauth"}`},
			badCase{"RAW bad domain", h, `{"domain":"a..b","token":"t","keyAuth":"t.k"}`, 400, `{"error": "bad_domain"}`},
			badCase{"RAW keyAuth too long", h, `{"domain":"example.com","token":"t","keyAuth":"` + strings.Repeat("k", 513) + `"}`, 400, `{"error": "bad_keyauth"}`},
		)
	case "headers":
		cases = append(cases,
			badCase{"subdomain a number", h, `{"subdomain":5}`, 400, errMalformed},
			badCase{"subdomain missing", h, `{}`, 400, `{"error": "bad_subdomain"}`},
		)
		if strings.Contains(ep.valid(c), `"txt"`) {
			cases = append(cases,
				badCase{"another account's subdomain", h, `{"subdomain":"` + other.Subdomain + `","txt":"` + txt(2) + `"}`, 401, errForbidden},
				badCase{"txt missing", h, `{"subdomain":"` + c.Subdomain + `"}`, 400, `{"error": "bad_txt"}`},
				badCase{"txt a bool", h, `{"subdomain":"` + c.Subdomain + `","txt":true}`, 400, errMalformed},
			)
		} else {
			cases = append(cases, badCase{"another account's subdomain", h, `{"subdomain":"` + other.Subdomain + `"}`, 401, errForbidden})
			cases = append(cases, badCase{"txt is not a key here", h, `{"subdomain":"` + c.Subdomain + `","txt":"` + txt(1) + `"}`, 400, errUnknown})
		}
	}
	return cases
}

func nullBodyError(ep endpoint) string {
	if ep.auth == "basic" {
		return errMalformed // neither form given
	}
	return `{"error": "bad_subdomain"}`
}

func TestBadInput(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	c := e.register(t, "")
	other := e.register(t, "")
	e.mustUpdate(t, c, txt(1))
	e.mustUpdate(t, other, txt(2))
	for _, ep := range badInputEndpoints {
		for _, tc := range badCases(ep, c, other) {
			t.Run(ep.method+" "+ep.path+"/"+tc.name, func(t *testing.T) {
				before := e.snapshot(t)
				code, resp := e.call(t, ep.method, ep.path, tc.hdr, tc.body)
				if code != tc.code || (tc.resp != "" && resp != tc.resp) {
					t.Fatalf("got %d %s, want %d %s", code, resp, tc.code, tc.resp)
				}
				if code >= 200 && code < 300 {
					return // an accepted request (compat leniency) may change the store
				}
				if after := e.snapshot(t); after != before {
					t.Fatalf("store changed:\n before %s\n after  %s", before, after)
				}
			})
		}
	}
}

// TestBadInputContentTypeIgnored: the extensions, like §1, ignore the
// Content-Type (clients label JSON as form data or not at all).
func TestBadInputContentTypeIgnored(t *testing.T) {
	e := newExtEnv(t, httpapi.Options{})
	c := e.register(t, "")
	for _, ct := range []string{"", "application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"} {
		hdr := append(apiHeaders(c), [2]string{"Content-Type", ct})
		code, resp := e.call(t, "POST", "/delete", hdr, `{"subdomain":"`+c.Subdomain+`","txt":"`+txt(1)+`"}`)
		if code != http.StatusOK {
			t.Fatalf("Content-Type %q: %d %s", ct, code, resp)
		}
	}
}
