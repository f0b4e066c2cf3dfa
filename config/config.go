// Package config owns config.toml: it loads the file, applies defaults and
// validates everything once at start, so that the rest of the program never
// sees an invalid setting. Every error names the key and what it accepts.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"
)

// Config is the whole of config.toml after defaults and validation.
type Config struct {
	Zone   Zone   `toml:"zone"`
	DNS    DNS    `toml:"dns"`
	API    API    `toml:"api"`
	Store  Store  `toml:"store"`
	Values Values `toml:"values"`
	Log    Log    `toml:"log"`
	// Issuer is the bundled ACME issuer; nil (off) without an [issuer] section.
	Issuer *Issuer `toml:"issuer"`

	// Dir is the folder of the config file; relative paths resolve against it.
	Dir string `toml:"-"`
	// Path is the file the config was read from.
	Path string `toml:"-"`
}

// Zone describes the one zone the DNS server is authoritative for.
type Zone struct {
	// Domain is the zone's name, e.g. "auth.example.org" (stored as FQDN, lower case).
	Domain string `toml:"domain"`
	// NSName is the primary name server, the SOA MNAME and an NS record.
	NSName string `toml:"nsname"`
	// NSAdmin is the SOA RNAME, e.g. "hostmaster.example.org".
	NSAdmin string `toml:"nsadmin"`
	// Records are static records in zone-file syntax, names relative to the zone.
	Records []string `toml:"records"`
	// TXTTTL is the TTL in seconds of challenge TXT answers. Default 1.
	TXTTTL *uint32 `toml:"txt_ttl"`
	// SOAMinimum is the SOA minimum (negative-caching TTL) in seconds. Default 60.
	SOAMinimum *uint32 `toml:"soa_minimum"`
	// SOATTL is the TTL of the SOA record itself in seconds. Default 300.
	SOATTL *uint32 `toml:"soa_ttl"`
	// DefaultTTL is the TTL of the NS record and of static records written
	// without one. Default 3600.
	DefaultTTL *uint32 `toml:"default_ttl"`
	// DNSSEC signs the zone online (ECDSA P-256 key generated on the first
	// start and kept in the store; `delegated dnssec ds` prints the DS for
	// the parent). Default false.
	DNSSEC bool `toml:"dnssec"`

	// ParsedRecords are Records parsed; filled by Load.
	ParsedRecords []dns.RR `toml:"-"`
}

// DNS configures the DNS listeners.
type DNS struct {
	// Listen are host:port addresses, each served over UDP and TCP.
	Listen []string `toml:"listen"`
	// TCPIdleTimeout closes idle TCP connections. Default 10s.
	TCPIdleTimeout Duration `toml:"tcp_idle_timeout"`
	// MaxTCPConnections bounds concurrent TCP connections per listener. Default 1000.
	MaxTCPConnections int `toml:"max_tcp_connections"`
	// RRLRate enables response rate limiting over UDP: at most this many
	// responses per second to one /24 (IPv4) or /56 (IPv6). Default 0: off.
	RRLRate int `toml:"rrl_rate"`
	// RRLSlip: every RRLSlip-th limited response is sent truncated (TC=1) so
	// genuine resolvers retry over TCP; the others are dropped. 0 drops all,
	// 1 truncates all. Default 2, as NSD and Knot.
	RRLSlip *int `toml:"rrl_slip"`
	// Updates is "tsig" (default: RFC 2136 UPDATE signed with an
	// account's TSIG key is accepted) or "off" (UPDATE is REFUSED).
	Updates string `toml:"updates"`
	// TSIGKEKFile is the key-encryption key that seals TSIG secrets in the
	// store (relative to the config folder; created, mode 0600, when
	// missing). Default "tsig.kek". Every instance sharing a database
	// needs the same file.
	TSIGKEKFile string `toml:"tsig_kek_file"`
	// UpdateFailuresPerMinute is how many failed TSIG signatures one
	// source /24 or /56 may send per minute before its updates are
	// refused unchecked. Default 10.
	UpdateFailuresPerMinute int `toml:"update_failures_per_minute"`
}

