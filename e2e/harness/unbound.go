package harness

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/miekg/dns"
)

// UnboundOptions configures a recursive unbound that knows only its stub
// zones.
type UnboundOptions struct {
	// Stubs maps a zone ("example.test") to the address of its
	// authoritative server ("127.0.0.1:5054" or "[::1]:5054"). Addresses
	// must be loopback. At least one is required.
	Stubs map[string]string
	// Port to listen on, 127.0.0.1 UDP and TCP; 0 picks one.
	Port int
	// ReadyZone is the stub zone whose SOA query through unbound marks
	// readiness (after unbound answers a local version.server query).
	// Default: the first zone, in sorted order, whose authority answers
	// now; none if no authority is up yet, since a query to a dead stub
	// would take seconds and mark the server down in unbound's infra
	// cache. Any reply counts, even SERVFAIL: challtestsrv answers SOA
	// with NOTIMP.
	ReadyZone string
	// ExtraServer lines are appended to the server: clause verbatim, e.g.
	// "cache-max-ttl: 5".
	ExtraServer []string
	// TrustAnchors, when set, make unbound validate (module-config
	// "validator iterator") with these DS or DNSKEY records as trust
	// anchors, e.g. "auth.example.test. IN DS 12345 13 2 ABCD...". A stub
	// zone without an anchor above it is insecure, not bogus.
	TrustAnchors []string
	// Verbosity is unbound's log verbosity; 0 means 1 (errors and
	// operational notes).
	Verbosity int
	// StartTimeout defaults to DefaultStartTimeout.
	StartTimeout time.Duration
}

// Unbound is a running unbound.
type Unbound struct {
	// Addr is "127.0.0.1:port" (UDP and TCP).
	Addr       string
	Dir        string
	ConfigPath string
	Proc       *Process
}

// unboundConf follows e2e-recipe.md; see its Pitfalls section for why each
// non-default setting is needed (cache-max-ttl 0, allow_snoop,
// do-not-query-localhost, local-zone "test." nodefault). Additions:
//   - local-zone "." refuse plus a transparent local-zone per stub, and
//     outgoing-interface on loopback: only the stub zones are ever resolved,
//     so a stray query can never go to the root servers (no network
//     target outside loopback is allowed).
//   - so-reuseport: no, so a port clash fails loudly instead of two
//     instances silently sharing the port.
var unboundConf = template.Must(template.New("unbound.conf").Parse(`server:
    verbosity: {{.Verbosity}}
    interface: 127.0.0.1@{{.Port}}
    interface-automatic: no
    so-reuseport: no
    num-threads: 1
    do-ip4: yes
    do-ip6: {{if .IPv6}}yes{{else}}no{{end}}
    outgoing-interface: 127.0.0.1
{{- if .IPv6}}
    outgoing-interface: ::1
{{- end}}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{{.Dir}}"
    pidfile: "{{.Dir}}/unbound.pid"
    use-syslog: no
    logfile: ""
    access-control: 127.0.0.0/8 allow_snoop
    access-control: ::1/128 allow_snoop
    module-config: "{{if .Anchors}}validator iterator{{else}}iterator{{end}}"
{{- range .Anchors}}
    trust-anchor: "{{.}}"
{{- end}}
    do-not-query-localhost: no
    local-zone: "." refuse
    local-zone: "test." nodefault
{{- range .Stubs}}
    local-zone: "{{.Zone}}" transparent
{{- end}}
    qname-minimisation: no
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
    infra-host-ttl: 2
    infra-keep-probing: yes
{{- range .Extra}}
    {{.}}
{{- end}}
remote-control:
    control-enable: no
{{- range .Stubs}}
stub-zone:
    name: "{{.Zone}}"
    stub-addr: {{.Addr}}
{{- end}}
`))

// unboundStub is one stub zone; Addr is in unbound's "ip@port" form,
// HostPort in Go's.
type unboundStub struct{ Zone, Addr, HostPort string }

// StartUnbound starts unbound with stubs (zone -> authoritative address) and
// default options.
func StartUnbound(t testing.TB, stubs map[string]string) *Unbound {
	t.Helper()
	return StartUnboundWith(t, UnboundOptions{Stubs: stubs})
}

