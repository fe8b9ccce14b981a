package cluster

// Join tokens: SHOAL-1-<fingerprint of the cluster CA>-<secret>. The
// fingerprint lets a joining node trust the cluster's CA on first use; the
// secret lets the cluster trust the joining node, which proves it knows the
// secret with an HMAC over its certificate request instead of sending it.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

const (
	tokenPrefix       = "SHOAL-"
	tokenVersion      = "1"
	tokenFingerprintN = 64
	tokenSecretN      = 32
	tokenAlphabet     = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// JoinToken is a parsed join token.
type JoinToken struct {
	Fingerprint string // lowercase hex SHA-256 of the cluster CA certificate
	Secret      string // 32 characters of a-z and 0-9
}

// String gives the token in the form users copy: SHOAL-1-<fingerprint>-<secret>.
func (t JoinToken) String() string {
	return tokenPrefix + tokenVersion + "-" + t.Fingerprint + "-" + t.Secret
}

// NewJoinSecret returns a random secret of 32 characters from a-z and 0-9
// (about 165 bits).
func NewJoinSecret() (string, error) {
	// Rejection sampling keeps every character equally likely: 252 is the
	// largest multiple of 36 that fits in a byte.
	const limit = 256 - 256%len(tokenAlphabet)
	out := make([]byte, 0, tokenSecretN)
	buf := make([]byte, 2*tokenSecretN)
	for len(out) < tokenSecretN {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generating the join secret: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			if len(out) == tokenSecretN {
				break
			}
		}
	}
	return string(out), nil
}

// ParseJoinToken parses SHOAL-1-<fingerprint>-<secret>. Surrounding white
// space is ignored; the fingerprint may be given in upper case. Errors say
// what is wrong with the token but never repeat its secret.
func ParseJoinToken(s string) (JoinToken, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return JoinToken{}, errors.New("join token is empty")
	}
	if !strings.HasPrefix(s, tokenPrefix) {
		return JoinToken{}, errors.New("join token must start with SHOAL-1-")
	}
	parts := strings.Split(s, "-")
	if v := parts[1]; v != tokenVersion {
		if v != "" && tokenIsDigits(v) {
			return JoinToken{}, fmt.Errorf("join token has version %s, this shoal understands only version 1 (SHOAL-1-...)", v)
		}
		return JoinToken{}, errors.New("join token must start with SHOAL-1-")
	}
	if len(parts) != 4 {
		return JoinToken{}, fmt.Errorf("join token must have 4 parts separated by '-' (SHOAL-1-<CA fingerprint>-<secret>), it has %d", len(parts))
	}
	fp, secret := strings.ToLower(parts[2]), parts[3]
	if len(fp) != tokenFingerprintN || !tokenIsHex(fp) {
		return JoinToken{}, fmt.Errorf("join token's CA fingerprint must be %d hex characters", tokenFingerprintN)
	}
	if len(secret) != tokenSecretN || !tokenIsSecretChars(secret) {
		return JoinToken{}, fmt.Errorf("join token's secret must be %d characters of a-z and 0-9", tokenSecretN)
	}
	return JoinToken{Fingerprint: fp, Secret: secret}, nil
}

// JoinProof is what a joining node sends instead of the secret:
// HMAC-SHA256 keyed by the secret over its certificate request, which binds
// the proof to the key the node will get a certificate for.
func JoinProof(secret string, csrPEM []byte) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(csrPEM)
	return mac.Sum(nil)
}

// CheckJoinProof tells, in constant time, whether proof was made by JoinProof
// with this secret over csrPEM. An empty secret or proof never matches.
func CheckJoinProof(secret string, csrPEM, proof []byte) bool {
	if secret == "" || len(proof) == 0 {
		return false
	}
	return hmac.Equal(JoinProof(secret, csrPEM), proof)
}

func tokenIsDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func tokenIsHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func tokenIsSecretChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(tokenAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
