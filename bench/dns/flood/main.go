// Command flood registers one account on a running delegated and then sends
// /update calls with a wrong API key as fast as it can for a while: the
// bcrypt-heavy load the DNS answer path must not feel. It prints how many
// calls were made and their statuses.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := fs.String("api", "http://127.0.0.1:8053", "delegated API base URL")
	duration := fs.Duration("duration", 10*time.Second, "how long to flood")
	concurrency := fs.Int("concurrency", 32, "concurrent requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency, MaxConnsPerHost: *concurrency},
	}

	var acct struct{ Username, Subdomain string }
	resp, err := client.Post(*api+"/register", "application/json", nil)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	err = json.NewDecoder(resp.Body).Decode(&acct)
	resp.Body.Close()
	if err != nil || acct.Username == "" {
		return fmt.Errorf("register: status %d: %v", resp.StatusCode, err)
	}
	body, err := json.Marshal(map[string]string{"subdomain": acct.Subdomain, "txt": "___validation_token_received_from_the_ca___"})
	if err != nil {
		return err
	}

	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, *api+"/update", bytes.NewReader(body))
				if err != nil {
					return
				}
				req.Header.Set("X-Api-User", acct.Username)
				// 40 characters of [A-Za-z0-9_-], like a real key, so the
				// server cannot refuse it without running bcrypt.
				req.Header.Set("X-Api-Key", fmt.Sprintf("wrongkey%02d%030d", w%100, i))
				resp, err := client.Do(req)
				status := -1
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				} else if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
					return
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := 0
	var codes []int
	for c, n := range statuses {
		total += n
		codes = append(codes, c)
	}
	sort.Ints(codes)
	fmt.Fprintf(stdout, "flood: %d wrong-key /update calls in %s (%.0f/s), statuses:", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
	for _, c := range codes {
		fmt.Fprintf(stdout, " %d×%d", c, statuses[c])
	}
	fmt.Fprintln(stdout)
	return nil
}
