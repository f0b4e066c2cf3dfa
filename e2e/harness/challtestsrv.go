package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ChallTestSrvOptions configures pebble-challtestsrv. Zero values pick free
// ports.
type ChallTestSrvOptions struct {
	// DNSPort serves DNS on 127.0.0.1 over UDP and TCP; 0 picks one.
	DNSPort int
	// ManagementPort serves the HTTP management API; 0 picks one.
	ManagementPort int
	// DefaultIPv4 answers A queries for names without an explicit record;
	// "" keeps challtestsrv's default, 127.0.0.1.
	DefaultIPv4 string
	// StartTimeout defaults to DefaultStartTimeout.
	StartTimeout time.Duration
}

// ChallTestSrv is a running pebble-challtestsrv used as a mock customer zone:
// it answers any name (without the AA bit), with records set through its
// management API. Only its DNS server is enabled.
type ChallTestSrv struct {
	// DNSAddr is "127.0.0.1:port" (UDP and TCP).
	DNSAddr string
	// ManagementURL is "http://127.0.0.1:port", without a trailing slash.
	ManagementURL string
	Proc          *Process

	client *http.Client
}

// StartChallTestSrv starts pebble-challtestsrv with default options.
func StartChallTestSrv(t testing.TB) *ChallTestSrv {
	t.Helper()
	return StartChallTestSrvWith(t, ChallTestSrvOptions{})
}

// StartChallTestSrvWith starts pebble-challtestsrv and waits until its
// management API answers.
func StartChallTestSrvWith(t testing.TB, opts ChallTestSrvOptions) *ChallTestSrv {
	t.Helper()
	bin := RequireTool(t, "pebble-challtestsrv", HintChallTestSrv)
	dir := t.TempDir()
	client := &http.Client{Timeout: 5 * time.Second, Transport: loopbackTransport(nil)}
	retry := opts.DNSPort == 0 || opts.ManagementPort == 0

	c, err := startWithRetry(retry, func() (*ChallTestSrv, error) {
		dnsPort, err := pickPort(opts.DNSPort)
		if err != nil {
			return nil, err
		}
		mgmtPort, err := pickPort(opts.ManagementPort)
		if err != nil {
			return nil, err
		}
		args := []string{
			"-dnsserver", HostPort(dnsPort),
			"-management", HostPort(mgmtPort),
			// Only DNS: the other challenge servers would bind fixed
			// ports on all interfaces.
			"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
			"-defaultIPv6", "",
		}
		if opts.DefaultIPv4 != "" {
			args = append(args, "-defaultIPv4", opts.DefaultIPv4)
		}
		p, err := startProcess(ProcessOptions{Name: "pebble-challtestsrv", Path: bin, Args: args, Dir: dir, GoStacks: true})
		if err != nil {
			return nil, err
		}
		c := &ChallTestSrv{
			DNSAddr:       HostPort(dnsPort),
			ManagementURL: "http://" + HostPort(mgmtPort),
			Proc:          p,
			client:        client,
		}
		// Ready when both servers answer: management first (it is what
		// tests call), then DNS, which binds in its own goroutine.
		err = p.WaitReady(opts.StartTimeout, func() error {
			if err := c.post("/clear-txt", map[string]string{"host": "harness-ready.invalid."}); err != nil {
				return err
			}
			_, err := exchange(c.DNSAddr, "harness-ready.invalid.", dns.TypeA, dns.ClassINET, probeTimeout)
			return err
		})
		if err != nil {
			_ = p.Stop()
			return nil, err
		}
		return c, nil
	})
	if err != nil {
		t.Fatalf("harness: start pebble-challtestsrv: %v", err)
	}
	c.Proc.registerCleanup(t)
	return c
}

// SetCNAME makes host (made fully qualified) a CNAME to target, replacing any
// earlier CNAME for host.
func (c *ChallTestSrv) SetCNAME(host, target string) error {
	return c.post("/set-cname", map[string]string{"host": dns.Fqdn(host), "target": dns.Fqdn(target)})
}

// ClearCNAME removes host's CNAME.
func (c *ChallTestSrv) ClearCNAME(host string) error {
	return c.post("/clear-cname", map[string]string{"host": dns.Fqdn(host)})
}

// SetTXT adds value to host's TXT records (challtestsrv appends; use
// ClearTXT to start over).
func (c *ChallTestSrv) SetTXT(host, value string) error {
	return c.post("/set-txt", map[string]string{"host": dns.Fqdn(host), "value": value})
}

// ClearTXT removes all of host's TXT records.
func (c *ChallTestSrv) ClearTXT(host string) error {
	return c.post("/clear-txt", map[string]string{"host": dns.Fqdn(host)})
}

// AddA sets host's A records.
func (c *ChallTestSrv) AddA(host string, addrs ...string) error {
	return c.post("/add-a", map[string]any{"host": dns.Fqdn(host), "addresses": addrs})
}

// SetServFail makes every query for host fail with SERVFAIL.
func (c *ChallTestSrv) SetServFail(host string) error {
	return c.post("/set-servfail", map[string]string{"host": dns.Fqdn(host)})
}

// ClearServFail undoes SetServFail.
func (c *ChallTestSrv) ClearServFail(host string) error {
	return c.post("/clear-servfail", map[string]string{"host": dns.Fqdn(host)})
}

// post sends a JSON body to a management endpoint and expects 200.
func (c *ChallTestSrv) post(path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("challtestsrv %s: encode: %w", path, err)
	}
	resp, err := c.client.Post(c.ManagementURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("challtestsrv %s: %w", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("challtestsrv %s %s: status %s: %s", path, b, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
