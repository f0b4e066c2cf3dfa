package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Issuer configures the bundled ACME issuer. It is off unless the [issuer]
// section is present.
type Issuer struct {
	// Email is the ACME account contact.
	Email string `toml:"email"`
	// Directory is the CA's ACME directory URL (https). Required.
	Directory string `toml:"directory"`
	// CARoots are PEM files of roots trusted for the CA's HTTPS, for a
	// private CA; empty means the system's roots.
	CARoots []string `toml:"ca_roots"`
	// KeyType of certificate keys: "EC256" (default), "EC384", "RSA2048",
	// "RSA3072", "RSA4096".
	KeyType string `toml:"key_type"`
	// EABKID is the External Account Binding key id; the HMAC key comes
	// from EABHMACFile or the environment variable DELEGATED_EAB_HMAC.
	EABKID      string `toml:"eab_kid"`
	EABHMACFile string `toml:"eab_hmac_file"`
	// PreferredChain is the issuer common name of the preferred chain's top.
	PreferredChain string `toml:"preferred_chain"`
	// Challenge is the validation method of certificates that name none:
	// "dns-01" (default), "dns-account-01" or "dns-persist-01".
	Challenge string `toml:"challenge"`
	// Profile is the ACME profile of certificates that name none (e.g.
	// Let's Encrypt's "classic", "tlsserver", "shortlived"); empty lets
	// the CA choose. Checked against the CA's directory when used. A
	// single-CA key: with [[issuer.ca]] tables each CA names its own.
	Profile string `toml:"profile"`
	// Resolvers (host:port) for the delegation check; default the
	// nameservers of /etc/resolv.conf.
	Resolvers []string `toml:"resolvers"`
	// CheckAuthoritative also asks the customer zone's own name servers
	// (found through the resolvers) for each CNAME. Default true.
	CheckAuthoritative *bool `toml:"check_authoritative"`
	// AuthoritativePort is those servers' port. Default 53; other values
	// are for test setups.
	AuthoritativePort int `toml:"authoritative_port"`
	// DeployDir holds live/<name>/*.pem. Default "certs" (config folder).
	DeployDir string `toml:"deploy_dir"`
	// DeployHook is a shell command run after each issuance.
	DeployHook string `toml:"deploy_hook"`
	// DelegationRecheck is how often pending delegations are re-checked.
	// Default 5m.
	DelegationRecheck Duration `toml:"delegation_recheck"`
	// RetryInterval spaces failed attempts (doubling); default 15m.
	RetryInterval Duration `toml:"retry_interval"`
	// RetryAttempts before status failed; default 5.
	RetryAttempts int `toml:"retry_attempts"`
	// RenewBefore, when set, renews at the latest this long before expiry
	// (a floor under ARI's window and the one-third-of-lifetime rule).
	RenewBefore Duration `toml:"renew_before"`
	// MaxConcurrentChecks bounds concurrent delegation checks; default 32.
	MaxConcurrentChecks int `toml:"max_concurrent_checks"`
	// MaxConcurrentOrders bounds concurrent ACME orders; default 8.
	MaxConcurrentOrders int `toml:"max_concurrent_orders"`
	// OrdersPerHour paces new attempts at the CA; default 90, below Let's
	// Encrypt's 300 new orders per account per 3 hours.
	OrdersPerHour int `toml:"orders_per_hour"`
	// OperatorSocket is the operator API's unix socket. Default
	// "delegated.sock" next to the SQLite file.
	OperatorSocket string `toml:"operator_socket"`
	// CAs are the [[issuer.ca]] tables in order of preference; after
	// validation they also hold the single-CA form as one element.
	CAs []CA `toml:"ca"`
	// CABackoff is how long a CA that could not be reached (or failed on
	// its side) is skipped, doubling while it keeps failing, up to an
	// hour; a rate limit's Retry-After overrides it. Default 5m.
	CABackoff Duration `toml:"ca_backoff"`
	// OperatorTokenFile holds a bearer token that opens the operator API
	// on the HTTP listener too (or the environment variable
	// DELEGATED_OPERATOR_TOKEN). Without one it is served on the socket only.
	OperatorTokenFile string `toml:"operator_token_file"`
}

