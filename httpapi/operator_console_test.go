package httpapi

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/operator"
)

// TestReplyList: an ETag, 304 for the client's current copy, gzip for a
// large list when accepted.
func TestReplyList(t *testing.T) {
	o := NewOperator(OperatorOptions{}, nil)
	big := make([]map[string]string, 2000)
	for i := range big {
		big[i] = map[string]string{"name": fmt.Sprintf("cert-%05d", i), "status": "active"}
	}
	want, _ := json.Marshal(big)
	get := func(hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/v1/certificates", nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		o.replyList(w, r, big, nil)
		return w
	}
	w := get(nil)
	etag := w.Header().Get("ETag")
	if w.Code != http.StatusOK || etag == "" || w.Header().Get("Content-Encoding") != "" || strings.TrimSpace(w.Body.String()) != string(want) {
		t.Fatalf("plain: %d %v", w.Code, w.Header())
	}
	if w := get(map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("current copy: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := get(map[string]string{"If-None-Match": `"other"`}); w.Code != http.StatusOK {
		t.Errorf("stale copy: %d", w.Code)
	}
	w = get(map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	if w.Header().Get("Content-Encoding") != "gzip" || w.Header().Get("ETag") != etag {
		t.Fatalf("gzip: %v", w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if strings.TrimSpace(string(got)) != string(want) {
		t.Error("gzip body differs")
	}
	// A small list is sent as it is.
	r := httptest.NewRequest(http.MethodGet, "/v1/certificates", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	w = httptest.NewRecorder()
	o.replyList(w, r, big[:1], nil)
	if w.Header().Get("Content-Encoding") != "" {
		t.Error("a small list was compressed")
	}
}

func TestHeaderLists(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{`"a"`, true}, {`W/"a"`, true}, {`"b", "a"`, true}, {`*`, true}, {`"b"`, false}, {``, false}, {`a`, false},
	} {
		if got := etagMatches(tc.header, `"a"`); got != tc.want {
			t.Errorf("etagMatches(%q) = %v", tc.header, got)
		}
	}
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"gzip", true}, {"deflate, gzip;q=0.5", true}, {"GZIP", true}, {"gzip;q=0", false}, {"gzip; q=0", false}, {"br", false}, {"", false},
	} {
		if got := acceptsGzip(tc.header); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v", tc.header, got)
		}
	}
}

// eventsIssuer serves one certificate and lets the test publish its events.
type eventsIssuer struct {
	Issuer
	events chan operator.Event
}

func (e eventsIssuer) Certificate(_ context.Context, name string) (operator.Cert, error) {
	if name != "shop" {
		return operator.Cert{}, fmt.Errorf("%w: %s", operator.ErrNotFound, name)
	}
	return operator.Cert{Name: name, Status: operator.StatusProcessing}, nil
}

func (e eventsIssuer) Subscribe(string) (<-chan operator.Event, func()) { return e.events, func() {} }

// TestOperatorEvents: the stream sends the certificate, then each event
// until the final one; an unknown certificate is a 404.
func TestOperatorEvents(t *testing.T) {
	iss := eventsIssuer{events: make(chan operator.Event, 4)}
	srv := httptest.NewServer(NewOperator(OperatorOptions{Token: "t"}, iss).TokenHandler())
	defer srv.Close()
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer t")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := get("/v1/certificates/nothing/events"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown certificate: %d", resp.StatusCode)
	}
	resp := get("/v1/certificates/shop/events")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || !strings.Contains(sc.Text(), `"certificate":{"name":"shop"`) {
		t.Fatalf("first line %q", sc.Text())
	}
	iss.events <- operator.Event{Cert: "shop", Step: operator.StepOrder, OK: true}
	iss.events <- operator.Event{Cert: "shop", Step: operator.StepDone, OK: true, Status: operator.StatusActive}
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end after the final event")
	}
	if len(lines) != 2 || !strings.Contains(lines[0], `"order"`) || !strings.Contains(lines[1], `"done"`) {
		t.Errorf("events %q", lines)
	}
}