// API configures the HTTP API.
type API struct {
	// Listen are host:port addresses for plain HTTP.
	Listen []string `toml:"listen"`
	// BcryptCost for new API keys, 10 to 16. Default 10, acme-dns's, so
	// imported and new hashes cost the same to check.
	BcryptCost int `toml:"bcrypt_cost"`

	// Registration is who may POST /register: "open" (default, acme-dns's
	// behaviour), "token" (a pre-shared token is required) or "closed" (only
	// `delegated account add` creates accounts).
	Registration string `toml:"registration"`
	// RegistrationTokenFile holds the token for registration = "token"
	// (relative to the config folder). The environment variable
	// DELEGATED_REGISTRATION_TOKEN is the alternative; cmd reads it at start.
	RegistrationTokenFile string `toml:"registration_token_file"`
	// RegisterRate limits registrations per source address, as "N/unit"
	// with unit s, m, h or d (e.g. "10/h"). Default "" (no limit).
	RegisterRate string `toml:"register_rate"`
	// RegisterRateN per RegisterRatePer is RegisterRate parsed; filled by
	// Load, zero without a limit.
	RegisterRateN   int           `toml:"-"`
	RegisterRatePer time.Duration `toml:"-"`
	// TrustedProxies are CIDRs of reverse proxies whose X-Forwarded-For is
	// believed. Default none: the TCP peer is the client.
	TrustedProxies []string `toml:"trusted_proxies"`
	// TrustedProxyPrefixes are TrustedProxies parsed; filled by Load.
	TrustedProxyPrefixes []netip.Prefix `toml:"-"`
	// TLS is "none" (default, plain HTTP) or "files" (CertFile and KeyFile,
	// reloaded on SIGHUP or when they change).
	TLS string `toml:"tls"`
	// CertFile and KeyFile are PEM files for tls = "files" (relative to the
	// config folder).
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ACMEDomains are the names of the API's own certificate for
	// tls = "acme" (see apiacme.go). Default: the zone's name.
	ACMEDomains []string `toml:"acme_domains"`
	// Metrics serves Prometheus metrics at /metrics. Default true.
	Metrics *bool `toml:"metrics"`
}

// Store selects the database.
type Store struct {
	// Driver is "sqlite3" (default) or "postgres" (several instances
	// sharing one database).
	Driver string `toml:"driver"`
	// DSN is the SQLite file path (relative to the config folder), or for
	// postgres a postgres:// URL or key=value connection string.
	DSN string `toml:"dsn"`
	// Confirm is "" (default: /update returns once this instance serves
	// the value) or "all" (postgres only: once every live instance does,
	// waiting at most a few seconds).
	Confirm string `toml:"confirm"`
}

// Values controls how challenge values are kept.
type Values struct {
	// PerAccount is how many newest values an account keeps. Default 4, at least 2.
	PerAccount int `toml:"per_account"`
	// Lifetime is how long a value is served. Default 24h.
	Lifetime Duration `toml:"lifetime"`
}

