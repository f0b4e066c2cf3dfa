package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseAnonMappings(t *testing.T) {
	smaps, err := os.ReadFile("testdata/smaps")
	if err != nil {
		t.Fatal(err)
	}
	got := parseAnonMappings(smaps)
	// Named mappings ([heap], [stack], files) and ones not rw-p are left out.
	want := []anonMapping{
		{start: 0xc000000000, end: 0xc00c000000},
		{start: 0x7f1c2a000000, end: 0x7f1c2a800000},
		{start: 0x7f1c2b001000, end: 0x7f1c2b2ff000},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parsed %+v\nwant   %+v", got, want)
	}
}

func TestHugeAligned(t *testing.T) {
	cases := []struct {
		name       string
		m          anonMapping
		start, end uintptr
		ok         bool
	}{
		{"aligned", anonMapping{0xc000000000, 0xc00c000000}, 0xc000000000, 0xc00c000000, true},
		{"unaligned ends trimmed", anonMapping{0x40001000, 0x40601000}, 0x40200000, 0x40600000, true},
		{"no whole huge page", anonMapping{0x40001000, 0x402ff000}, 0, 0, false},
		{"smaller than one", anonMapping{0x40000000, 0x40100000}, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start, end, ok := tc.m.hugeAligned()
			if ok != tc.ok || (ok && (start != tc.start || end != tc.end)) {
				t.Fatalf("hugeAligned() = %#x, %#x, %v; want %#x, %#x, %v", start, end, ok, tc.start, tc.end, tc.ok)
			}
		})
	}
}

func TestCountResident(t *testing.T) {
	vec := make([]byte, 512)
	for i := range 300 {
		vec[i] = 1
	}
	vec[400] = 0b10 // other bits are reserved: not resident
	if n := countResident(vec); n != 300 {
		t.Fatalf("countResident = %d, want 300", n)
	}
}

// TestAdviseHugePages runs the real thing on this test process: a large,
// filled heap object ends up on huge pages with its content intact, unless
// the kernel has THP off.
func TestAdviseHugePages(t *testing.T) {
	thp, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if strings.Contains(string(thp), "[never]") || len(thp) == 0 {
		t.Skipf("transparent huge pages are off here (%q): nothing to test", thp)
	}
	ballast := make([]byte, 64<<20) // a fully resident heap object to collapse
	for i := range ballast {
		ballast[i] = byte(i)
	}
	collapsed, err := adviseHugePages(context.Background())
	if err != nil {
		// A mapping can change between reading smaps and advising it;
		// that one is skipped, the others still count.
		t.Logf("adviseHugePages: %v", err)
	}
	if collapsed < 32<<20 {
		t.Fatalf("collapsed %d bytes, want at least half the 64 MB ballast", collapsed)
	}
	rollup, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	var hugeKB int
	for line := range strings.Lines(string(rollup)) {
		if rest, ok := strings.CutPrefix(line, "AnonHugePages:"); ok {
			hugeKB, _ = strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	if hugeKB < 32<<10 {
		t.Fatalf("AnonHugePages %d kB after collapsing %d MB", hugeKB, collapsed>>20)
	}
	for i := range ballast {
		if ballast[i] != byte(i) {
			t.Fatalf("byte %d changed after collapsing", i)
		}
	}
	t.Logf("collapsed %d MB; AnonHugePages %d MB", collapsed>>20, hugeKB>>10)
}
