package api

import (
	"errors"
	"fmt"
	"strings"
)

// ParseSelector parses a label selector as kubectl writes it
// (app=web,tier!=db,env in (a,b),!canary,track) into a predicate over label
// sets. The empty selector matches everything.
func ParseSelector(sel string) (func(map[string]string) bool, error) {
	if strings.TrimSpace(sel) == "" {
		return nil, nil
	}
	// Split on the commas that are not inside a set's parentheses.
	var parts []string
	depth, start := 0, 0
	for i, c := range sel {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, sel[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, sel[start:])
	var preds []func(map[string]string) bool
	for _, p := range parts {
		pred, err := parseSelectorRequirement(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		preds = append(preds, pred)
	}
	return func(labels map[string]string) bool {
		for _, p := range preds {
			if !p(labels) {
				return false
			}
		}
		return true
	}, nil
}

func parseSelectorRequirement(p string) (func(map[string]string) bool, error) {
	if p == "" {
		return nil, errors.New("empty requirement")
	}
	if key, ok := strings.CutPrefix(p, "!"); ok {
		key = strings.TrimSpace(key)
		if !selectorLabelKey(key) {
			return nil, fmt.Errorf("invalid label key %q", key)
		}
		return func(l map[string]string) bool { _, has := l[key]; return !has }, nil
	}
	for _, op := range []string{"!=", "==", "="} {
		if i := strings.Index(p, op); i >= 0 {
			key, val := strings.TrimSpace(p[:i]), strings.TrimSpace(p[i+len(op):])
			if !selectorLabelKey(key) {
				return nil, fmt.Errorf("invalid label key %q", key)
			}
			if op == "!=" {
				return func(l map[string]string) bool { return l[key] != val }, nil
			}
			return func(l map[string]string) bool { v, has := l[key]; return has && v == val }, nil
		}
	}
	if i := strings.IndexByte(p, '('); i >= 0 {
		if !strings.HasSuffix(p, ")") {
			return nil, fmt.Errorf("%q: missing )", p)
		}
		fields := strings.Fields(p[:i])
		if len(fields) != 2 || (fields[1] != "in" && fields[1] != "notin") || !selectorLabelKey(fields[0]) {
			return nil, fmt.Errorf("%q: expected KEY in (VALUES) or KEY notin (VALUES)", p)
		}
		key, in := fields[0], fields[1] == "in"
		set := map[string]bool{}
		for _, v := range strings.Split(p[i+1:len(p)-1], ",") {
			set[strings.TrimSpace(v)] = true
		}
		return func(l map[string]string) bool {
			v, has := l[key]
			if in {
				return has && set[v]
			}
			return !has || !set[v]
		}, nil
	}
	if !selectorLabelKey(p) {
		return nil, fmt.Errorf("invalid label key %q", p)
	}
	return func(l map[string]string) bool { _, has := l[p]; return has }, nil
}

func selectorLabelKey(k string) bool {
	if k == "" || len(k) > 253 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./", c)) {
			return false
		}
	}
	return true
}
