package console

import (
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary cookie values to the session check: it must
// never panic and never accept a value it did not sign.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1e9, 0)
	s := newSessions(testToken, time.Hour, func() time.Time { return now })
	good, _, err := s.create()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)               // a valid session
	f.Add("")                 // no value
	f.Add(".")                // empty parts
	f.Add("AAAA.BBBB")        // short parts
	f.Add(good[:len(good)-1]) // truncated MAC
	f.Add(good + "=")         // padding
	f.Add("a.b.c")            // three parts
	f.Fuzz(func(t *testing.T, v string) {
		if _, err := s.verify(v); err == nil && v != good {
			t.Fatalf("accepted a value it did not sign: %q", v)
		}
	})
}
