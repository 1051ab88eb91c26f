// Package dedupe names the Redis keys that hold an aggregate's state and the
// marks of the events already applied to it, and keeps a bounded in-memory
// front of recently applied events so that most duplicates are dropped
// without a Redis round trip.
//
// The marks themselves are written by package state, in the same atomic Lua
// script as the state change they belong to (docs/contract.md, "Delivery guarantees", point 2): a
// mark exists exactly when its event's effect is durable.
package dedupe

import (
	"errors"
	"strings"
)

// DefaultPrefix is the key prefix used when Keys.Prefix is empty.
const DefaultPrefix = "sw"

// ErrBadPrefix is returned by Keys.Validate for a prefix that would break the
// Redis Cluster hash tag.
var ErrBadPrefix = errors.New("dedupe: key prefix must not contain '{' or '}'")

// Keys builds the Redis keys of one state namespace. All keys of one
// aggregate carry the aggregate as a Redis Cluster hash tag
// (sw:{u-42}:state, sw:{u-42}:seen:<eventId>), so that they sit in one slot
// and one Lua script may touch them all.
//
// The mapping (aggregate, event ID) -> key is one-to-one for arbitrary byte
// strings, and no state key equals any mark key. Redis Cluster hashes the
// bytes between the first '{' and the first '}' after it; the prefix holds
// no brace, so the tag is exactly the encoded aggregate, provided that the
// encoding holds no '}' and is never empty. An ordinary aggregate ID (not
// empty, no '}', not starting with '~') is written as it is, so its keys are
// the same as in every earlier release. Any other aggregate ID is written as
// '~' followed by the ID with '%' and '}' percent-encoded (%25, %7D): the
// leading '~' keeps the two forms apart, the percent-encoding is reversible,
// and the encoded form holds no '}', so the tag ends exactly after it. The
// event ID follows the tag and ":seen:", which ":state" never matches, and
// runs to the end of the key, so it needs no escaping at all.
//
// An ID that starts with '~' and holds neither '%' nor '}', and the empty ID,
// keep the keys they had before this encoding; an aggregate ID holding '}',
// or starting with '~' and holding '%', gets a new key (see the README on
// upgrades).
//
// Keys is a value type, safe for concurrent use.
type Keys struct {
	// Prefix namespaces every key; empty means DefaultPrefix. It must not
	// contain '{' or '}'. A fresh prefix gives a fresh state namespace (for
	// a replay, for instance).
	Prefix string
}

// Validate reports whether the prefix keeps the hash tag intact.
func (k Keys) Validate() error {
	if strings.ContainsAny(k.Prefix, "{}") {
		return ErrBadPrefix
	}
	return nil
}

// State returns the key of the hash that holds agg's state, e.g.
// "sw:{u-42}:state".
func (k Keys) State(agg string) string {
	return string(k.AppendState(make([]byte, 0, k.size(agg, len(":state"))), agg))
}

// Seen returns the key of the dedupe mark of event id of agg, e.g.
// "sw:{u-42}:seen:evt-1".
func (k Keys) Seen(agg, id string) string {
	return string(k.AppendSeen(make([]byte, 0, k.size(agg, len(":seen:")+len(id))), agg, id))
}

// AppendState appends State(agg) to dst and returns the extended buffer.
func (k Keys) AppendState(dst []byte, agg string) []byte {
	dst = k.appendTagged(dst, agg)
	return append(dst, ":state"...)
}

// AppendSeen appends Seen(agg, id) to dst and returns the extended buffer.
func (k Keys) AppendSeen(dst []byte, agg, id string) []byte {
	dst = k.appendTagged(dst, agg)
	dst = append(dst, ":seen:"...)
	return append(dst, id...)
}

func (k Keys) prefix() string {
	if k.Prefix == "" {
		return DefaultPrefix
	}
	return k.Prefix
}

// size is the length of a key of agg with a suffix of n bytes, plus room for
// the escape byte; escaped bytes grow the buffer as needed.
func (k Keys) size(agg string, n int) int {
	return len(k.prefix()) + len(":{}") + 1 + len(agg) + n
}

// ordinary reports whether agg is written into its keys unchanged.
func ordinary(agg string) bool {
	return agg != "" && agg[0] != '~' && strings.IndexByte(agg, '}') < 0
}

func (k Keys) appendTagged(dst []byte, agg string) []byte {
	dst = append(dst, k.prefix()...)
	dst = append(dst, ":{"...)
	if ordinary(agg) {
		dst = append(dst, agg...)
		return append(dst, '}')
	}
	dst = append(dst, '~')
	for i := 0; i < len(agg); i++ {
		switch c := agg[i]; c {
		case '%':
			dst = append(dst, "%25"...)
		case '}':
			dst = append(dst, "%7D"...)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '}')
}

// ParseState returns the aggregate whose State key is key, and whether key
// is one: the inverse of State, for tools that scan the state keys.
func (k Keys) ParseState(key string) (agg string, ok bool) {
	rest, ok := strings.CutPrefix(key, k.prefix()+":{")
	if !ok {
		return "", false
	}
	end := strings.IndexByte(rest, '}')
	if end < 0 || rest[end:] != "}:state" {
		return "", false
	}
	return decodeTag(rest[:end])
}

// decodeTag returns the aggregate whose hash tag (between the braces) is
// tag, and whether tag is one appendTagged writes.
func decodeTag(tag string) (string, bool) {
	if tag == "" {
		return "", false
	}
	if tag[0] != '~' {
		return tag, true
	}
	var b strings.Builder
	for i := 1; i < len(tag); i++ {
		switch {
		case tag[i] != '%':
			b.WriteByte(tag[i])
		case strings.HasPrefix(tag[i:], "%25"):
			b.WriteByte('%')
			i += 2
		case strings.HasPrefix(tag[i:], "%7D"):
			b.WriteByte('}')
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

// Slot returns the Redis Cluster hash slot of every key of agg: CRC16
// (XMODEM) of the hash tag, the encoded aggregate, modulo 16384. It is
// what CLUSTER KEYSLOT answers for State(agg) and Seen(agg, id).
func (k Keys) Slot(agg string) uint16 {
	var buf [64]byte
	key := k.appendTagged(buf[:0], agg)
	tag := key[len(k.prefix())+len(":{") : len(key)-1]
	var crc uint16
	for _, c := range tag {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
