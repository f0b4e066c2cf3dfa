package config

import (
	"fmt"
	"strings"

	"github.com/go-acme/lego/v4/certcrypto"
)

// keyTypes are the words of [issuer] key_type and lego's key types, in the
// order the README and error messages list them; the first is the default.
// This is the only list: config validates with it and the issuer maps
// with it (CertKeyType).
func keyTypes() []struct {
	word string
	kt   certcrypto.KeyType
} {
	return []struct {
		word string
		kt   certcrypto.KeyType
	}{
		{"EC256", certcrypto.EC256},
		{"EC384", certcrypto.EC384},
		{"RSA2048", certcrypto.RSA2048},
		{"RSA3072", certcrypto.RSA3072},
		{"RSA4096", certcrypto.RSA4096},
	}
}

// CertKeyType maps a key_type word (any case; "" is the default EC256) to
// lego's key type.
func CertKeyType(word string) (certcrypto.KeyType, error) {
	all := keyTypes()
	if word == "" {
		return all[0].kt, nil
	}
	words := make([]string, len(all))
	for i, k := range all {
		if strings.EqualFold(word, k.word) {
			return k.kt, nil
		}
		words[i] = fmt.Sprintf("%q", k.word)
	}
	return "", fmt.Errorf("%q is not supported; expected one of %s", word, strings.Join(words, ", "))
}

// canonicalKeyType is the upper-case word of a valid key_type.
func canonicalKeyType(word string) string {
	if word == "" {
		return keyTypes()[0].word
	}
	return strings.ToUpper(word)
}
