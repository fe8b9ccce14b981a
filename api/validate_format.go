package api

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Formats of names, as Kubernetes checks them. Each check returns "" when
// the value is valid, else what is wrong with it.

var (
	validDNS1123LabelRe  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	validDNS1123SubRe    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	validDNS1035LabelRe  = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	validQualifiedNameRe = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	validLabelValueRe    = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	validEnvVarNameRe    = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	validPortNameRe      = regexp.MustCompile(`^[-a-z0-9]+$`)
	validPortNameAlphaRe = regexp.MustCompile(`[a-z]`)
	validPercentRe       = regexp.MustCompile(`^[0-9]+%$`)
)

// checkDNS1123Label: a lowercase RFC 1123 label (namespaces, containers,
// volumes).
func checkDNS1123Label(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("%q is longer than 63 characters", validTruncate(s))
	}
	if !validDNS1123LabelRe.MatchString(s) {
		return fmt.Sprintf("%q is not a lowercase RFC 1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit (e.g. \"my-name\")", validTruncate(s))
	}
	return ""
}

// checkDNS1123Subdomain: a lowercase RFC 1123 subdomain (object names).
func checkDNS1123Subdomain(s string) string {
	if len(s) > 253 {
		return fmt.Sprintf("%q is longer than 253 characters", validTruncate(s))
	}
	if !validDNS1123SubRe.MatchString(s) {
		return fmt.Sprintf("%q is not a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. \"example.com\")", validTruncate(s))
	}
	return ""
}

// checkDNS1035Label: a lowercase RFC 1035 label (service names, which are
// DNS names).
func checkDNS1035Label(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("%q is longer than 63 characters", validTruncate(s))
	}
	if !validDNS1035LabelRe.MatchString(s) {
		return fmt.Sprintf("%q is not a lowercase RFC 1035 label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (e.g. \"my-name\")", validTruncate(s))
	}
	return ""
}

// checkQualifiedName: a label, annotation or taint key: an optional DNS
// subdomain prefix and '/', then a name of at most 63 characters.
func checkQualifiedName(s string) string {
	name := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		prefix := s[:i]
		name = s[i+1:]
		if prefix == "" {
			return fmt.Sprintf("key %q: the prefix before '/' must not be empty", validTruncate(s))
		}
		if msg := checkDNS1123Subdomain(prefix); msg != "" {
			return fmt.Sprintf("key %q: prefix %s", validTruncate(s), msg)
		}
	}
	switch {
	case name == "":
		return fmt.Sprintf("key %q: the name must not be empty", validTruncate(s))
	case len(name) > 63:
		return fmt.Sprintf("key %q: the name is longer than 63 characters", validTruncate(s))
	case !validQualifiedNameRe.MatchString(name):
		return fmt.Sprintf("key %q: the name must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit", validTruncate(s))
	}
	return ""
}

// checkLabelValue: empty, or at most 63 letters, digits, '-', '_', '.'
// starting and ending with a letter or digit.
func checkLabelValue(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("value %q is longer than 63 characters", validTruncate(s))
	}
	if !validLabelValueRe.MatchString(s) {
		return fmt.Sprintf("value %q must be empty or consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit", validTruncate(s))
	}
	return ""
}

// checkPortName: an IANA service name (port names).
func checkPortName(s string) string {
	switch {
	case len(s) > 15:
		return fmt.Sprintf("port name %q is longer than 15 characters", validTruncate(s))
	case !validPortNameRe.MatchString(s):
		return fmt.Sprintf("port name %q must consist of lowercase letters, digits and '-'", validTruncate(s))
	case !validPortNameAlphaRe.MatchString(s):
		return fmt.Sprintf("port name %q must contain at least one letter", validTruncate(s))
	case strings.Contains(s, "--"):
		return fmt.Sprintf("port name %q must not contain \"--\"", validTruncate(s))
	case s[0] == '-' || s[len(s)-1] == '-':
		return fmt.Sprintf("port name %q must not begin or end with '-'", validTruncate(s))
	}
	return ""
}

// checkEnvVarName: letters, digits, '_', '-' and '.', not starting with a
// digit.
func checkEnvVarName(s string) string {
	if !validEnvVarNameRe.MatchString(s) {
		return fmt.Sprintf("%q is not a valid environment variable name: letters, digits, '_', '-' and '.', not starting with a digit", validTruncate(s))
	}
	return ""
}

// checkHTTPHeaderName: an RFC 7230 token.
func checkHTTPHeaderName(s string) string {
	if s == "" {
		return "required"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fmt.Sprintf("%q is not a valid HTTP header name", validTruncate(s))
		}
	}
	return ""
}

// checkIP: an IPv4 or IPv6 address that is not unspecified.
func checkIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return fmt.Sprintf("%q is not a valid IP address", validTruncate(s))
	}
	if a.IsUnspecified() {
		return fmt.Sprintf("%q is not a usable IP address", validTruncate(s))
	}
	return ""
}

func validTruncate(s string) string {
	return manifestTruncate(s)
}
