package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// CA is one certificate authority of [[issuer.ca]], in order of preference.
type CA struct {
	// Name identifies the CA in the CLI (--ca), the store, logs and
	// metrics. Required in the list form; the single-CA form is named
	// DefaultCAName.
	Name string `toml:"name"`
	// Directory is the CA's ACME directory URL (https). Required.
	Directory string `toml:"directory"`
	// Email is the ACME account contact.
	Email string `toml:"email"`
	// CARoots are PEM files of roots trusted for the CA's HTTPS.
	CARoots []string `toml:"ca_roots"`
	// EABKID and EABHMACFile bind the account to an external one. In the
	// single-CA form the HMAC may come from DELEGATED_EAB_HMAC, in the list
	// form from DELEGATED_EAB_HMAC_<NAME> (upper case, '-' and '.' as '_').
	EABKID      string `toml:"eab_kid"`
	EABHMACFile string `toml:"eab_hmac_file"`
	// PreferredChain is the issuer common name of the preferred chain's top.
	PreferredChain string `toml:"preferred_chain"`
	// Profile is the ACME profile asked of this CA when the certificate
	// names none.
	Profile string `toml:"profile"`
	// KeyType of certificate keys from this CA; default "EC256".
	KeyType string `toml:"key_type"`
	// CAAIdentities are the issuer domain names CAA records name this CA
	// by; empty means the directory's meta.caaIdentities.
	CAAIdentities []string `toml:"caa_identities"`
}

// DefaultCAName names the CA of the single-CA form ([issuer] directory).
const DefaultCAName = "default"

// caName is what a CA's name may look like: it appears in flags, metric
// labels and an environment variable name.
var caName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// validateCAs turns both forms into Issuer.CAs: the list form as written,
// or the single-CA keys of [issuer] as a one-element list. Mixing them is
// an error naming the single-form key, since which CA it meant is unclear.
func (c *Config) validateCAs() error {
	is := c.Issuer
	if len(is.CAs) > 0 {
		single := []struct {
			key string
			set bool
		}{
			{"issuer.directory", is.Directory != ""},
			{"issuer.email", is.Email != ""},
			{"issuer.ca_roots", len(is.CARoots) > 0},
			{"issuer.key_type", is.KeyType != ""},
			{"issuer.eab_kid", is.EABKID != ""},
			{"issuer.eab_hmac_file", is.EABHMACFile != ""},
			{"issuer.preferred_chain", is.PreferredChain != ""},
			{"issuer.profile", is.Profile != ""},
		}
		for _, s := range single {
			if s.set {
				return c.fail(s.key, "cannot be combined with [[issuer.ca]] tables; move it into each [[issuer.ca]] table (the single-CA keys are the one-CA form)")
			}
		}
		seen := map[string]int{}
		for k := range is.CAs {
			key := fmt.Sprintf("issuer.ca[%d]", k)
			ca := &is.CAs[k]
			if ca.Name == "" {
				return c.fail(key+".name", "missing; expected a short name such as \"letsencrypt\" (used by --ca, logs and metrics)")
			}
			if !caName.MatchString(ca.Name) {
				return c.fail(key+".name", "%q: expected lower-case letters, digits, '.', '_' or '-' (at most 63), such as \"letsencrypt\"", ca.Name)
			}
			if prev, dup := seen[ca.Name]; dup {
				return c.fail(key+".name", "%q is also the name of issuer.ca[%d]; names must differ", ca.Name, prev)
			}
			seen[ca.Name] = k
			if err := c.validateCA(key, ca); err != nil {
				return err
			}
		}
		return nil
	}
	ca := CA{
		Name: DefaultCAName, Directory: is.Directory, Email: is.Email, CARoots: is.CARoots,
		EABKID: is.EABKID, EABHMACFile: is.EABHMACFile, PreferredChain: is.PreferredChain, KeyType: is.KeyType,
	}
	if err := c.validateCA("issuer", &ca); err != nil {
		return err
	}
	// The single-form fields keep their normalized values for readers
	// that predate the list.
	is.CARoots, is.KeyType, is.EABHMACFile = ca.CARoots, ca.KeyType, ca.EABHMACFile
	is.CAs = []CA{ca}
	return nil
}

// validateCA checks one CA whose keys are under prefix ("issuer" or
// "issuer.ca[N]") and applies defaults.
func (c *Config) validateCA(prefix string, ca *CA) error {
	if ca.Directory == "" {
		return c.fail(prefix+".directory", "missing; expected the CA's ACME directory URL, e.g. \"https://acme-v02.api.letsencrypt.org/directory\"")
	}
	u, err := url.Parse(ca.Directory)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return c.fail(prefix+".directory", "%q is not an https URL; expected e.g. \"https://acme-v02.api.letsencrypt.org/directory\"", ca.Directory)
	}
	if ca.Email != "" && !strings.Contains(ca.Email, "@") {
		return c.fail(prefix+".email", "%q is not an email address", ca.Email)
	}
	for i, p := range ca.CARoots {
		if p == "" {
			return c.fail(fmt.Sprintf("%s.ca_roots[%d]", prefix, i), "empty; expected a PEM file path")
		}
		ca.CARoots[i] = c.abs(p)
	}
	if _, err := CertKeyType(ca.KeyType); err != nil {
		return c.fail(prefix+".key_type", "%v", err)
	}
	ca.KeyType = canonicalKeyType(ca.KeyType)
	if ca.EABHMACFile != "" && ca.EABKID == "" {
		return c.fail(prefix+".eab_kid", "missing; %s.eab_hmac_file needs the key id it belongs to", prefix)
	}
	ca.EABHMACFile = c.abs(ca.EABHMACFile)
	if ca.Profile != "" && strings.ContainsAny(ca.Profile, " \t\r\n") {
		return c.fail(prefix+".profile", "%q: expected a profile name the CA's directory lists, such as \"tlsserver\"", ca.Profile)
	}
	for i, id := range ca.CAAIdentities {
		id = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(id), "."))
		if id == "" || strings.ContainsAny(id, " ;=/") || !strings.Contains(id, ".") {
			return c.fail(fmt.Sprintf("%s.caa_identities[%d]", prefix, i), "%q is not an issuer domain name; expected what CAA issue records name the CA by, such as \"letsencrypt.org\"", ca.CAAIdentities[i])
		}
		ca.CAAIdentities[i] = id
	}
	return nil
}

// validateCABackoff applies the default of [issuer] ca_backoff.
func (c *Config) validateCABackoff() error {
	is := c.Issuer
	if is.CABackoff.Duration == 0 {
		is.CABackoff.Duration = 5 * time.Minute
	}
	if is.CABackoff.Duration < time.Second {
		return c.fail("issuer.ca_backoff", "%s is too short; expected at least \"1s\" (default \"5m\")", is.CABackoff.Duration)
	}
	return nil
}

// EABHMACEnv is the environment variable that may hold a CA's EAB HMAC
// key when its eab_hmac_file is unset.
func (ca CA) EABHMACEnv() string {
	if ca.Name == DefaultCAName {
		return "DELEGATED_EAB_HMAC"
	}
	return "DELEGATED_EAB_HMAC_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(ca.Name))
}
