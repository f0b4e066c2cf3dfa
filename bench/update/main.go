// Command update measures the /update rate of a running delegated (or any
// acme-dns-compatible server): it registers one account, then sends
// -n updates from -c concurrent clients and prints requests per second.
// Warm updates reuse one credential, so after the first bcrypt check the
// server answers from its credential cache.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	api := flag.String("api", "http://127.0.0.1:8053", "API base URL (loopback only)")
	n := flag.Int("n", 5000, "number of updates")
	c := flag.Int("c", 8, "concurrent clients")
	flag.Parse()
	if err := run(*api, *n, *c); err != nil {
		fmt.Fprintln(os.Stderr, "update bench:", err)
		os.Exit(1)
	}
}

func run(api string, n, c int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	resp, err := client.Post(api+"/register", "application/json", nil)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	var reg struct{ Username, Password, Subdomain string }
	err = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("register: status %d: %v", resp.StatusCode, err)
	}
	jobs := make(chan int)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies []time.Duration
		failures  int
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				var raw [32]byte
				rand.Read(raw[:])
				body := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, reg.Subdomain, base64.RawURLEncoding.EncodeToString(raw[:]))
				req, _ := http.NewRequestWithContext(ctx, "POST", api+"/update", bytes.NewBufferString(body))
				req.Header.Set("X-Api-User", reg.Username)
				req.Header.Set("X-Api-Key", reg.Password)
				t0 := time.Now()
				resp, err := client.Do(req)
				d := time.Since(t0)
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				latencies = append(latencies, d)
				if !ok {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	fmt.Printf("updates=%d concurrency=%d failures=%d seconds=%.2f rate=%.0f/s p50=%v p99=%v\n",
		n, c, failures, elapsed.Seconds(), float64(n)/elapsed.Seconds(), pct(0.5), pct(0.99))
	if failures > 0 {
		return fmt.Errorf("%d updates failed", failures)
	}
	return nil
}
