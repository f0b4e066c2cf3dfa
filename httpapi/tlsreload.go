package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the API's certificate from files and replaces it,
// without a restart, when asked (SIGHUP, handed in by cmd) or when either
// file's modification time or size changes. A pair that fails to load (for
// example the certificate rewritten but not yet the key) keeps the previous
// certificate in service and is retried at the next check.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	// placeholder is true while a self-signed stand-in is served because
	// the files do not exist yet (see newCertReloader).
	placeholder bool

	mu      sync.RWMutex
	cert    *tls.Certificate
	certSig fileSig
	keySig  fileSig
}

type fileSig struct {
	mod  time.Time
	size int64
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	return fileSig{mod: fi.ModTime(), size: fi.Size()}, nil
}

// newCertReloader loads the pair. With placeholderNames, missing files are
// not an error: a self-signed certificate for those names is served until
// the files appear (picked up by the next check or reload signal).
func newCertReloader(certFile, keyFile string, placeholderNames []string, log *slog.Logger) (*certReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("httpapi: TLS needs both a certificate file and a key file")
	}
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	_, err := c.reload(true)
	if err != nil && len(placeholderNames) > 0 && errors.Is(err, fs.ErrNotExist) {
		if c.cert, err = placeholderCert(placeholderNames); err != nil {
			return nil, err
		}
		c.placeholder = true
		log.Warn("TLS certificate not issued yet; serving a self-signed placeholder until it is deployed", "cert_file", certFile, "names", placeholderNames)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// reload loads the pair if it changed (or force) and reports whether it
// replaced the certificate.
func (c *certReloader) reload(force bool) (bool, error) {
	certSig, err := statSig(c.certFile)
	if err != nil {
		return false, fmt.Errorf("httpapi: TLS certificate: %w", err)
	}
	keySig, err := statSig(c.keyFile)
	if err != nil {
		return false, fmt.Errorf("httpapi: TLS key: %w", err)
	}
	c.mu.RLock()
	unchanged := c.cert != nil && certSig == c.certSig && keySig == c.keySig
	c.mu.RUnlock()
	if unchanged && !force {
		return false, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return false, fmt.Errorf("httpapi: load TLS key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.mu.Lock()
	c.cert, c.certSig, c.keySig = &cert, certSig, keySig
	c.placeholder = false
	c.mu.Unlock()
	return true, nil
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

func (c *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate}
}

// run checks the files every interval and reloads on every receive from
// signal, until ctx ends.
func (c *certReloader) run(ctx context.Context, interval time.Duration, signal <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-signal:
			force = true
		}
		changed, err := c.reload(force)
		c.mu.RLock()
		waiting := c.placeholder
		c.mu.RUnlock()
		switch {
		case err != nil && waiting && errors.Is(err, fs.ErrNotExist):
			// Still waiting for the first issuance: said once at start.
		case err != nil:
			c.log.Error("TLS certificate reload failed; the previous certificate stays in service", "err", err)
		case changed:
			c.log.Info("TLS certificate reloaded", "cert_file", c.certFile, "forced", force)
		}
	}
}
