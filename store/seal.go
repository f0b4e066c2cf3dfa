package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// TSIG secrets are sealed before they reach the database, so that a leaked
// database (a dump, a backup, a read-only SQL injection elsewhere) does not
// hand out keys that can write challenge values. The sealing key (the
// key-encryption key, KEK) is 32 random bytes in a file of its own, mode
// 0600, outside the database: AES-256-GCM with a random 96-bit nonce per
// secret, and the row's subdomain, key name and algorithm as associated
// data, so a sealed secret copied into another row does not open. Stored
// form: "v1:" + base64url(kek id ‖ nonce ‖ ciphertext ‖ tag), where the kek
// id is the first 4 bytes of SHA-256 of the KEK: a secret sealed under
// another KEK is reported as such rather than as corrupt.

// kekSize is the key-encryption key's length (AES-256).
const kekSize = 32

// ErrNoKEK is returned when a TSIG key is written without a key-encryption
// key configured.
var ErrNoKEK = errors.New("store: no key-encryption key for TSIG secrets configured")

// errWrongKEK is a sealed secret made under a different KEK.
var errWrongKEK = errors.New("sealed under a different key-encryption key (copy the KEK file from the instance that created the key)")

// LoadKEK reads the key-encryption key file at path, creating it (mode 0600,
// 32 random bytes, base64) when it does not exist and create is true. A
// file readable by group or others is refused: the KEK is what keeps the
// secrets in the database sealed.
func LoadKEK(path string, create bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createKEK(path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: read key-encryption key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("store: key-encryption key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("store: key-encryption key %s has mode %v: it must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	return parseKEK(path, b)
}

func parseKEK(path string, b []byte) ([]byte, error) {
	kek, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(kek) != kekSize {
		return nil, fmt.Errorf("store: key-encryption key %s: expected %d bytes in base64 on one line", path, kekSize)
	}
	return kek, nil
}

func createKEK(path string) ([]byte, error) {
	kek := make([]byte, kekSize)
	if _, err := rand.Read(kek); err != nil {
		return nil, fmt.Errorf("store: create key-encryption key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first: use theirs.
		return LoadKEK(path, false)
	}
	if err != nil {
		return nil, fmt.Errorf("store: create key-encryption key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(kek) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("store: create key-encryption key: %w", err)
	}
	return kek, nil
}

func kekID(kek []byte) []byte {
	h := sha256.Sum256(kek)
	return h[:4]
}

func sealAAD(k TSIGKey) []byte {
	return []byte("delegated tsig v1\x00" + k.Subdomain + "\x00" + k.Name + "\x00" + k.Algorithm)
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	if len(kek) != kekSize {
		return nil, fmt.Errorf("key-encryption key must be %d bytes, got %d", kekSize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts k.Secret under kek, bound to k's subdomain, name and
// algorithm.
func seal(kek []byte, k TSIGKey) (string, error) {
	if kek == nil {
		return "", ErrNoKEK
	}
	aead, err := newGCM(kek)
	if err != nil {
		return "", fmt.Errorf("seal secret: %w", err)
	}
	out := append([]byte(nil), kekID(kek)...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal secret: %w", err)
	}
	out = append(out, nonce...)
	out = aead.Seal(out, nonce, k.Secret, sealAAD(k))
	return "v1:" + base64.RawURLEncoding.EncodeToString(out), nil
}

// unseal is seal's inverse; k carries the row's subdomain, name and
// algorithm.
func unseal(kek []byte, sealed string, k TSIGKey) (Secret, error) {
	if kek == nil {
		return nil, ErrNoKEK
	}
	rest, ok := strings.CutPrefix(sealed, "v1:")
	if !ok {
		return nil, errors.New("unseal secret: unknown format")
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("unseal secret: %w", err)
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, fmt.Errorf("unseal secret: %w", err)
	}
	if len(b) < 4+aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("unseal secret: too short")
	}
	if string(b[:4]) != string(kekID(kek)) {
		return nil, fmt.Errorf("unseal secret: %w", errWrongKEK)
	}
	nonce := b[4 : 4+aead.NonceSize()]
	plain, err := aead.Open(nil, nonce, b[4+aead.NonceSize():], sealAAD(k))
	if err != nil {
		return nil, fmt.Errorf("unseal secret: %w", err)
	}
	return plain, nil
}
