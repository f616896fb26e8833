package plugin

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Checks and readers of the setting shapes plug-ins share. A reader assumes its Check passed
// (FromEnv ran it) and still reports a bad value, for settings given by tests.

// Count checks a whole number, zero or more.
func Count(v string) error {
	_, err := ReadCount(v)
	return err
}

// ReadCount reads a Count ("" is 0).
func ReadCount(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errors.New("not a number")
	}
	return n, nil
}

// List splits a comma-separated setting (nil when empty).
func List(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// Counts checks name=N,... (sms=1,push=3).
func Counts(v string) error {
	_, err := ReadCounts(v)
	return err
}

// ReadCounts reads Counts.
func ReadCounts(v string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' }) {
		k, x, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(x)
		if !ok || err != nil || n < 0 {
			return nil, errors.New("want channel=N,... (sms=1,push=3)")
		}
		out[k] = n
	}
	return out, nil
}

// Prefixes checks comma-separated CIDRs.
func Prefixes(v string) error {
	_, err := ReadPrefixes(v)
	return err
}

// ReadPrefixes reads Prefixes.
func ReadPrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' }) {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, errors.New("want CIDRs, comma-separated (127.0.0.0/8)")
		}
		out = append(out, p)
	}
	return out, nil
}
