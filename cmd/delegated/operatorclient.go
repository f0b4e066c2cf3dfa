package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/delegated/delegated/issuer"
)

// operatorClient talks to the running daemon's operator API, over its unix
// socket or, with --url, over HTTP with a bearer token.
type operatorClient struct {
	base  string
	token string
	http  *http.Client
}

// operatorFlags are the flags every operator verb shares.
type operatorFlags struct {
	config, socket, url, tokenFile *string
}

func addOperatorFlags(fs *flag.FlagSet) operatorFlags {
	return operatorFlags{
		config:    fs.String("config", "config.toml", "configuration `file` (locates the operator socket)"),
		socket:    fs.String("socket", "", "operator API unix socket `path` (default from the config's [issuer])"),
		url:       fs.String("url", "", "operator API base `URL` over HTTP instead of the socket (token from --token-file or "+envOperatorToken+")"),
		tokenFile: fs.String("token-file", "", "`file` holding the operator token for --url"),
	}
}

func (f operatorFlags) client() (*operatorClient, error) {
	if *f.url != "" {
		token, err := secret(*f.tokenFile, envOperatorToken, "--token-file")
		if err != nil {
			return nil, err
		}
		if token == "" {
			return nil, usageError("--url needs a token: --token-file FILE or %s", envOperatorToken)
		}
		return &operatorClient{base: strings.TrimSuffix(*f.url, "/"), token: token, http: &http.Client{}}, nil
	}
	sock := *f.socket
	if sock == "" {
		cfg, err := loadConfig(*f.config)
		if err != nil {
			return nil, err
		}
		if cfg.Issuer == nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("%s has no [issuer] section: the issuer is off", cfg.Path)}
		}
		sock = cfg.Issuer.OperatorSocket
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &operatorClient{base: "http://delegated", http: &http.Client{Transport: tr}}, nil
}

// errorBody is the operator API's error reply.
type errorBody struct {
	Error string `json:"error"`
}

// do sends a request and returns the response when it is 200; any other
// status becomes an error carrying the server's message.
func (c *operatorClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("cannot reach the daemon's operator API (is `delegated serve` running with [issuer], and may you open its socket?): %w", err)
		}
		return nil, fmt.Errorf("operator API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var eb errorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("operator API: %s: %s", resp.Status, eb.Error)
	}
	return resp, nil
}

// call is do with the JSON reply decoded into out.
func (c *operatorClient) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("operator API: decode reply: %w", err)
	}
	return nil
}

// indented copies the JSON reply to GET path to w, indented.
func (c *operatorClient) indented(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("operator API: read reply: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return fmt.Errorf("operator API: malformed reply: %w", err)
	}
	_, err = out.WriteTo(w)
	return err
}

// streamLine is one NDJSON line of a waiting issue or retry.
type streamLine struct {
	Certificate *issuer.Cert  `json:"certificate"`
	Event       *issuer.Event `json:"event"`
}

// stream reads a waiting request's lines, calling onCert for the first and
// onEvent for each event; it returns the final event (nil when the daemon
// started no attempt).
func (c *operatorClient) stream(ctx context.Context, path string, body any, onCert func(issuer.Cert), onEvent func(issuer.Event)) (*issuer.Event, error) {
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var last *issuer.Event
	for sc.Scan() {
		var l streamLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("operator API: bad progress line: %w", err)
		}
		if l.Certificate != nil {
			onCert(*l.Certificate)
		}
		if l.Event != nil {
			onEvent(*l.Event)
			if l.Event.Step == issuer.StepDone {
				last = l.Event
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("operator API: progress stream: %w", err)
	}
	return last, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
