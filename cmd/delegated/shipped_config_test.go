package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/config"
)

// TestShippedConfigsServe starts the daemon on each config the repository
// ships for deployment, with only the ports (free ones, the same for every
// address of a listener, as shipped) and the state folder moved, and runs
// `delegated health`'s checks against it: every listen address binds
// beside the others, and the health check reaches a daemon listening on
// all addresses.
func TestShippedConfigsServe(t *testing.T) {
	for _, path := range []string{"../../deploy/docker/config.toml", "../../deploy/systemd/config.toml"} {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(raw, "/etc/delegated/config.toml")
			if err != nil {
				t.Fatal(err)
			}
			movePorts(t, cfg.DNS.Listen)
			movePorts(t, cfg.API.Listen)
			cfg.Store.DSN = filepath.Join(t.TempDir(), filepath.Base(cfg.Store.DSN))
			startServeConfig(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out bytes.Buffer
			if err := checkAPIHealth(ctx, cfg, "", &out); err != nil {
				t.Fatal(err)
			}
			if err := checkDNSHealth(ctx, cfg, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "200 OK") {
				t.Fatalf("health: %s", out.String())
			}
		})
	}
}

// movePorts gives the listen addresses a free port, one port per distinct
// shipped port.
func movePorts(t *testing.T, listen []string) {
	t.Helper()
	moved := map[uint16]uint16{}
	for i, l := range listen {
		ap := netip.MustParseAddrPort(l)
		if _, ok := moved[ap.Port()]; !ok {
			moved[ap.Port()] = uint16(freePort(t))
		}
		listen[i] = netip.AddrPortFrom(ap.Addr(), moved[ap.Port()]).String()
	}
}
