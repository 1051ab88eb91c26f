package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Secret is a string that is not printed: formatting it with fmt or slog, or
// marshalling it as text, YAML or JSON, gives "***" when it is set (and ""
// when it is not). Use Reveal, or a conversion to string, to get the value.
type Secret string

// masked is what a set Secret prints as.
const masked = "***"

// String returns "***" when s is set, else "".
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return masked
}

// GoString returns the masked value quoted, for %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalText returns the masked value, so that encoders never see the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// ByteSize is a size in bytes. In configuration it is an integer byte count
// or a number with a binary unit: B, KiB, MiB or GiB (e.g. "64MiB").
type ByteSize int64

// Binary byte size units.
const (
	KiB ByteSize = 1 << (10 * (iota + 1))
	MiB
	GiB
)

// String returns the size with the largest binary unit that divides it
// exactly, e.g. "64MiB", or a plain byte count.
func (b ByteSize) String() string {
	for _, u := range []struct {
		size ByteSize
		name string
	}{{GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalText returns b.String().
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText parses a byte count ("1048576") or a number with a binary
// unit ("64MiB", "512KiB", "1GiB", "100B").
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult := map[string]ByteSize{"": 1, "B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || n > math.MaxInt64/int64(mult) {
		return fmt.Errorf("invalid size %q: want a byte count or a number with B, KiB, MiB or GiB", s)
	}
	*b = ByteSize(n) * mult
	return nil
}
