package topics

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
)

// This file holds a small JSON scanner that checks syntax while it finds
// value boundaries, so the decoder checks and reads a record in one pass
// instead of a json.Valid pass and a scan after it (only the small data and
// metadata objects are read twice). It accepts exactly what
// encoding/json.Valid accepts, the nesting limit included; like json.Valid
// it does not check UTF-8, which the decoder does separately. It only says
// whether the input is valid: the decoder asks encoding/json for the text of
// a syntax error, which is rare, so the scanner stays short and, up to 64
// levels of nesting, allocation free.

// maxNesting is encoding/json's nesting limit: a document with more than
// maxNesting arrays and objects open at once is not valid.
const maxNesting = 10000

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

// stringStop marks the bytes that end the plain run of a JSON string: the
// closing quote, a backslash and the control characters, which must be
// escaped.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// plainEnd returns the index of the first byte at or after i that ends the
// plain run of a string (see stringStop), or len(b). It tests eight bytes at
// a time: a byte of x is below 0x20 when x-0x20 borrows into its top bit
// while x's own top bit is clear, and equal to c when x^c is zero, tested
// the same way. A borrow only runs upward from a byte that matches, so the
// lowest flagged byte is the first match.
func plainEnd(b []byte, i int) int {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs := x^(ones*'"'), x^(ones*'\\')
		if m := ((x-ones*0x20)&^x | (q-ones)&^q | (bs-ones)&^bs) & tops; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(b) && !stringStop[b[i]] {
		i++
	}
	return i
}

// scanString returns the index just past the JSON string that starts at
// b[i] (b[i] == '"'), whether it contains escapes, and whether it is a valid
// string.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	i++
	for {
		if i = plainEnd(b, i); i >= len(b) {
			return i, escaped, false
		}
		switch b[i] {
		case '"':
			return i + 1, escaped, true
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, escaped, false
				}
				i += 6
			default:
				return i, escaped, false
			}
		default: // a control character
			return i, escaped, false
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber returns the index just past the JSON number that starts at
// b[i] (a '-' or a digit) and whether it is a valid number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. What may follow it is the
// caller's business ("01" is a valid 0 followed by a stray 1).
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b) || !isDigit(b[i]):
		return i, false
	case b[i] == '0':
		i++
	default:
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return i, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return i, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, true
}

// scanLiteral returns the index just past lit (true, false or null) at
// b[i], and whether it is there.
func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// scanKey checks an object member's `"key" :` at b[i] and returns the index
// of the member's value, after whitespace.
func scanKey(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	i, _, ok := scanString(b, i)
	if !ok {
		return i, false
	}
	if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
		return i, false
	}
	return skipWS(b, i+1), true
}

// nesting is the stack of open arrays and objects of scanValue, one bit
// each (1 for an object). The first 64 levels live in a word; deeper
// documents, which only hostile producers write, spill to a slice.
type nesting struct {
	n     int
	max   int // how many may be open
	low   uint64
	spill []uint64
}

func (s *nesting) push(object bool) bool {
	if s.n == s.max {
		return false
	}
	var bit uint64
	if object {
		bit = 1
	}
	if s.n < 64 {
		s.low = s.low&^(1<<s.n) | bit<<s.n
	} else {
		w, k := (s.n-64)/64, (s.n-64)%64
		if w == len(s.spill) {
			s.spill = append(s.spill, 0)
		}
		s.spill[w] = s.spill[w]&^(1<<k) | bit<<k
	}
	s.n++
	return true
}

// inObject reports whether the innermost open container is an object.
func (s *nesting) inObject() bool {
	top := s.n - 1
	if top < 64 {
		return s.low>>top&1 == 1
	}
	top -= 64
	return s.spill[top/64]>>(top%64)&1 == 1
}

