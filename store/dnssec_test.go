package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func fakeKey(n byte) func() ([]byte, error) {
	return func() ([]byte, error) { return bytes.Repeat([]byte{n}, 32), nil }
}

func states(keys []DNSSECKey) string {
	var s []string
	for _, k := range keys {
		s = append(s, k.State)
	}
	return strings.Join(s, ",")
}

// TestDNSSECKeyLifecycle: the first key is created once, even by two
// instances at once; the rollover steps move the states in order and refuse
// a step out of order without changing anything.
func TestDNSSECKeyLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		a := openStore(t, b, Options{Now: clock.Now})
		c := openStore(t, b, Options{Now: clock.Now})
		var wg sync.WaitGroup
		results := make([][]DNSSECKey, 2)
		errs := make([]error, 2)
		for i, s := range []*Store{a, c} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = s.EnsureDNSSECKey(ctx, 13, fakeKey(byte(i+1)))
			}()
		}
		wg.Wait()
		for i := range errs {
			if errs[i] != nil {
				t.Fatalf("instance %d: %v", i, errs[i])
			}
			if len(results[i]) != 1 || results[i][0].State != KeyActive || !bytes.Equal(results[i][0].PrivateKey, results[0][0].PrivateKey) {
				t.Fatalf("instance %d sees %+v, want the one shared active key", i, results[i])
			}
		}
		if _, err := a.EnsureDNSSECKey(ctx, 13, fakeKey(9)); err != nil {
			t.Fatal(err)
		}

		if err := a.SwitchDNSSECKey(ctx); !errors.Is(err, ErrRolloverState) {
			t.Errorf("switch before pre-publish: %v, want ErrRolloverState", err)
		}
		if err := a.WithdrawDNSSECKey(ctx); !errors.Is(err, ErrRolloverState) {
			t.Errorf("withdraw before switch: %v, want ErrRolloverState", err)
		}
		steps := []struct {
			do   func() error
			want string
		}{
			{func() error { return a.PrepublishDNSSECKey(ctx, 13, []byte("new key")) }, "active,published"},
			{func() error { return c.SwitchDNSSECKey(ctx) }, "retired,active"},
			{func() error { return a.WithdrawDNSSECKey(ctx) }, "active"},
		}
		for i, st := range steps {
			clock.Advance(time.Hour)
			if err := st.do(); err != nil {
				t.Fatalf("step %d: %v", i+1, err)
			}
			keys, err := c.DNSSECKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := states(keys); got != st.want {
				t.Fatalf("after step %d: %s, want %s", i+1, got, st.want)
			}
			if last := keys[len(keys)-1]; !last.ChangedAt.Equal(clock.Now()) && st.want != "active" {
				t.Errorf("step %d: changed_at %v, want %v", i+1, last.ChangedAt, clock.Now())
			}
		}
		keys, _ := a.DNSSECKeys(ctx)
		if string(keys[0].PrivateKey) != "new key" || keys[0].Algorithm != 13 {
			t.Errorf("the remaining key is %q alg %d, want the pre-published one", keys[0].PrivateKey, keys[0].Algorithm)
		}
		if err := a.PrepublishDNSSECKey(ctx, 13, []byte("again")); err != nil {
			t.Errorf("a second rollover cannot start: %v", err)
		}
		if err := a.PrepublishDNSSECKey(ctx, 13, []byte("third")); !errors.Is(err, ErrRolloverState) {
			t.Errorf("two pre-published keys: %v, want ErrRolloverState", err)
		}
	})
}

// TestDNSSECKeyNeverLogged: a key logged by mistake shows no key material.
func TestDNSSECKeyNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	k := DNSSECKey{ID: 3, Algorithm: 13, PrivateKey: []byte("SECRET-KEY-BYTES"), State: KeyActive}
	log.Info("key", "key", k, "keys", []DNSSECKey{k})
	fmt.Fprintf(&buf, "%v %+v %#v %s", k, []DNSSECKey{k}, k, []DNSSECKey{k})
	if strings.Contains(buf.String(), "SECRET") || strings.Contains(buf.String(), fmt.Sprint(k.PrivateKey)) {
		t.Errorf("log shows the private key: %s", buf.String())
	}
}

// TestCookieSecretsRotate: every instance gets the same secrets; after the
// rotation period one new secret leads, the old ones are still accepted,
// and secrets older than three periods go.
func TestCookieSecretsRotate(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		a := openStore(t, b, Options{Now: clock.Now})
		c := openStore(t, b, Options{Now: clock.Now})
		const period = 24 * time.Hour
		first, err := a.CookieSecrets(ctx, period)
		if err != nil || len(first) != 1 || len(first[0]) != 16 {
			t.Fatalf("first secrets %x, %v", first, err)
		}
		same, err := c.CookieSecrets(ctx, period)
		if err != nil || len(same) != 1 || !bytes.Equal(same[0], first[0]) {
			t.Fatalf("second instance sees %x, want %x", same, first)
		}
		clock.Advance(period)
		var wg sync.WaitGroup
		got := make([][][]byte, 2)
		for i, s := range []*Store{a, c} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], _ = s.CookieSecrets(ctx, period)
			}()
		}
		wg.Wait()
		for i := range got {
			if len(got[i]) != 2 || !bytes.Equal(got[i][1], first[0]) || !bytes.Equal(got[i][0], got[0][0]) {
				t.Fatalf("instance %d after one period: %x, want one new secret shared, then the first", i, got[i])
			}
		}
		for range 3 {
			clock.Advance(period)
			if _, err := a.CookieSecrets(ctx, period); err != nil {
				t.Fatal(err)
			}
		}
		last, _ := c.CookieSecrets(ctx, period)
		for _, s := range last {
			if bytes.Equal(s, first[0]) {
				t.Errorf("a secret four periods old is still kept")
			}
		}
		if len(last) > 4 {
			t.Errorf("%d secrets kept, want at most 4", len(last))
		}
	})
}
