package harness

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"time"
)

// loopbackTransport returns an HTTP transport that never uses a proxy from
// the environment (everything the harness talks to is on loopback) and, when
// roots is non-nil, trusts only roots for HTTPS.
func loopbackTransport(roots *x509.CertPool) *http.Transport {
	tr := &http.Transport{
		Proxy:               nil,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	if roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return tr
}