// scanValue returns the index just past the JSON value that starts at b[i]
// (not whitespace) and whether it is a valid value. outer is the number of
// arrays and objects open around it, which counts toward the nesting limit.
func scanValue(b []byte, i, outer int) (int, bool) {
	open := nesting{max: maxNesting - outer}
	var ok bool
	for {
		// i is at the start of a value.
		if i >= len(b) {
			return i, false
		}
		switch c := b[i]; c {
		case '{', '[':
			if !open.push(c == '{') {
				return i, false
			}
			i = skipWS(b, i+1)
			if i < len(b) && b[i] == c+2 { // '{'+2 is '}', '['+2 is ']'
				open.n--
				i++
				break
			}
			if c == '{' {
				if i, ok = scanKey(b, i); !ok {
					return i, false
				}
			}
			continue
		case '"':
			if i, _, ok = scanString(b, i); !ok {
				return i, false
			}
		case 't':
			if i, ok = scanLiteral(b, i, "true"); !ok {
				return i, false
			}
		case 'f':
			if i, ok = scanLiteral(b, i, "false"); !ok {
				return i, false
			}
		case 'n':
			if i, ok = scanLiteral(b, i, "null"); !ok {
				return i, false
			}
		default:
			if c != '-' && !isDigit(c) {
				return i, false
			}
			if i, ok = scanNumber(b, i); !ok {
				return i, false
			}
		}
		// i is just past a complete value: close containers until one
		// continues with a comma, or the outermost value is complete.
		for next := false; !next; {
			if open.n == 0 {
				return i, true
			}
			if i = skipWS(b, i); i >= len(b) {
				return i, false
			}
			switch b[i] {
			case ',':
				i = skipWS(b, i+1)
				if open.inObject() {
					if i, ok = scanKey(b, i); !ok {
						return i, false
					}
				}
				next = true
			case '}', ']':
				if open.inObject() != (b[i] == '}') {
					return i, false
				}
				open.n--
				i++
			default:
				return i, false
			}
		}
	}
}

// members iterates over the members of a JSON object and checks its syntax
// on the way. The object counts as the outermost value for the nesting
// limit: that is right for the envelope, and the data and metadata objects
// it holds are only read again once the envelope is checked.
type members struct {
	b    []byte // the input, holding the object at b[i]
	i    int    // next position; just past the object once done
	more bool   // past the '{': a member was read
	bad  bool   // the object is not valid JSON
}

// next returns the next member's unescaped key and raw value. It returns
// false after the last member, and also at a syntax error, which sets m.bad.
func (m *members) next() (key, val []byte, ok bool) {
	b := m.b
	i := skipWS(b, m.i)
	if !m.more {
		// At the '{'.
		if i = skipWS(b, i+1); i < len(b) && b[i] == '}' {
			m.i = i + 1
			return nil, nil, false
		}
	} else {
		if i < len(b) && b[i] == '}' {
			m.i = i + 1
			return nil, nil, false
		}
		if i >= len(b) || b[i] != ',' {
			m.bad = true
			return nil, nil, false
		}
		i = skipWS(b, i+1)
	}
	m.more = true
	if i >= len(b) || b[i] != '"' {
		m.bad = true
		return nil, nil, false
	}
	ke, escaped, ok := scanString(b, i)
	if !ok {
		m.bad = true
		return nil, nil, false
	}
	key = b[i+1 : ke-1]
	if escaped {
		// A key with escapes ("\u0069d") is rare: let encoding/json
		// unescape it.
		var s string
		if json.Unmarshal(b[i:ke], &s) == nil {
			key = []byte(s)
		}
	}
	if i = skipWS(b, ke); i >= len(b) || b[i] != ':' {
		m.bad = true
		return nil, nil, false
	}
	i = skipWS(b, i+1)
	ve, ok := scanValue(b, i, 1)
	if !ok {
		m.bad = true
		return nil, nil, false
	}
	m.i = ve
	return key, b[i:ve], true
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

// plainString returns the content of the raw JSON string raw when it has no
// escapes, and whether it is such a string.
func plainString(raw []byte) ([]byte, bool) {
	body, escaped, ok := stringBytes(raw)
	return body, ok && !escaped
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
