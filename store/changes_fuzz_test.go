package store

import "testing"

// FuzzParseChange: notification payloads come over the network from the
// database; whatever arrives must parse to a usable change or be refused,
// and what we format must parse back.
func FuzzParseChange(f *testing.F) {
	for _, seed := range []string{
		"1 5f6c1a52-7a0e-4c1b-9a47-0c4f3e1e2d3a", // a real payload
		"9223372036854775807 x",                  // largest sequence
		"9223372036854775808 x",                  // overflow
		"12",                                     // no subdomain
		" abc",                                   // no sequence
		"0 abc",                                  // sequences start at 1
		"-1 abc",
		"12  two spaces",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		seq, sub, err := parseChange(payload)
		if err != nil {
			return
		}
		if seq <= 0 || sub == "" {
			t.Fatalf("parseChange(%q) = %d, %q without error", payload, seq, sub)
		}
		seq2, sub2, err := parseChange(formatChange(seq, sub))
		if err != nil || seq2 != seq || sub2 != sub {
			t.Fatalf("round trip of %d %q: %d %q %v", seq, sub, seq2, sub2, err)
		}
	})
}
