package query

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime parses a --from/--to value: RFC 3339 (2026-11-22T10:00:00Z), a UTC date
// (2026-11-22), "now", or a time relative to now: -90s, -15m, -1h, -2d, -1w (the minus is
// optional).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return time.Time{}, fmt.Errorf("empty time")
	case s == "now":
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	rel := strings.TrimPrefix(s, "-")
	if len(rel) >= 2 {
		unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[rel[len(rel)-1]]
		if n, err := strconv.ParseUint(rel[:len(rel)-1], 10, 32); err == nil && unit != 0 {
			return now.Add(-time.Duration(n) * unit), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-22T10:00:00Z), a date (2026-11-22), now, or relative (-15m, -1h, -2d)", s)
}
