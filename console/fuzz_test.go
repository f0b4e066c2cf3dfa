package console

import (
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary cookie values to the session check: it must
// never panic and never accept a value it did not sign.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1e9, 0)
	s := newSessions(testToken, time.Hour, func() time.Time { return now })
	// A fixed session (the fuzzing workers rerun this setup, so it must
	// not be random): id 1…16, expiring in an hour.
	var p [payloadLen]byte
	for i := range idLen {
		p[i] = byte(i + 1)
	}
	binary.BigEndian.PutUint64(p[idLen:], uint64(now.Add(time.Hour).Unix()))
	enc := base64.RawURLEncoding
	good := enc.EncodeToString(p[:]) + "." + enc.EncodeToString(s.mac([]byte("session"), p[:]))
	if _, err := s.verify(good); err != nil {
		f.Fatalf("the seed session is refused: %v", err)
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
