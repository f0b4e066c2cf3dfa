// Command register measures how fairly a running delegated shares bcrypt
// between concurrent registrations: -c clients each register in a loop for
// -d, then send the new account's first /update (one more bcrypt, not yet
// cached). It prints the latency distribution of both and checks the
// targets of issue 16: p99 ≤ 1.5× p50, and no request waiting longer than
// the queue ahead of it needs (FIFO: about c ÷ the bcrypt rate).
//
// Each client's first round is warm-up and reported apart: the c requests
// that arrive together at the start find queues of 0 to c jobs ahead of
// them, so even a perfectly fair queue spreads them from zero to the FIFO
// wait. The targets are about the steady state that follows.
//
// Run it with bench/register.sh, which starts a server on loopback.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	api := flag.String("api", "http://127.0.0.1:8053", "API base URL (loopback only)")
	c := flag.Int("c", 50, "concurrent clients")
	d := flag.Duration("d", 20*time.Second, "how long to register")
	flag.Parse()
	if err := run(*api, *c, *d); err != nil {
		fmt.Fprintln(os.Stderr, "register bench:", err)
		os.Exit(1)
	}
}

type sample struct {
	register, firstUpdate time.Duration
	warmUp                bool
}

func run(api string, c int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		samples []sample
		errs    []error
	)
	end := time.Now().Add(d)
	started := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; time.Now().Before(end); round++ {
				s, err := registerAndUpdate(ctx, client, api)
				s.warmUp = round == 0
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					samples = append(samples, s)
				}
				mu.Unlock()
				if err != nil && ctx.Err() != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	if len(errs) > 0 {
		// Reported, not fatal: a server whose queue is unfair cuts the
		// longest waits at its write timeout, and those are the point.
		fmt.Printf("%d requests failed, first: %v\n", len(errs), errs[0])
	}
	if len(samples) == 0 {
		return errors.New("no registration finished")
	}
	// Each sample is two bcrypt computations (hash, then the first
	// update's check).
	rate := float64(2*len(samples)) / elapsed.Seconds()
	fifo := time.Duration(float64(c) / rate * float64(time.Second))
	var reg, upd, warmReg, warmUpd []time.Duration
	for _, s := range samples {
		if s.warmUp {
			warmReg, warmUpd = append(warmReg, s.register), append(warmUpd, s.firstUpdate)
			continue
		}
		reg, upd = append(reg, s.register), append(upd, s.firstUpdate)
	}
	for _, ls := range [][]time.Duration{reg, upd, warmReg, warmUpd} {
		slices.Sort(ls)
	}
	fmt.Printf("clients %d, %v: %d registrations + first updates, bcrypt rate %.1f/s, FIFO wait for %d queued ≈ %v\n",
		c, elapsed.Round(time.Millisecond), len(samples), rate, c, fifo.Round(time.Millisecond))
	report := func(name string, ls []time.Duration) bool {
		p50, p95, p99, mx := pct(ls, 50), pct(ls, 95), pct(ls, 99), ls[len(ls)-1]
		ratio := float64(p99) / float64(p50)
		ok := ratio <= 1.5
		fmt.Printf("%-13s p50 %v  p95 %v  p99 %v  max %v  p99/p50 %.2f (target ≤ 1.5: %s)  max/FIFO wait %.2f\n",
			name, p50.Round(time.Millisecond), p95.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond),
			ratio, verdict(ok), float64(mx)/float64(fifo))
		return ok
	}
	fmt.Printf("warm-up (each client's first round, %d):\n", len(warmReg))
	report("register", warmReg)
	report("first update", warmUpd)
	if len(reg) == 0 {
		return errors.New("no steady-state sample: run longer (-d)")
	}
	fmt.Printf("steady state (%d):\n", len(reg))
	okReg := report("register", reg)
	okUpd := report("first update", upd)
	if !okReg || !okUpd || len(errs) > 0 {
		return errors.New("fairness target missed")
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// pct is the p-th percentile of sorted ls (nearest rank).
func pct(ls []time.Duration, p int) time.Duration {
	i := (len(ls)*p + 99) / 100
	return ls[max(0, min(len(ls)-1, i-1))]
}

func registerAndUpdate(ctx context.Context, client *http.Client, api string) (sample, error) {
	var s sample
	t0 := time.Now()
	body, err := post(ctx, client, api+"/register", nil, nil, http.StatusCreated)
	if err != nil {
		return s, fmt.Errorf("register: %w", err)
	}
	s.register = time.Since(t0)
	var reg struct{ Username, Password, Subdomain string }
	if err := json.Unmarshal(body, &reg); err != nil {
		return s, fmt.Errorf("register reply: %w", err)
	}
	var raw [32]byte
	rand.Read(raw[:])
	upd := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, reg.Subdomain, base64.RawURLEncoding.EncodeToString(raw[:]))
	t1 := time.Now()
	if _, err := post(ctx, client, api+"/update", []byte(upd), map[string]string{"X-Api-User": reg.Username, "X-Api-Key": reg.Password}, http.StatusOK); err != nil {
		return s, fmt.Errorf("first update: %w", err)
	}
	s.firstUpdate = time.Since(t1)
	return s, nil
}

func post(ctx context.Context, client *http.Client, url string, body []byte, headers map[string]string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return b, nil
}
