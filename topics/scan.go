package topics

import (
	"bytes"
	"encoding/json"
)

// This file holds a small scanner over JSON that encoding/json has already
// validated (json.Valid). It only finds value boundaries; it never has to
// report a syntax error, which keeps it short and allocation free.

// skipWS returns the index of the first non-whitespace byte of b at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index just past the JSON string that starts at b[i]
// (b[i] == '"').
func stringEnd(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		q := i + j
		// The quote is escaped if an odd number of backslashes precede it.
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
}

// valueEnd returns the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// members iterates over the members of a valid JSON object.
type members struct {
	b []byte // the object, from '{' to '}'
	i int
}

// next returns the next member's unescaped key and raw value.
func (m *members) next() (key, val []byte, ok bool) {
	i := skipWS(m.b, m.i)
	if i >= len(m.b) || m.b[i] == '}' {
		return nil, nil, false
	}
	if m.b[i] == ',' || m.b[i] == '{' {
		i = skipWS(m.b, i+1)
		if m.b[i] == '}' {
			return nil, nil, false
		}
	}
	ke := stringEnd(m.b, i)
	key = m.b[i+1 : ke-1]
	if bytes.IndexByte(key, '\\') >= 0 {
		// A key with escapes ("\u0069d") is rare: let encoding/json
		// unescape it.
		var s string
		if json.Unmarshal(m.b[i:ke], &s) == nil {
			key = []byte(s)
		}
	}
	i = skipWS(m.b, ke)  // ':'
	i = skipWS(m.b, i+1) // value
	ve := valueEnd(m.b, i)
	m.i = ve
	return key, m.b[i:ve], true
}

// isNull reports whether raw, a raw JSON value or nil, is absent or null.
func isNull(raw []byte) bool {
	return raw == nil || (len(raw) == 4 && string(raw) == "null")
}

// stringBytes returns the content of the raw JSON string raw and whether raw
// is a string at all. The content is still escaped when escaped is true.
func stringBytes(raw []byte) (body []byte, escaped, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false, false
	}
	body = raw[1 : len(raw)-1]
	return body, bytes.IndexByte(body, '\\') >= 0, true
}

// stringValue converts the raw JSON string raw to a Go string.
func stringValue(raw []byte) (string, bool) {
	body, escaped, ok := stringBytes(raw)
	if !ok {
		return "", false
	}
	if !escaped {
		return string(body), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// intValue parses b as a decimal integer: an optional '-' and digits, no
// fraction and no exponent. isInt reports that b has that form; fits that its
// value fits in an int64.
func intValue(b []byte) (n int64, isInt, fits bool) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 {
		return 0, false, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	// Skip leading zeros so that the length check below is exact.
	for len(digits) > 1 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(digits) > 19 {
		return 0, true, false
	}
	var u uint64 // 19 digits always fit in a uint64
	for _, c := range digits {
		u = u*10 + uint64(c-'0')
	}
	switch {
	case !neg && u <= 1<<63-1:
		return int64(u), true, true
	case neg && u <= 1<<63:
		return -int64(u), true, true // -int64(1<<63) wraps to MinInt64
	}
	return 0, true, false
}
