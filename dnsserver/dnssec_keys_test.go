package dnsserver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

// fakeKeySource is a KeySource whose content the test changes.
type fakeKeySource struct {
	mu      sync.Mutex
	keys    []store.DNSSECKey
	secrets [][]byte
	err     error
}

func (f *fakeKeySource) DNSSECKeys(context.Context) ([]store.DNSSECKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys, f.err
}

func (f *fakeKeySource) CookieSecrets(context.Context, time.Duration) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.secrets, f.err
}

func (f *fakeKeySource) set(fn func(f *fakeKeySource)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

// TestFollowKeys: the server installs what the store holds at start and
// each change after; a failing or invalid read keeps the keys it has.
func TestFollowKeys(t *testing.T) {
	env := newTestEnv(t, Options{})
	old, next := testKey(t, 1, store.KeyActive), testKey(t, 2, store.KeyPublished)
	srv := signedServer(t, env, testKey(t, 9, store.KeyActive))
	src := &fakeKeySource{keys: []store.DNSSECKey{old}, secrets: [][]byte{make([]byte, 16)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.FollowKeys(ctx, src, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	tags := func() []uint16 {
		var out []uint16
		for _, k := range dnskeys(t, srv) {
			out = append(out, k.KeyTag())
		}
		return out
	}
	oldTag, nextTag := mustDNSKEY(t, old).KeyTag(), mustDNSKEY(t, next).KeyTag()
	if got := tags(); len(got) != 1 || got[0] != oldTag {
		t.Fatalf("at start: keys %v, want %d", got, oldTag)
	}
	if srv.cookies.secrets.Load().keys[0] != [16]byte{} {
		t.Errorf("the store's cookie secret was not installed")
	}
	waitTags := func(want ...uint16) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := tags()
			if len(got) == len(want) && (len(got) == 0 || got[0] == want[0]) && (len(got) < 2 || got[1] == want[1]) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("keys %v, want %v", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	src.set(func(f *fakeKeySource) { f.keys = []store.DNSSECKey{old, next} })
	waitTags(oldTag, nextTag)

	// A failing store and an invalid key set change nothing.
	src.set(func(f *fakeKeySource) { f.err = errors.New("database down") })
	time.Sleep(50 * time.Millisecond)
	src.set(func(f *fakeKeySource) { f.err, f.keys = nil, []store.DNSSECKey{next} })
	time.Sleep(50 * time.Millisecond)
	waitTags(oldTag, nextTag)
	r := ask(t, srv, doQuery(testOrigin, dns.TypeSOA, false), true)
	verifySection(t, "soa", r.Answer, dnskeys(t, srv), time.Now())

	// A failing first read is an error: serve would not start unsigned.
	failing := &fakeKeySource{err: errors.New("database down")}
	if err := signedServer(t, env, old).FollowKeys(ctx, failing, time.Second); err == nil {
		t.Errorf("FollowKeys started on a failing store")
	}
}
