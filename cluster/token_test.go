package cluster

import (
	"strings"
	"testing"
)

const (
	tokenTestFP     = "3f5a0c7e9b1d2468ace13579bdf02468ace13579bdf02468ace13579bdf0246a"
	tokenTestSecret = "k3j9x0qz7m2p5r8t1v4w6y0a3c5e7g9i"
)

func TestTokenParse(t *testing.T) {
	good := "SHOAL-1-" + tokenTestFP + "-" + tokenTestSecret
	tests := []struct {
		name    string
		in      string
		want    JoinToken
		wantErr string
	}{
		{"good", good, JoinToken{tokenTestFP, tokenTestSecret}, ""},
		{"surrounding white space", "  " + good + "\n", JoinToken{tokenTestFP, tokenTestSecret}, ""},
		{"upper-case fingerprint", "SHOAL-1-" + strings.ToUpper(tokenTestFP) + "-" + tokenTestSecret, JoinToken{tokenTestFP, tokenTestSecret}, ""},
		{"empty", "", JoinToken{}, "join token is empty"},
		{"blank", " \t\n", JoinToken{}, "join token is empty"},
		{"no prefix", tokenTestFP + "-" + tokenTestSecret, JoinToken{}, "join token must start with SHOAL-1-"},
		{"lower-case prefix", "shoal-1-" + tokenTestFP + "-" + tokenTestSecret, JoinToken{}, "join token must start with SHOAL-1-"},
		{"other product", "SWMTKN-1-" + tokenTestFP + "-" + tokenTestSecret, JoinToken{}, "join token must start with SHOAL-1-"},
		{"prefix only", "SHOAL-", JoinToken{}, "join token must start with SHOAL-1-"},
		{"missing version", "SHOAL-" + tokenTestFP + "-" + tokenTestSecret, JoinToken{}, "join token must start with SHOAL-1-"},
		{"version 2", "SHOAL-2-" + tokenTestFP + "-" + tokenTestSecret, JoinToken{}, "join token has version 2, this shoal understands only version 1"},
		{"version 0", "SHOAL-0-" + tokenTestFP + "-" + tokenTestSecret, JoinToken{}, "join token has version 0"},
		{"version only", "SHOAL-1", JoinToken{}, "must have 4 parts separated by '-'"},
		{"no secret part", "SHOAL-1-" + tokenTestFP, JoinToken{}, "must have 4 parts separated by '-' (SHOAL-1-<CA fingerprint>-<secret>), it has 3"},
		{"extra part", good + "-extra", JoinToken{}, "it has 5"},
		{"dash in secret", "SHOAL-1-" + tokenTestFP + "-" + tokenTestSecret[:16] + "-" + tokenTestSecret[16:], JoinToken{}, "it has 5"},
		{"short fingerprint", "SHOAL-1-" + tokenTestFP[:63] + "-" + tokenTestSecret, JoinToken{}, "join token's CA fingerprint must be 64 hex characters"},
		{"long fingerprint", "SHOAL-1-" + tokenTestFP + "0-" + tokenTestSecret, JoinToken{}, "join token's CA fingerprint must be 64 hex characters"},
		{"non-hex fingerprint", "SHOAL-1-" + tokenTestFP[:63] + "g-" + tokenTestSecret, JoinToken{}, "join token's CA fingerprint must be 64 hex characters"},
		{"empty fingerprint", "SHOAL-1--" + tokenTestSecret, JoinToken{}, "join token's CA fingerprint must be 64 hex characters"},
		{"short secret", "SHOAL-1-" + tokenTestFP + "-" + tokenTestSecret[:31], JoinToken{}, "join token's secret must be 32 characters of a-z and 0-9"},
		{"long secret", good + "x", JoinToken{}, "join token's secret must be 32 characters of a-z and 0-9"},
		{"upper-case secret", "SHOAL-1-" + tokenTestFP + "-" + strings.ToUpper(tokenTestSecret), JoinToken{}, "join token's secret must be 32 characters of a-z and 0-9"},
		{"secret with symbol", "SHOAL-1-" + tokenTestFP + "-" + tokenTestSecret[:31] + "_", JoinToken{}, "join token's secret must be 32 characters of a-z and 0-9"},
		{"empty secret", "SHOAL-1-" + tokenTestFP + "-", JoinToken{}, "join token's secret must be 32 characters of a-z and 0-9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseJoinToken(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseJoinToken: %v", err)
				}
				if got != tt.want {
					t.Fatalf("ParseJoinToken = %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseJoinToken succeeded (%+v), want an error containing %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			// The secret, or any long piece of it, never shows in an error.
			for _, piece := range []string{tokenTestSecret[:16], tokenTestSecret[16:], strings.ToUpper(tokenTestSecret[:16])} {
				if strings.Contains(err.Error(), piece) {
					t.Fatalf("error %q reveals part of the secret", err)
				}
			}
		})
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for range 20 {
		secret, err := NewJoinSecret()
		if err != nil {
			t.Fatal(err)
		}
		tok := JoinToken{Fingerprint: Fingerprint([]byte(secret)), Secret: secret}
		s := tok.String()
		if !strings.HasPrefix(s, "SHOAL-1-"+tok.Fingerprint+"-") || !strings.HasSuffix(s, "-"+secret) {
			t.Fatalf("String() = %q", s)
		}
		got, err := ParseJoinToken(s)
		if err != nil {
			t.Fatalf("ParseJoinToken(%q): %v", s, err)
		}
		if got != tok {
			t.Fatalf("round trip gave %+v, want %+v", got, tok)
		}
	}
}

func TestTokenNewJoinSecret(t *testing.T) {
	seen := map[string]bool{}
	used := map[rune]bool{}
	for range 1000 {
		s, err := NewJoinSecret()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 32 || !tokenIsSecretChars(s) {
			t.Fatalf("secret %q is not 32 characters of a-z and 0-9", s)
		}
		if seen[s] {
			t.Fatalf("secret %q drawn twice", s)
		}
		seen[s] = true
		for _, r := range s {
			used[r] = true
		}
	}
	// 32000 draws from 36 characters use every one of them.
	if len(used) != 36 {
		t.Errorf("secrets use %d distinct characters, want all 36", len(used))
	}
}

func TestJoinProof(t *testing.T) {
	_, csr, err := NewNodeKey("node2", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, otherCSR, err := NewNodeKey("node3", nil)
	if err != nil {
		t.Fatal(err)
	}
	proof := JoinProof(tokenTestSecret, csr)
	if len(proof) != 32 {
		t.Fatalf("proof is %d bytes, want 32", len(proof))
	}
	if string(proof) == string(JoinProof(tokenTestSecret, otherCSR)) {
		t.Fatal("proofs for two CSRs are equal")
	}
	flipped := append([]byte(nil), proof...)
	flipped[0] ^= 1
	tests := []struct {
		name   string
		secret string
		csr    []byte
		proof  []byte
		want   bool
	}{
		{"right secret", tokenTestSecret, csr, proof, true},
		{"wrong secret", strings.Repeat("a", 32), csr, proof, false},
		{"other CSR", tokenTestSecret, otherCSR, proof, false},
		{"flipped bit", tokenTestSecret, csr, flipped, false},
		{"truncated proof", tokenTestSecret, csr, proof[:16], false},
		{"empty proof", tokenTestSecret, csr, nil, false},
		{"empty secret", "", csr, JoinProof("", csr), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckJoinProof(tt.secret, tt.csr, tt.proof); got != tt.want {
				t.Errorf("CheckJoinProof = %v, want %v", got, tt.want)
			}
		})
	}
}
