package issuer

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// Limits on what an operator may ask for. Everything is checked when the
// certificate is requested, so that a name the CA cannot issue for, or a
// certificate that cannot be deployed, never gets a challenge subdomain, an
// order or a directory.
const (
	// maxCertNameLen bounds --cert-name: it is a directory under
	// deploy_dir/live and appears in every CLI line and hook variable.
	maxCertNameLen = 64
	// maxNameLen is the longest domain name in presentation form without
	// its final dot (255 octets on the wire, RFC 1035 §3.1).
	maxNameLen = 253
	// challengePrefix is what DNS-01 puts before the name (RFC 8555 §8.4).
	challengePrefix = "_acme-challenge."
	// accountLabelLen is the length of dns-account-01's label
	// "_<16 base32 characters>." put before _acme-challenge.
	accountLabelLen = 1 + 16 + 1
	// maxBaseLen is the longest base name (without "*.") whose challenge
	// names, for dns-01 and for dns-account-01, are still domain names.
	maxBaseLen = maxNameLen - accountLabelLen - len(challengePrefix)
)

// checkCertName validates a certificate name: one file name of at most
// maxCertNameLen characters from [A-Za-z0-9._-], starting with a letter
// or digit. Control characters and escape sequences would reach terminals
// through `certificates`, and slashes or ".." would leave deploy_dir.
func checkCertName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: certificate name %s %s; expected up to %d letters, digits, '.', '-' or '_' starting with a letter or digit, such as \"example.com\"",
			ErrInvalid, quoteName(name), why, maxCertNameLen)
	}
	switch {
	case name == "":
		return bad("is empty")
	case len(name) > maxCertNameLen:
		return bad(fmt.Sprintf("is %d characters long", len(name)))
	case !isAlnum(name[0]):
		return bad("does not start with a letter or digit")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isAlnum(c) || c == '.' || c == '-' || c == '_':
		case c == '/' || c == '\\':
			return bad("contains a slash")
		case c < 0x20 || c == 0x7f:
			return bad("contains a control character")
		default:
			return bad(fmt.Sprintf("contains %q", string(c)))
		}
	}
	return nil
}

// checkDomain validates one requested domain d (lower case, no final dot).
// It returns the reason in one sentence, naming what to do.
func checkDomain(d string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, quoteName(d), fmt.Sprintf(format, args...))
	}
	if d == "" {
		return bad("empty; expected a domain name such as \"example.com\"")
	}
	base := strings.TrimPrefix(d, "*.")
	if _, err := netip.ParseAddr(strings.Trim(base, "[]")); err == nil {
		return bad("is an IP address; DNS-01 validates domain names only")
	}
	if len(base) > maxBaseLen {
		return bad("is %d characters long; at most %d fit under %q (and dns-account-01's \"_<label>.\" before it) within the %d characters of a domain name",
			len(base), maxBaseLen, challengePrefix, maxNameLen)
	}
	if strings.Contains(base, "*") {
		return bad("is not a domain name: a wildcard is allowed only as the whole first label, as in \"*.example.com\"")
	}
	if !isASCII(base) {
		if a, err := idna.Lookup.ToASCII(base); err == nil {
			return bad("is not ASCII; write the internationalized name in its ASCII form %q", a)
		}
		return bad("is not a domain name: it holds characters outside letters, digits and '-'")
	}
	labels := strings.Split(base, ".")
	if len(labels) < 2 {
		return bad("is not a domain name: it has a single label; expected a name such as \"example.com\"")
	}
	for _, l := range labels {
		switch {
		case l == "":
			return bad("is not a domain name: it has an empty label (two dots in a row, or a leading dot)")
		case len(l) > 63:
			return bad("is not a domain name: its label %q is %d characters long; at most 63", l, len(l))
		case l[0] == '-' || l[len(l)-1] == '-':
			return bad("is not a domain name: its label %q starts or ends with '-'", l)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' {
				return bad("is not a domain name: %q is not allowed (letters, digits and '-' only)", string(c))
			}
		}
	}
	if tld := labels[len(labels)-1]; isDigits(tld) {
		return bad("ends in the numeric label %q; no top-level domain is all digits", tld)
	}
	return nil
}

// checkOutsideZone refuses domains below our own zone (FQDN, lower case).
// The zone's own name and its wildcard validate through
// _acme-challenge.<zone>, which the zone answers itself (self.go); a name
// below it would need a CNAME inside our zone, which serves challenge
// subdomains only.
func checkOutsideZone(domains []string, zone string) error {
	z := strings.TrimSuffix(zone, ".")
	for _, d := range domains {
		if base := strings.TrimPrefix(d, "*."); z != "" && strings.HasSuffix(base, "."+z) {
			return fmt.Errorf("%w: %s: is inside this server's zone %s; only %q and %q can be issued from it", ErrInvalid, quoteName(d), z, z, "*."+z)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// quoteName is s for a message: as is when it is plain printable ASCII,
// else Go-quoted, so that a control character or escape sequence in
// operator input never reaches a terminal raw. Long input is cut.
func quoteName(s string) string {
	const show = 80
	cut := ""
	if len(s) > show {
		s, cut = s[:show], "…"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f || s[i] == '"' {
			return fmt.Sprintf("%q", s) + cut
		}
	}
	return `"` + s + `"` + cut
}