// Log configures log/slog output.
type Log struct {
	// Format is "text" (default) or "json".
	Format string `toml:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `toml:"level"`
}

// Duration is a time.Duration written as a Go duration string ("24h", "90s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("expected a duration such as \"24h\" or \"90s\": %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Error is a configuration error: the key and what is wrong with it.
type Error struct {
	File string
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Msg)
}

// Load reads, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(raw, abs)
}

// Parse is Load on bytes; path names the file in errors and anchors
// relative paths.
func Parse(raw []byte, path string) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(raw), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Key: pe.LastKey, Msg: fmt.Sprintf("line %d: %s", pe.Position.Line, pe.Message)}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return nil, &Error{File: path, Key: keys[0], Msg: fmt.Sprintf("unknown key (unknown keys: %s); see README.md for the accepted keys", strings.Join(keys, ", "))}
	}
	c.Path = path
	c.Dir = filepath.Dir(path)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) fail(key, format string, args ...any) error {
	return &Error{File: c.Path, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func u32(p **uint32, def uint32) {
	if *p == nil {
		*p = &def
	}
}

func (c *Config) validate() error {
	z := &c.Zone
	if strings.TrimSpace(z.Domain) == "" {
		return c.fail("zone.domain", "missing; expected the zone's name, e.g. \"auth.example.org\"")
	}
	domain, err := fqdn(z.Domain)
	if err != nil {
		return c.fail("zone.domain", "%q is not a domain name: %v", z.Domain, err)
	}
	if domain == "." {
		return c.fail("zone.domain", "the root zone cannot be served; expected a name such as \"auth.example.org\"")
	}
	z.Domain = domain
	if z.NSName == "" {
		z.NSName = domain
	}
	if z.NSName, err = fqdn(z.NSName); err != nil {
		return c.fail("zone.nsname", "%q is not a domain name: %v", c.Zone.NSName, err)
	}
	if z.NSAdmin == "" {
		z.NSAdmin = "hostmaster." + domain
	}
	if z.NSAdmin, err = fqdn(z.NSAdmin); err != nil {
		return c.fail("zone.nsadmin", "%q is not a domain name (write the mailbox with a dot: \"hostmaster.example.org\"): %v", c.Zone.NSAdmin, err)
	}
	u32(&z.TXTTTL, 1)
	u32(&z.SOAMinimum, 60)
	u32(&z.SOATTL, 300)
	u32(&z.DefaultTTL, 3600)
	z.ParsedRecords = z.ParsedRecords[:0]
	for i, line := range z.Records {
		rr, err := ParseRecord(line, domain, *z.DefaultTTL)
		if err != nil {
			return c.fail(fmt.Sprintf("zone.records[%d]", i), "%v", err)
		}
		if t := rr.Header().Rrtype; z.DNSSEC && (t == dns.TypeDNSKEY || t == dns.TypeRRSIG || t == dns.TypeNSEC ||
			t == dns.TypeNSEC3 || t == dns.TypeNSEC3PARAM || t == dns.TypeCDS || t == dns.TypeCDNSKEY) {
			return c.fail(fmt.Sprintf("zone.records[%d]", i), "%q: with zone.dnssec = true the %s records are made by the signer; remove this line", line, dns.TypeToString[t])
		}
		z.ParsedRecords = append(z.ParsedRecords, rr)
	}

	if len(c.DNS.Listen) == 0 {
		c.DNS.Listen = []string{"127.0.0.1:5053"}
	}
	if err := c.checkListenSet("dns.listen", c.DNS.Listen); err != nil {
		return err
	}
	if c.DNS.TCPIdleTimeout.Duration == 0 {
		c.DNS.TCPIdleTimeout.Duration = 10 * time.Second
	}
	if c.DNS.TCPIdleTimeout.Duration < 0 {
		return c.fail("dns.tcp_idle_timeout", "must be positive")
	}
	if c.DNS.MaxTCPConnections == 0 {
		c.DNS.MaxTCPConnections = 1000
	}
	if c.DNS.MaxTCPConnections < 0 {
		return c.fail("dns.max_tcp_connections", "must be positive")
	}
	if c.DNS.RRLRate < 0 || c.DNS.RRLRate > 1_000_000 {
		return c.fail("dns.rrl_rate", "%d is out of range; expected responses per second per client prefix, 1 to 1000000, or 0 (off)", c.DNS.RRLRate)
	}
	if c.DNS.RRLSlip == nil {
		slip := 2
		c.DNS.RRLSlip = &slip
	}
	if *c.DNS.RRLSlip < 0 || *c.DNS.RRLSlip > 100 {
		return c.fail("dns.rrl_slip", "%d is out of range; expected 0 (drop every limited response) to 100", *c.DNS.RRLSlip)
	}
	switch c.DNS.Updates {
	case "":
		c.DNS.Updates = "tsig"
	case "tsig", "off":
	default:
		return c.fail("dns.updates", "%q is not accepted; expected \"tsig\" (RFC 2136 updates signed with an account's TSIG key) or \"off\"", c.DNS.Updates)
	}
	if c.DNS.TSIGKEKFile == "" {
		c.DNS.TSIGKEKFile = "tsig.kek"
	}
	if !filepath.IsAbs(c.DNS.TSIGKEKFile) {
		c.DNS.TSIGKEKFile = filepath.Join(c.Dir, c.DNS.TSIGKEKFile)
	}
	if c.DNS.UpdateFailuresPerMinute == 0 {
		c.DNS.UpdateFailuresPerMinute = 10
	}
	if c.DNS.UpdateFailuresPerMinute < 0 || c.DNS.UpdateFailuresPerMinute > 1_000_000 {
		return c.fail("dns.update_failures_per_minute", "%d is out of range; expected 1 to 1000000", c.DNS.UpdateFailuresPerMinute)
	}

	if len(c.API.Listen) == 0 {
		c.API.Listen = []string{"127.0.0.1:8053"}
	}
	if err := c.checkListenSet("api.listen", c.API.Listen); err != nil {
		return err
	}
	if c.API.BcryptCost == 0 {
		c.API.BcryptCost = 10
	}
	if c.API.BcryptCost < 10 || c.API.BcryptCost > 16 {
		return c.fail("api.bcrypt_cost", "%d is out of range; expected 10 to 16", c.API.BcryptCost)
	}
	if err := c.validateAPIExtensions(); err != nil {
		return err
	}

	switch c.Store.Driver {
	case "":
		c.Store.Driver = "sqlite3"
	case "sqlite3", "postgres":
	default:
		return c.fail("store.driver", "%q is not supported; expected \"sqlite3\" or \"postgres\"", c.Store.Driver)
	}
	if c.Store.Driver == "postgres" {
		// A connection string, never a path: not resolved against the
		// config folder.
		if c.Store.DSN == "" {
			return c.fail("store.dsn", "is required with driver \"postgres\"; expected e.g. \"postgres://delegated@db.internal/delegated\"")
		}
	} else {
		if c.Store.DSN == "" {
			c.Store.DSN = "delegated.db"
		}
		if !filepath.IsAbs(c.Store.DSN) {
			c.Store.DSN = filepath.Join(c.Dir, c.Store.DSN)
		}
	}
	switch c.Store.Confirm {
	case "":
	case "all":
		if c.Store.Driver != "postgres" {
			return c.fail("store.confirm", "\"all\" needs driver \"postgres\" (a single SQLite instance always confirms)")
		}
	default:
		return c.fail("store.confirm", "%q is not supported; expected \"all\" or nothing", c.Store.Confirm)
	}

	if c.Values.PerAccount == 0 {
		c.Values.PerAccount = 4
	}
	if c.Values.PerAccount < 2 || c.Values.PerAccount > 100 {
		return c.fail("values.per_account", "%d is out of range; expected 2 to 100 (2 lets example.com and *.example.com validate together)", c.Values.PerAccount)
	}
	if c.Values.Lifetime.Duration == 0 {
		c.Values.Lifetime.Duration = 24 * time.Hour
	}
	if c.Values.Lifetime.Duration < time.Minute {
		return c.fail("values.lifetime", "%s is too short; expected at least \"1m\" (a CA may validate minutes after the update)", c.Values.Lifetime.Duration)
	}

	if err := c.validateIssuer(); err != nil {
		return err
	}
	switch c.Log.Format {
	case "":
		c.Log.Format = "text"
	case "text", "json":
	default:
		return c.fail("log.format", "%q is not supported; expected \"text\" or \"json\"", c.Log.Format)
	}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return c.fail("log.level", "%q is not supported; expected one of \"debug\", \"info\", \"warn\", \"error\"", c.Log.Level)
	}
	return nil
}

func fqdn(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return "", errors.New("invalid domain name")
	}
	return dns.Fqdn(name), nil
}

// checkListenSet checks each address of a listen key, and that no two
// collide: "[::]:P" is one dual-stack socket that already takes IPv4, so
// "0.0.0.0:P" beside it (or the same address twice) could not bind.
func (c *Config) checkListenSet(key string, addrs []string) error {
	seen := map[netip.AddrPort]int{}
	for i, a := range addrs {
		k := fmt.Sprintf("%s[%d]", key, i)
		if err := checkListen(a); err != nil {
			return c.fail(k, "%v", err)
		}
		ap := netip.MustParseAddrPort(a)
		slot := ap
		if ap.Addr().IsUnspecified() {
			slot = netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
		}
		if j, dup := seen[slot]; dup {
			return c.fail(k, "%q collides with %s[%d] %q: \"[::]:%d\" alone listens on every IPv4 and IPv6 address; keep one of them", a, key, j, addrs[j], ap.Port())
		}
		seen[slot] = i
	}
	return nil
}

func checkListen(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not an address; expected IP:port such as \"127.0.0.1:5053\" or \"[::1]:5053\"", addr)
	}
	if ap.Port() == 0 {
		return fmt.Errorf("%q has no port; expected IP:port such as \"127.0.0.1:5053\"", addr)
	}
	return nil
}

// ParseRecord parses one zone-file line relative to origin and checks that
// the record belongs to the zone.
func ParseRecord(line, origin string, defaultTTL uint32) (dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(line), origin, "")
	zp.SetDefaultTTL(defaultTTL)
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%q is not a record: %v; expected zone-file syntax such as \"auth.example.org. A 127.0.0.1\"", line, err)
	}
	if !ok || rr == nil {
		return nil, fmt.Errorf("%q is empty; expected zone-file syntax such as \"auth.example.org. A 127.0.0.1\"", line)
	}
	if _, more := zp.Next(); more {
		return nil, fmt.Errorf("%q holds more than one record; write one per line", line)
	}
	if rr.Header().Class != dns.ClassINET {
		return nil, fmt.Errorf("%q is not of class IN", line)
	}
	switch rr.Header().Rrtype {
	case dns.TypeSOA:
		return nil, fmt.Errorf("%q: the SOA is built from zone.nsname, zone.nsadmin and zone.soa_minimum; remove this line", line)
	case dns.TypeCNAME, dns.TypeDNAME:
		if strings.EqualFold(rr.Header().Name, origin) {
			return nil, fmt.Errorf("%q: a %s cannot stand at the zone apex", line, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	if !dns.IsSubDomain(origin, rr.Header().Name) {
		return nil, fmt.Errorf("%q: owner %s is outside the zone %s", line, rr.Header().Name, origin)
	}
	// The DNS server answers names exactly (challenge subdomains are
	// looked up by name); a wildcard would shadow NXDOMAIN for them.
	if strings.HasPrefix(rr.Header().Name, "*.") {
		return nil, fmt.Errorf("%q: wildcard owners are not supported; list each name", line)
	}
	return rr, nil
}

// The words of [api] registration; config is the only place that reads them.
const (
	RegistrationOpen   = "open"
	RegistrationToken  = "token"
	RegistrationClosed = "closed"
)

// validateAPIExtensions checks the [api] keys of delegated's extensions
// (registration control, trusted proxies, TLS, metrics).
func (c *Config) validateAPIExtensions() error {
	a := &c.API
	switch a.Registration {
	case "":
		a.Registration = RegistrationOpen
	case RegistrationOpen, RegistrationToken, RegistrationClosed:
	default:
		return c.fail("api.registration", "%q is not supported; expected one of %q, %q, %q", a.Registration, RegistrationOpen, RegistrationToken, RegistrationClosed)
	}
	if a.RegistrationTokenFile != "" && !filepath.IsAbs(a.RegistrationTokenFile) {
		a.RegistrationTokenFile = filepath.Join(c.Dir, a.RegistrationTokenFile)
	}
	if a.RegisterRate != "" {
		var err error
		if a.RegisterRateN, a.RegisterRatePer, err = ParseRate(a.RegisterRate); err != nil {
			return c.fail("api.register_rate", "%v", err)
		}
	}
	a.TrustedProxyPrefixes = a.TrustedProxyPrefixes[:0]
	for i, s := range a.TrustedProxies {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			// A bare address means just that host.
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return c.fail(fmt.Sprintf("api.trusted_proxies[%d]", i), "%q is not a CIDR; expected e.g. \"10.0.0.0/8\" or \"::1/128\"", s)
			}
			addr = addr.Unmap()
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		a.TrustedProxyPrefixes = append(a.TrustedProxyPrefixes, p.Masked())
	}
	if a.TLS != "acme" && len(a.ACMEDomains) > 0 {
		return c.fail("api.acme_domains", "set but api.tls is %q; acme_domains names the certificate of api.tls = \"acme\"", a.TLS)
	}
	switch a.TLS {
	case "":
		a.TLS = "none"
	case "none":
	case "files":
		if a.CertFile == "" {
			return c.fail("api.cert_file", "missing; expected a PEM certificate file when api.tls = \"files\"")
		}
		if a.KeyFile == "" {
			return c.fail("api.key_file", "missing; expected a PEM private key file when api.tls = \"files\"")
		}
	case "acme":
		if err := c.validateAPIACME(); err != nil {
			return err
		}
	default:
		return c.fail("api.tls", "%q is not supported; expected \"none\", \"files\" or \"acme\"", a.TLS)
	}
	if a.CertFile != "" && !filepath.IsAbs(a.CertFile) {
		a.CertFile = filepath.Join(c.Dir, a.CertFile)
	}
	if a.KeyFile != "" && !filepath.IsAbs(a.KeyFile) {
		a.KeyFile = filepath.Join(c.Dir, a.KeyFile)
	}
	if a.Metrics == nil {
		on := true
		a.Metrics = &on
	}
	return nil
}

// ParseRate parses a rate "N/unit" — unit s, m, h or d, or a Go duration
// such as "10m" — into N events per period.
func ParseRate(s string) (n int, per time.Duration, err error) {
	bad := fmt.Errorf("%q is not a rate; expected \"N/unit\" such as \"10/h\" (unit s, m, h, d or a duration such as \"10m\")", s)
	count, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, bad
	}
	n, err = strconv.Atoi(count)
	if err != nil || n <= 0 {
		return 0, 0, bad
	}
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	case "d":
		per = 24 * time.Hour
	default:
		d, derr := time.ParseDuration(unit)
		if derr != nil || d <= 0 {
			return 0, 0, bad
		}
		per = d
	}
	return n, per, nil
}
