package api

import (
	"strings"
	"testing"
)

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"500m", 500, ""},
		{"2", 2000, ""},
		{"0.5", 500, ""},
		{".5", 500, ""},
		{"1.", 1000, ""},
		{"+1", 1000, ""},
		{"100m", 100, ""},
		{"1.5", 1500, ""},
		{"0.0001", 1, ""}, // rounded up to a millicore, as Kubernetes does
		{"250u", 1, ""},
		{"1000000n", 1, ""},
		{"1k", 1000000, ""},
		{"1e3", 1000000, ""},
		{"1E-3", 1, ""},
		{"0", 0, ""},
		{"0m", 0, ""},
		{"-0", 0, ""},
		{"1Ki", 1024000, ""},
		{"9223372036854775m", 9223372036854775, ""},
		{"", 0, `quantity "": empty`},
		{"abc", 0, `quantity "abc": expected a number with an optional suffix`},
		{"m", 0, `quantity "m": expected a number`},
		{"1.2.3", 0, `quantity "1.2.3": unknown suffix ".3"`},
		{"-1", 0, `quantity "-1": must not be negative`},
		{"1 m", 0, `quantity "1 m": unknown suffix " m"`},
		{" 1", 0, `quantity " 1": must not contain spaces`},
		{"1x", 0, `quantity "1x": unknown suffix "x"`},
		{"1mi", 0, `quantity "1mi": unknown suffix "mi"`},
		{"1e", 0, `quantity "1e": unknown suffix "e"`},
		{"1e+", 0, `quantity "1e+": unknown suffix "e+"`},
		{"1e1000", 0, `quantity "1e1000": exponent 1000 out of range`},
		{"10E", 0, `quantity "10E": too large`},
		{"9223372036854776", 0, `quantity "9223372036854776": too large`},
		{strings.Repeat("1", 65), 0, "longer than 64 characters"},
	}
	for _, tc := range tests {
		got, err := ParseCPU(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCPU(%q) = %d, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"128Mi", 128 << 20, ""},
		{"1Gi", 1 << 30, ""},
		{"1G", 1000000000, ""},
		{"1e3", 1000, ""},
		{"1E3", 1000, ""},
		{"4096", 4096, ""},
		{"1k", 1000, ""},
		{"1M", 1000000, ""},
		{"1Ki", 1024, ""},
		{"1.5Gi", 1610612736, ""},
		{"0.5Ki", 512, ""},
		{"100m", 1, ""}, // a tenth of a byte, rounded up
		{"1Ti", 1 << 40, ""},
		{"1Pi", 1 << 50, ""},
		{"1Ei", 1 << 60, ""},
		{"7Ei", 7 << 60, ""},
		{"8Ei", 0, "too large"},
		{"9E", 9000000000000000000, ""},
		{"10E", 0, "too large"},
		{"1T", 1000000000000, ""},
		{"1P", 1000000000000000, ""},
		{"12e-1", 2, ""},
		{"0.000000001", 1, ""},
		{"1e-100", 1, ""},
		{"0e100", 0, ""},
		{"12Gb", 0, `quantity "12Gb": unknown suffix "Gb"`},
		{"1KB", 0, `unknown suffix "KB"`},
		{"-1Mi", 0, "must not be negative"},
		{"Mi", 0, "expected a number"},
	}
	for _, tc := range tests {
		got, err := ParseBytes(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseBytes(%q) = %d, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"500m", "1.5Gi", "1e3", "-1", ".5", "9E", "1e-100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, cerr := ParseCPU(s)
		b, berr := ParseBytes(s)
		if cerr == nil && berr != nil {
			t.Fatalf("ParseCPU(%q) = %d but ParseBytes err %v", s, c, berr)
		}
		if cerr == nil && (c < 0 || b < 0 || c < b) {
			t.Fatalf("%q: cpu %d, bytes %d", s, c, b)
		}
	})
}