// StartUnboundWith writes unbound.conf, checks it with unbound-checkconf,
// starts unbound and waits until it answers a local query and then, if there
// is a ReadyZone, a SOA query for it.
func StartUnboundWith(t testing.TB, opts UnboundOptions) *Unbound {
	t.Helper()
	bin := RequireTool(t, "unbound", HintUnbound)
	check := RequireTool(t, "unbound-checkconf", HintUnbound)
	stubs, ipv6, err := unboundStubs(opts.Stubs)
	if err != nil {
		t.Fatalf("harness: unbound: %v", err)
	}
	readyZone := ""
	if opts.ReadyZone != "" {
		readyZone = dns.Fqdn(opts.ReadyZone)
	} else {
		for _, s := range stubs {
			if _, err := exchange(s.HostPort, s.Zone, dns.TypeSOA, dns.ClassINET, probeTimeout); err == nil {
				readyZone = s.Zone
				break
			}
		}
	}
	verbosity := opts.Verbosity
	if verbosity == 0 {
		verbosity = 1
	}
	dir := t.TempDir()
	confPath := filepath.Join(dir, "unbound.conf")

	u, err := startWithRetry(opts.Port == 0, func() (*Unbound, error) {
		port, err := pickPort(opts.Port)
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		err = unboundConf.Execute(&b, map[string]any{
			"Verbosity": verbosity, "Port": port, "IPv6": ipv6, "Dir": dir,
			"Stubs": stubs, "Extra": opts.ExtraServer, "Anchors": opts.TrustAnchors,
		})
		if err != nil {
			return nil, fmt.Errorf("render unbound.conf: %w", err)
		}
		if err := writeFile(confPath, b.String(), 0o644); err != nil {
			return nil, err
		}
		if _, err := runTool(10*time.Second, dir, check, confPath); err != nil {
			return nil, fmt.Errorf("unbound.conf rejected: %w\n%s", err, b.String())
		}
		p, err := startProcess(ProcessOptions{Name: "unbound", Path: bin, Args: []string{"-d", "-c", confPath}, Dir: dir})
		if err != nil {
			return nil, err
		}
		u := &Unbound{Addr: HostPort(port), Dir: dir, ConfigPath: confPath, Proc: p}
		err = p.WaitReady(opts.StartTimeout, func() error {
			// Answered by unbound itself: no upstream traffic.
			if _, err := exchange(u.Addr, "version.server.", dns.TypeTXT, dns.ClassCHAOS, probeTimeout); err != nil {
				return err
			}
			if readyZone == "" {
				return nil
			}
			// Through a stub: allow for unbound's own round trip.
			_, err := exchange(u.Addr, readyZone, dns.TypeSOA, dns.ClassINET, time.Second)
			return err
		})
		if err != nil {
			_ = p.Stop()
			return nil, err
		}
		return u, nil
	})
	if err != nil {
		t.Fatalf("harness: start unbound: %v", err)
	}
	u.Proc.registerCleanup(t)
	return u
}

// unboundStubs validates and sorts the stubs (sorted so the config, and the
// default ReadyZone, are deterministic) and reports whether any needs IPv6.
func unboundStubs(in map[string]string) ([]unboundStub, bool, error) {
	if len(in) == 0 {
		return nil, false, fmt.Errorf("no stub zones: unbound would have nothing it may resolve")
	}
	var out []unboundStub
	ipv6 := false
	for zone, addr := range in {
		if err := requireLoopback(addr); err != nil {
			return nil, false, fmt.Errorf("stub %s: %w", zone, err)
		}
		host, port, _ := net.SplitHostPort(addr)
		ip := netip.MustParseAddr(host)
		ipv6 = ipv6 || ip.Is6()
		out = append(out, unboundStub{Zone: dns.Fqdn(zone), Addr: ip.String() + "@" + port, HostPort: addr})
	}
	slices.SortFunc(out, func(a, b unboundStub) int { return strings.Compare(a.Zone, b.Zone) })
	return out, ipv6, nil
}
