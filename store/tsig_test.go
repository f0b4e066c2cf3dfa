package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func testKEK(t testing.TB) []byte {
	t.Helper()
	kek, err := LoadKEK(filepath.Join(t.TempDir(), "tsig.kek"), true)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// TestTSIGKeys: set, read back unsealed, replace, remove; the database
// holds no plaintext; subscribers see each change with its version.
func TestTSIGKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		kek := testKEK(t)
		s := openStore(t, b, Options{KEK: kek})
		a := mustCreate(t, s, newAccount())
		var (
			mu  sync.Mutex
			got []TSIGKeyState
		)
		// As the contract says, a state no newer than the one held is
		// dropped: the follower's first catch-up may repeat one.
		held := map[string]int64{}
		defer s.SubscribeTSIGKeys(func(st TSIGKeyState) {
			mu.Lock()
			defer mu.Unlock()
			if v, ok := held[st.Subdomain]; ok && st.Version <= v {
				return
			}
			held[st.Subdomain] = st.Version
			got = append(got, st)
		})()

		secret := bytes.Repeat([]byte{0xA5}, 32)
		k := TSIGKey{Subdomain: a.Subdomain, Name: a.Subdomain + ".auth.example.org.", Algorithm: HMACSHA256, Secret: secret}
		if err := s.SetTSIGKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		back, err := s.TSIGKeyOf(ctx, a.Subdomain)
		if err != nil || !bytes.Equal(back.Secret, secret) || back.Name != k.Name || back.Algorithm != HMACSHA256 {
			t.Fatalf("read back %+v, %v", back, err)
		}
		// Sealed at rest: neither the raw secret nor its base64 is in the row.
		var sealed string
		if err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT sealed_secret FROM tsig_keys WHERE subdomain = ?`), a.Subdomain).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sealed, "v1:") || strings.Contains(sealed, string(secret)) {
			t.Fatalf("stored %q", sealed)
		}

		// Another account may not take the name.
		other := mustCreate(t, s, newAccount())
		if err := s.SetTSIGKey(ctx, TSIGKey{Subdomain: other.Subdomain, Name: k.Name, Algorithm: HMACSHA512, Secret: secret}); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate name: %v", err)
		}
		// Replace.
		k2 := k
		k2.Algorithm, k2.Secret, k2.FreeTXT = HMACSHA512, bytes.Repeat([]byte{1}, 32), true
		if err := s.SetTSIGKey(ctx, k2); err != nil {
			t.Fatal(err)
		}
		var loaded []TSIGKey
		if err := s.LoadTSIGKeys(ctx, func(k TSIGKey) error { loaded = append(loaded, k); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(loaded) != 1 || loaded[0].Algorithm != HMACSHA512 || !loaded[0].FreeTXT || !bytes.Equal(loaded[0].Secret, k2.Secret) {
			t.Fatalf("loaded %+v", loaded)
		}
		if err := s.RemoveTSIGKey(ctx, a.Subdomain); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveTSIGKey(ctx, a.Subdomain); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second remove: %v", err)
		}
		if _, err := s.TSIGKeyOf(ctx, a.Subdomain); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after remove: %v", err)
		}
		mu.Lock()
		saw := slices.Clone(got)
		mu.Unlock()
		if len(saw) != 3 || saw[0].Key == nil || saw[1].Key.Algorithm != HMACSHA512 || saw[2].Key != nil ||
			!(saw[0].Version < saw[1].Version && saw[1].Version < saw[2].Version) {
			t.Fatalf("subscriber saw %+v", saw)
		}
		// Deleting the account deletes its key.
		if err := s.SetTSIGKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteAccount(ctx, a.Username); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tsig_keys`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d keys left after deleting the account (%v)", n, err)
		}
	})
}

