package httpapi

import (
	"bytes"
	"net"
	"strconv"
)

// net/http answers a request it cannot parse itself, before any handler
// runs, with a text/plain body written straight to the connection: 431
// for headers over MaxHeaderBytes, 400 for a malformed request line,
// header or Host, 501 for an unknown Transfer-Encoding, 505 for an
// unsupported HTTP version. No http.Server option changes that text. The
// README promises JSON error bodies, and clients such as the certbot hook
// call .json() on every failure, so on plain-HTTP listeners the connection
// is wrapped and exactly those replies are rewritten as they are written.
//
// They are recognisable without guessing: net/http writes each in one
// Write of "HTTP/1.1 <status>" followed by exactly serverErrorHeaders,
// with no Date header, which every reply a handler produces carries.
//
// Not covered, as Go offers no hook: TLS listeners (the wrapper would sit
// under the encryption, and putting it above means giving up the
// *tls.Conn net/http needs for HTTP/2 and Request.TLS), a request whose
// "Expect" header is not 100-continue (417 with an empty body), and a
// client that sends nothing within the timeouts (closed without a reply).
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// jsonErrorListener wraps every accepted connection in a jsonErrorConn.
type jsonErrorListener struct {
	net.Listener
}

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

// jsonErrorConn rewrites net/http's own error replies as JSON.
type jsonErrorConn struct {
	net.Conn
}

func (c *jsonErrorConn) Write(b []byte) (int, error) {
	if rewritten, ok := jsonServerError(b); ok {
		if _, err := c.Conn.Write(rewritten); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// CloseWrite keeps net/http's half-close after a 431 (it looks for the
// method on the connection).
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// jsonServerError returns b, one of net/http's own text/plain error
// replies, as the same status with a JSON body; ok is false for anything
// else.
func jsonServerError(b []byte) (out []byte, ok bool) {
	const proto = "HTTP/1.1 "
	if !bytes.HasPrefix(b, []byte(proto)) {
		return nil, false
	}
	end := bytes.Index(b, []byte("\r\n"))
	if end < 0 || !bytes.HasPrefix(b[end:], []byte(serverErrorHeaders)) {
		return nil, false
	}
	statusLine := b[:end]
	if len(statusLine) < len(proto)+3 {
		return nil, false
	}
	code, err := strconv.Atoi(string(statusLine[len(proto) : len(proto)+3]))
	if err != nil || code < 400 || code > 599 {
		return nil, false
	}
	body := `{"error": ` + strconv.Quote(serverErrorCode(code)) + `}`
	var buf bytes.Buffer
	buf.Write(statusLine)
	buf.WriteString("\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n")
	buf.WriteString(body)
	return buf.Bytes(), true
}

// serverErrorCode names the error codes of net/http's replies the way our
// own codes are named.
func serverErrorCode(status int) string {
	switch status {
	case 400:
		return "bad_request"
	case 431:
		return "request_header_fields_too_large"
	case 501:
		return "unsupported_transfer_encoding"
	case 505:
		return "http_version_not_supported"
	}
	return "http_" + strconv.Itoa(status)
}
