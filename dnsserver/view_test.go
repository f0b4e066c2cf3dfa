package dnsserver

import (
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/store"
)

func TestParseUUIDLabel(t *testing.T) {
	tests := []struct {
		label string
		ok    bool
	}{
		{"d420c923-bbd7-4056-ab64-c3ca54c9b3cf", true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"D420C923-bbd7-4056-ab64-c3ca54c9b3cf", false}, // not canonical: kept as a string
		{"d420c923-bbd7-4056-ab64-c3ca54c9b3c", false},
		{"d420c923bbd7-4056-ab64-c3ca54c9b3cf0", false},
		{"g420c923-bbd7-4056-ab64-c3ca54c9b3cf", false},
		{"_acme-challenge", false},
	}
	for _, tt := range tests {
		k, ok := parseUUIDLabel(tt.label)
		if ok != tt.ok {
			t.Errorf("%q: ok %t, want %t", tt.label, ok, tt.ok)
		}
		kb, okb := parseUUIDLabel([]byte(tt.label))
		if k != kb || ok != okb {
			t.Errorf("%q: string and []byte forms disagree", tt.label)
		}
	}
	a, _ := parseUUIDLabel("d420c923-bbd7-4056-ab64-c3ca54c9b3cf")
	b, _ := parseUUIDLabel("d420c923-bbd7-4056-ab64-c3ca54c9b3ce")
	if a == b {
		t.Error("different UUIDs share a key")
	}
}

// TestViewApply: UUID and other labels, upper-case input, deletion, stale
// versions ignored, and values (incl. a long one) round-trip.
func TestViewApply(t *testing.T) {
	v := NewView(time.Unix(1_700_000_000, 0))
	long := strings.Repeat("v", 300)
	v.Apply(store.SubdomainState{Subdomain: "D420C923-BBD7-4056-AB64-C3CA54C9B3CF", Values: []string{"a", long}, Version: 2})
	v.Apply(store.SubdomainState{Subdomain: "_acme-challenge", Values: []string{"b"}, Version: 3})
	v.Apply(store.SubdomainState{Subdomain: "d420c923-bbd7-4056-ab64-c3ca54c9b3cf", Values: []string{"stale"}, Version: 1})
	if v.Len() != 2 {
		t.Fatalf("Len %d, want 2", v.Len())
	}
	e, ok := v.lookup("d420c923-bbd7-4056-ab64-c3ca54c9b3cf")
	if !ok || strings.Join(e.values(), ",") != "a,"+long {
		t.Fatalf("uuid entry %v %v", ok, e.values())
	}
	if e, ok := v.lookupBytes([]byte("_acme-challenge")); !ok || strings.Join(e.values(), ",") != "b" {
		t.Fatalf("named entry %v %v", ok, e.values())
	}
	serial := v.Serial()
	v.Apply(store.SubdomainState{Subdomain: "d420c923-bbd7-4056-ab64-c3ca54c9b3cf", Deleted: true, Version: 4})
	if _, ok := v.lookup("d420c923-bbd7-4056-ab64-c3ca54c9b3cf"); ok || v.Len() != 1 {
		t.Fatalf("deleted entry still there (len %d)", v.Len())
	}
	if v.Serial() == serial {
		t.Fatal("serial unchanged by a deletion")
	}
}