// TestTSIGKeyWrongKEK: a store opened with another KEK (or none) cannot
// read the secrets, and says why, rather than serving garbage.
func TestTSIGKeyWrongKEK(t *testing.T) {
	b := newBackend(t, "sqlite")
	ctx := testCtx(t)
	s := openStore(t, b, Options{KEK: testKEK(t)})
	a := mustCreate(t, s, newAccount())
	if err := s.SetTSIGKey(ctx, TSIGKey{Subdomain: a.Subdomain, Name: "k.example.", Algorithm: HMACSHA256, Secret: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	other := openStore(t, b, Options{KEK: testKEK(t)})
	if _, err := other.TSIGKeyOf(ctx, a.Subdomain); err == nil || !strings.Contains(err.Error(), "different key-encryption key") {
		t.Fatalf("other KEK: %v", err)
	}
	n := 0
	if err := other.LoadTSIGKeys(ctx, func(TSIGKey) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("load with other KEK: %d keys, %v", n, err)
	}
	if err := other.SetTSIGKey(ctx, TSIGKey{Subdomain: a.Subdomain, Name: "k.example.", Algorithm: HMACSHA256, Secret: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	none := openStore(t, b, Options{})
	if err := none.SetTSIGKey(ctx, TSIGKey{Subdomain: a.Subdomain, Name: "k.example.", Algorithm: HMACSHA256, Secret: make([]byte, 32)}); !errors.Is(err, ErrNoKEK) {
		t.Fatalf("no KEK: %v", err)
	}
}

// TestSealBindsRow: a sealed secret moved to another row does not open.
func TestSealBindsRow(t *testing.T) {
	kek := testKEK(t)
	k := TSIGKey{Subdomain: "a", Name: "a.example.", Algorithm: HMACSHA256, Secret: []byte("s")}
	sealed, err := seal(kek, k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := unseal(kek, sealed, k); err != nil || string(got) != "s" {
		t.Fatalf("unseal: %q %v", got, err)
	}
	for _, moved := range []TSIGKey{{Subdomain: "b", Name: k.Name, Algorithm: k.Algorithm}, {Subdomain: "a", Name: "b.example.", Algorithm: k.Algorithm}, {Subdomain: "a", Name: k.Name, Algorithm: HMACSHA512}} {
		if _, err := unseal(kek, sealed, moved); err == nil {
			t.Errorf("opened as %+v", moved)
		}
	}
}

// TestLoadKEK: created 0600 once and then reused; a group- or
// world-readable file is refused with the fix.
func TestLoadKEK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if _, err := LoadKEK(path, false); err == nil {
		t.Fatal("missing file without create")
	}
	first, err := LoadKEK(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	again, err := LoadKEK(path, true)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("reloaded %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKEK(path, false); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("0644 accepted: %v", err)
	}
}

// TestUpdateValues: a batch is one change, all or nothing; the check sees
// the live values inside the transaction.
func TestUpdateValues(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := openStore(t, b, Options{ValuesPerAccount: 2})
		a := mustCreate(t, s, newAccount())
		var (
			mu     sync.Mutex
			states []SubdomainState
		)
		defer s.Subscribe(func(st SubdomainState) { mu.Lock(); states = append(states, st); mu.Unlock() })()
		if err := s.UpdateValues(ctx, a.Subdomain, nil, []ValueChange{{OpAdd, "v1"}, {OpAdd, "v2"}, {OpAdd, "v3"}, {OpRemove, "v2"}}); err != nil {
			t.Fatal(err)
		}
		if vs, _ := values(ctx, s, a.Subdomain); !slices.Equal(vs, []string{"v3"}) {
			t.Fatalf("values %q", vs)
		}
		errStop := errors.New("prerequisite")
		var saw []string
		err := s.UpdateValues(ctx, a.Subdomain, func(live []string) error { saw = live; return errStop }, []ValueChange{{OpClear, ""}})
		if err != errStop || !slices.Equal(saw, []string{"v3"}) {
			t.Fatalf("check: %v, saw %q", err, saw)
		}
		if vs, _ := values(ctx, s, a.Subdomain); !slices.Equal(vs, []string{"v3"}) {
			t.Fatalf("values after failed check %q", vs)
		}
		if err := s.UpdateValues(ctx, a.Subdomain, nil, []ValueChange{{OpClear, ""}}); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateValues(ctx, "nobody", nil, []ValueChange{{OpAdd, "x"}}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown subdomain: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(states) != 2 || !slices.Equal(states[0].Values, []string{"v3"}) || len(states[1].Values) != 0 {
			t.Fatalf("published %+v", states)
		}
	})
}
