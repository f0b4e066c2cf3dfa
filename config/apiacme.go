package config

import (
	"fmt"
	"strings"
)

// validateAPIACME checks [api] tls = "acme": the API's own certificate,
// obtained by the bundled issuer. Its names must be ones whose
// _acme-challenge name our own DNS server answers without any CNAME: the
// zone's name, whose challenge name _acme-challenge.<zone> is a label of
// the zone, and the zone's wildcard, which validates through the same
// name. A name deeper in the zone (www.<zone>) would need a two-label
// challenge name, which the server does not answer; the wildcard covers it.
func (c *Config) validateAPIACME() error {
	a := &c.API
	if c.Issuer == nil {
		return c.fail("api.tls", "\"acme\" needs the bundled issuer; add an [issuer] section (directory, email) or use api.tls = \"files\"")
	}
	if a.CertFile != "" {
		return c.fail("api.cert_file", "set but api.tls = \"acme\" obtains the certificate itself; remove it or use api.tls = \"files\"")
	}
	if a.KeyFile != "" {
		return c.fail("api.key_file", "set but api.tls = \"acme\" obtains the certificate itself; remove it or use api.tls = \"files\"")
	}
	zone := strings.TrimSuffix(c.Zone.Domain, ".")
	// A static record there would shadow the challenge values.
	for i, rr := range c.Zone.ParsedRecords {
		if strings.EqualFold(rr.Header().Name, "_acme-challenge."+c.Zone.Domain) {
			return c.fail(fmt.Sprintf("zone.records[%d]", i), "a record at _acme-challenge.%s would hide the challenge values of api.tls = \"acme\"; remove it", zone)
		}
	}
	if len(a.ACMEDomains) == 0 {
		a.ACMEDomains = []string{zone}
	}
	seen := map[string]bool{}
	out := a.ACMEDomains[:0]
	for i, d := range a.ACMEDomains {
		key := fmt.Sprintf("api.acme_domains[%d]", i)
		name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if name == "" {
			return c.fail(key, "empty; expected %q or %q", zone, "*."+zone)
		}
		if name != zone && name != "*."+zone {
			return c.fail(key, "%q is not supported; expected the zone's name %q or its wildcard %q, whose _acme-challenge name the zone answers itself (the wildcard covers names below the zone's name)", d, zone, "*."+zone)
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	a.ACMEDomains = out
	return nil
}
