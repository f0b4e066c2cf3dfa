package httpapi

import (
	"bufio"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestStreamOutlivesServerTimeouts: `delegated issue --url …` streams an
// attempt's progress over the HTTP listener, and the server's 30 s
// WriteTimeout (and ReadTimeout, through the cancelled context) cut it.
// With the timeouts shortened to 300 ms, a stream of 1.5 s must arrive
// whole once it lifts them, and be cut without (the control proves the
// timeouts bite).
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	const lines = 15
	stream := func(lift bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if lift && !beginStream(w) {
				t.Error("beginStream could not lift the deadlines")
			}
			w.Header().Set("Content-Type", "application/x-ndjson")
			for i := range lines {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				fmt.Fprintf(w, "{\"line\":%d}\n", i)
				http.NewResponseController(w).Flush()
			}
			fmt.Fprintln(w, `{"end":true}`)
		})
	}
	for _, tc := range []struct {
		name  string
		lift  bool
		whole bool
	}{
		{"lifted", true, true},
		{"control: not lifted", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHardEnvOpts(t, Options{
				Listen:       []string{"127.0.0.1:0"},
				Operator:     stream(tc.lift),
				ReadTimeout:  300 * time.Millisecond,
				WriteTimeout: 300 * time.Millisecond,
			})
			if err := e.api.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.api.Shutdown(t.Context()) })
			started := time.Now()
			resp, err := http.Get("http://" + e.api.Addrs()[0] + "/v1/stream")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			var got []string
			for sc.Scan() {
				got = append(got, sc.Text())
			}
			whole := len(got) == lines+1 && got[lines] == `{"end":true}`
			if whole != tc.whole {
				t.Errorf("after %v got %d lines (last %q), whole %v; want whole %v", time.Since(started).Round(time.Millisecond), len(got), last(got), whole, tc.whole)
			}
		})
	}
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
