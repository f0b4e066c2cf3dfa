package issuer

import (
	"bytes"
	"io"
	"net/http"
	"sync"
)

// maxTapBody bounds a kept body; an ACME authorization is a few KiB.
const maxTapBody = 1 << 20

// bodyTap is the transport of the issuer's ACME client. It keeps the body
// of a successful response to a watched URL. lego v4 decodes ACME objects
// into types that drop the fields it does not know (dns-persist-01's
// issuer-domain-names and accounturi), and its request signing is internal
// to it, so the issuer reads those fields from the very answer lego
// received instead of signing requests of its own.
type bodyTap struct {
	next http.RoundTripper

	mu      sync.Mutex
	watched map[string]int
	bodies  map[string][]byte
}

func newBodyTap(next http.RoundTripper) *bodyTap {
	return &bodyTap{next: next, watched: map[string]int{}, bodies: map[string][]byte{}}
}

// RoundTrip implements http.RoundTripper.
func (t *bodyTap) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	u := req.URL.String()
	t.mu.Lock()
	watched := t.watched[u] > 0
	t.mu.Unlock()
	if !watched {
		return resp, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTapBody+1))
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	if len(b) > maxTapBody {
		// Too large to be an authorization: hand it on whole, unkept.
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
		return resp, nil
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	t.mu.Lock()
	t.bodies[u] = b
	t.mu.Unlock()
	return resp, nil
}

// CloseIdleConnections passes on to the wrapped transport, which
// http.Client.CloseIdleConnections reaches only through this method.
func (t *bodyTap) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// watch keeps the bodies of answers to u until take is called; take
// returns the last one kept (nil when none).
func (t *bodyTap) watch(u string) (take func() []byte) {
	t.mu.Lock()
	t.watched[u]++
	t.mu.Unlock()
	return func() []byte {
		t.mu.Lock()
		defer t.mu.Unlock()
		b := t.bodies[u]
		if t.watched[u]--; t.watched[u] <= 0 {
			delete(t.watched, u)
			delete(t.bodies, u)
		}
		return b
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}
