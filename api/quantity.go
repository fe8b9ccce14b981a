package api

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Kubernetes quantities: a decimal number followed by an optional suffix.
//
//	binary suffixes:  Ki Mi Gi Ti Pi Ei        (powers of 1024)
//	decimal suffixes: n u m "" k M G T P E     (powers of 1000)
//	exponent:         e3, E-2, ...             (powers of 10)
//
// "500m" cpu is half a core, "128Mi" memory is 134217728 bytes, "1e3" is a
// thousand. Results are rounded up to a whole unit (a millicore, a byte), as
// Kubernetes rounds them.

// ParseCPU parses a cpu quantity ("500m", "2", "0.5") into millicores.
func ParseCPU(s string) (int64, error) {
	return parseQuantityScaled(s, 3)
}

// ParseBytes parses a memory or storage quantity ("128Mi", "1Gi", "1G",
// "1e3", "4096") into bytes.
func ParseBytes(s string) (int64, error) {
	return parseQuantityScaled(s, 0)
}

// quantityMaxLen bounds the text of a quantity; no sensible quantity is
// longer, and it keeps the arithmetic small.
const quantityMaxLen = 64

// quantityMaxExponent bounds the decimal exponent of a quantity.
const quantityMaxExponent = 100

const quantitySyntaxHint = "expected a number with an optional suffix (m, k, M, G, T, Ki, Mi, Gi, Ti, e3, ...)"

// parseQuantityScaled returns ceil(quantity × 10^scale) as an int64.
func parseQuantityScaled(s string, scale int) (int64, error) {
	digits, frac, suffix, neg, err := splitQuantity(s)
	if err != nil {
		return 0, err
	}
	exp10, exp2, err := quantitySuffix(suffix)
	if err != nil {
		return 0, fmt.Errorf("quantity %q: %v", s, err)
	}
	mantissa := strings.TrimLeft(digits+frac, "0")
	if mantissa == "" {
		return 0, nil // zero, whatever the suffix
	}
	if neg {
		return 0, fmt.Errorf("quantity %q: must not be negative", s)
	}
	exp10 += scale - len(frac)
	// value = mantissa × 10^exp10 × 2^exp2 ≥ 10^(len(mantissa)-1+exp10):
	// reject early what cannot fit in an int64 (< 10^19), so that the
	// arithmetic below stays small.
	if len(mantissa)-1+exp10 > 19 {
		return 0, fmt.Errorf("quantity %q: too large", s)
	}
	num, ok := new(big.Int).SetString(mantissa, 10)
	if !ok {
		return 0, fmt.Errorf("quantity %q: %s", s, quantitySyntaxHint)
	}
	num.Lsh(num, uint(exp2))
	den := big.NewInt(1)
	ten := big.NewInt(10)
	if exp10 >= 0 {
		num.Mul(num, new(big.Int).Exp(ten, big.NewInt(int64(exp10)), nil))
	} else {
		den.Exp(ten, big.NewInt(int64(-exp10)), nil)
	}
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1)) // round up, as Kubernetes does
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("quantity %q: too large", s)
	}
	return q.Int64(), nil
}

// splitQuantity splits "-1.5Gi" into its integer digits "1", fraction
// digits "5", suffix "Gi" and sign.
func splitQuantity(s string) (digits, frac, suffix string, neg bool, err error) {
	bad := func(why string) (string, string, string, bool, error) {
		return "", "", "", false, fmt.Errorf("quantity %q: %s", s, why)
	}
	switch {
	case s == "":
		return bad("empty")
	case len(s) > quantityMaxLen:
		return bad(fmt.Sprintf("longer than %d characters", quantityMaxLen))
	case strings.TrimSpace(s) != s:
		return bad("must not contain spaces")
	}
	rest := s
	if rest[0] == '+' || rest[0] == '-' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	digits, rest = rest[:i], rest[i:]
	if rest != "" && rest[0] == '.' {
		rest = rest[1:]
		i = 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		frac, rest = rest[:i], rest[i:]
	}
	if digits == "" && frac == "" {
		return bad(quantitySyntaxHint)
	}
	return digits, frac, rest, neg, nil
}

// quantitySuffix returns the power of ten and the power of two a suffix
// stands for.
func quantitySuffix(suffix string) (exp10, exp2 int, err error) {
	switch suffix {
	case "":
		return 0, 0, nil
	case "n":
		return -9, 0, nil
	case "u":
		return -6, 0, nil
	case "m":
		return -3, 0, nil
	case "k":
		return 3, 0, nil
	case "M":
		return 6, 0, nil
	case "G":
		return 9, 0, nil
	case "T":
		return 12, 0, nil
	case "P":
		return 15, 0, nil
	case "E":
		return 18, 0, nil
	case "Ki":
		return 0, 10, nil
	case "Mi":
		return 0, 20, nil
	case "Gi":
		return 0, 30, nil
	case "Ti":
		return 0, 40, nil
	case "Pi":
		return 0, 50, nil
	case "Ei":
		return 0, 60, nil
	}
	if suffix[0] == 'e' || suffix[0] == 'E' {
		e := suffix[1:]
		digits := strings.TrimLeft(e, "+-")
		if len(e)-len(digits) <= 1 && digits != "" && strings.Trim(digits, "0123456789") == "" {
			n, perr := strconv.Atoi(e)
			if perr != nil || n > quantityMaxExponent || n < -quantityMaxExponent {
				return 0, 0, fmt.Errorf("exponent %s out of range", e)
			}
			return n, 0, nil
		}
	}
	return 0, 0, fmt.Errorf("unknown suffix %q (use m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3)", suffix)
}
