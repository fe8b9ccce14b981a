package api

// ParseSelector parses a label selector as kubectl writes it (app=web,
// tier!=db, env in (a,b), !canary) into a matcher of label sets.
func ParseSelector(sel string) (func(map[string]string) bool, error) {
	return httpParseSelector(sel)
}
