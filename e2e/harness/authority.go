package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Zone is one zone served by an authoritative server (NSD or Knot).
type Zone struct {
	// Name is the zone's origin, e.g. "example.test".
	Name string
	// Content is the zone file text. Relative names are relative to Name;
	// it must contain the SOA, whose serial marks readiness and reloads.
	Content string
	// KnotExtra lines are appended to the zone's entry in knot.conf
	// verbatim, e.g. "module: mod-onlinesign"; NSD ignores them.
	KnotExtra []string
}

// authority is what NSD and Knot share: zone files in a directory, a DNS
// address, and a reload that waits until the new serial is served.
type authority struct {
	addr    string
	dir     string
	zones   []Zone // names made fully qualified; index 0 is the default zone
	timeout time.Duration
	// reloadZone tells the daemon to re-read one zone file.
	reloadZone func(zone string) error

	mu sync.Mutex // serialises reloads so file writes and serial waits pair up
}

// zoneFile returns the path of zone's file.
func (a *authority) zoneFile(zone string) string {
	return filepath.Join(a.dir, strings.TrimSuffix(dns.Fqdn(zone), ".")+".zone")
}

// prepareZones validates zones (each parses and has an SOA) and writes their
// files, so a typo fails here with the parser's message rather than as a
// daemon that never becomes ready.
func prepareZones(dir string, zones []Zone) ([]Zone, error) {
	if len(zones) == 0 {
		return nil, fmt.Errorf("no zones")
	}
	a := &authority{dir: dir}
	out := make([]Zone, 0, len(zones))
	for _, z := range zones {
		z.Name = dns.Fqdn(z.Name)
		if _, err := ZoneSerial(z.Name, z.Content); err != nil {
			return nil, err
		}
		if err := writeFile(a.zoneFile(z.Name), z.Content, 0o644); err != nil {
			return nil, err
		}
		out = append(out, z)
	}
	return out, nil
}

// waitZones waits until every zone is served with its file's serial.
func (a *authority) waitZones() error {
	for _, z := range a.zones {
		want, err := ZoneSerial(z.Name, z.Content)
		if err != nil {
			return err
		}
		got, err := soaSerial(a.addr, z.Name, probeTimeout)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("zone %s: serial %d served, want %d", z.Name, got, want)
		}
	}
	return nil
}

// reload rewrites zone's file and waits until its new serial is served.
// The serial must change: both daemons skip a reload whose serial did not.
func (a *authority) reload(zone, content string) error {
	zone = dns.Fqdn(zone)
	a.mu.Lock()
	defer a.mu.Unlock()
	idx := -1
	for i, z := range a.zones {
		if z.Name == zone {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("reload %s: zone not served here", zone)
	}
	want, err := ZoneSerial(zone, content)
	if err != nil {
		return fmt.Errorf("reload %s: %w", zone, err)
	}
	if cur, _ := ZoneSerial(zone, a.zones[idx].Content); cur == want {
		return fmt.Errorf("reload %s: serial %d unchanged; the new content needs a new serial", zone, want)
	}
	// Write to a temp file and rename so the daemon never reads half a file.
	path := a.zoneFile(zone)
	tmp := path + ".tmp"
	if err := writeFile(tmp, content, 0o644); err != nil {
		return fmt.Errorf("reload %s: %w", zone, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("reload %s: %w", zone, err)
	}
	a.zones[idx].Content = content
	if err := a.reloadZone(zone); err != nil {
		return fmt.Errorf("reload %s: %w", zone, err)
	}
	if err := waitSerial(a.addr, zone, want, a.timeout); err != nil {
		return fmt.Errorf("reload %s: %w", zone, err)
	}
	return nil
}

// defaultZone returns the first zone's name, which Reload acts on.
func (a *authority) defaultZone() string { return a.zones[0].Name }