func (c *Config) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// validateIssuer checks [issuer] when present.
func (c *Config) validateIssuer() error {
	is := c.Issuer
	if is == nil {
		return nil
	}
	if err := c.validateCAs(); err != nil {
		return err
	}
	if err := c.validateCABackoff(); err != nil {
		return err
	}
	if err := c.validateChallengeProfile(is); err != nil {
		return err
	}
	for i, r := range is.Resolvers {
		if _, err := netip.ParseAddrPort(r); err != nil {
			// Not host names: the delegation check would depend on the
			// system resolver to find its own resolvers.
			return c.fail(fmt.Sprintf("issuer.resolvers[%d]", i), "%q is not an address; expected IP:port such as \"127.0.0.1:53\" or \"[2001:db8::53]:53\" (host names are not accepted)", r)
		}
	}
	if is.CheckAuthoritative == nil {
		on := true
		is.CheckAuthoritative = &on
	}
	if is.AuthoritativePort == 0 {
		is.AuthoritativePort = 53
	}
	if is.AuthoritativePort < 1 || is.AuthoritativePort > 65535 {
		return c.fail("issuer.authoritative_port", "%d is not a port; expected 1 to 65535 (default 53)", is.AuthoritativePort)
	}
	if is.DeployDir == "" {
		is.DeployDir = "certs"
	}
	is.DeployDir = c.abs(is.DeployDir)
	if is.DelegationRecheck.Duration == 0 {
		is.DelegationRecheck.Duration = 5 * time.Minute
	}
	if is.DelegationRecheck.Duration < time.Second {
		return c.fail("issuer.delegation_recheck", "%s is too short; expected at least \"1s\"", is.DelegationRecheck.Duration)
	}
	if is.RetryInterval.Duration == 0 {
		is.RetryInterval.Duration = 15 * time.Minute
	}
	if is.RetryInterval.Duration < time.Second {
		return c.fail("issuer.retry_interval", "%s is too short; expected at least \"1s\"", is.RetryInterval.Duration)
	}
	if is.RetryAttempts == 0 {
		is.RetryAttempts = 5
	}
	if is.RetryAttempts < 1 || is.RetryAttempts > 100 {
		return c.fail("issuer.retry_attempts", "%d is out of range; expected 1 to 100", is.RetryAttempts)
	}
	if is.RenewBefore.Duration < 0 {
		return c.fail("issuer.renew_before", "must not be negative; expected a duration such as \"720h\"")
	}
	for _, k := range []struct {
		key      string
		v        *int
		def, max int
	}{
		{"issuer.max_concurrent_checks", &is.MaxConcurrentChecks, 32, 1024},
		{"issuer.max_concurrent_orders", &is.MaxConcurrentOrders, 8, 256},
		{"issuer.orders_per_hour", &is.OrdersPerHour, 90, 1000000},
	} {
		if *k.v == 0 {
			*k.v = k.def
		}
		if *k.v < 1 || *k.v > k.max {
			return c.fail(k.key, "%d is out of range; expected 1 to %d (default %d)", *k.v, k.max, k.def)
		}
	}
	if is.OperatorSocket == "" {
		dir := c.Dir
		if c.Store.Driver == "sqlite3" && c.Store.DSN != "" {
			dir = filepath.Dir(c.Store.DSN)
		}
		is.OperatorSocket = filepath.Join(dir, "delegated.sock")
	}
	is.OperatorSocket = c.abs(is.OperatorSocket)
	is.OperatorTokenFile = c.abs(is.OperatorTokenFile)
	return nil
}

// validateChallengeProfile normalises issuer.challenge (default dns-01) and
// checks issuer.profile's syntax; whether the CA offers the profile is
// known only once its directory is read.
func (c *Config) validateChallengeProfile(is *Issuer) error {
	switch m := strings.ToLower(strings.TrimSpace(is.Challenge)); m {
	case "":
		is.Challenge = "dns-01"
	case "dns-01", "dns-account-01", "dns-persist-01":
		is.Challenge = m
	default:
		return c.fail("issuer.challenge", "%q is not supported; expected one of \"dns-01\", \"dns-account-01\", \"dns-persist-01\"", is.Challenge)
	}
	is.Profile = strings.TrimSpace(is.Profile)
	for _, r := range is.Profile {
		if r <= ' ' || r > '~' {
			return c.fail("issuer.profile", "%q is not a profile name; expected a name the CA lists, such as \"classic\" or \"shortlived\"", is.Profile)
		}
	}
	return nil
}
