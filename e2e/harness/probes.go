package harness

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/miekg/dns"
)

// Probes for Process.WaitReady, for starting the service under test:
//
//	p := harness.StartProcess(t, harness.ProcessOptions{Path: bin, Args: args})
//	if err := p.WaitReady(0, harness.HTTPReady(apiURL+"/health")); err != nil {
//		t.Fatal(err)
//	}

// HTTPReady returns a probe that succeeds once GET url answers with a status
// below 500 (any answer means the listener is up; the test judges content).
// It uses no proxy and trusts no TLS roots beyond the system's.
func HTTPReady(url string) func() error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: loopbackTransport(nil)}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("get %s: %s", url, resp.Status)
		}
		return nil
	}
}

// DNSReady returns a probe that succeeds once addr answers a query for name
// and qtype with any rcode.
func DNSReady(addr, name string, qtype uint16) func() error {
	return func() error {
		_, err := exchange(addr, name, qtype, dns.ClassINET, probeTimeout)
		return err
	}
}
