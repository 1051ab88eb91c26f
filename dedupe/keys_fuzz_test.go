// Injectivity of the key encoding: every key parses back to the one
// (kind, aggregate, event ID) it was built from, and its Redis Cluster hash
// tag is exactly the encoded aggregate.
package dedupe

import (
	"strings"
	"testing"
)

// parsedKey is what a key decodes to.
type parsedKey struct {
	prefix, agg, id string
	seen            bool
}

// parseKey inverts Keys.State and Keys.Seen. That such an inverse exists is
// the proof that the encoding is one-to-one: two distinct inputs with equal
// keys would have to parse to one value.
func parseKey(t *testing.T, key string) parsedKey {
	t.Helper()
	open := strings.IndexByte(key, '{')
	if open < 1 || key[open-1] != ':' {
		t.Fatalf("key %q: no ':{' after the prefix", key)
	}
	p := parsedKey{prefix: key[:open-1]}
	rest := key[open+1:]
	end := strings.IndexByte(rest, '}')
	if end < 1 {
		t.Fatalf("key %q: empty or unclosed hash tag", key)
	}
	tag, rest := rest[:end], rest[end+1:]
	agg, ok := decodeTag(tag)
	if !ok {
		t.Fatalf("key %q: bare '%%' in an escaped tag", key)
	}
	p.agg = agg
	switch {
	case rest == ":state":
	case strings.HasPrefix(rest, ":seen:"):
		p.seen, p.id = true, rest[len(":seen:"):]
	default:
		t.Fatalf("key %q: unknown suffix %q", key, rest)
	}
	return p
}

func FuzzKeys(f *testing.F) {
	seeds := [][4]string{
		{"a", "b}:seen:c", "a}:seen:b", "c"}, // issue 12, finding 1
		{"v", "x}:state", "v}:seen:x", ""},   // finding 2
		{"w}:seen:y", "", "w", "y}:state"},
		{"", "", "~", ""},
		{"}", "e", "~}", "e"},
		{"~%7D", "e", "~}", "e"},
		{"%", "%", "~%", "%"},
		{"{a}", "{b}", "{a", "}{b}"},
		{"u-42", "evt-1", "u-42", "evt-1"},
		{"\x00\xff", "\xff", "~\x00\xff", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, agg1, id1, agg2, id2 string) {
		k := Keys{}
		s1, s2 := k.Seen(agg1, id1), k.Seen(agg2, id2)
		t1, t2 := k.State(agg1), k.State(agg2)
		if (s1 == s2) != (agg1 == agg2 && id1 == id2) {
			t.Fatalf("Seen(%q,%q)=%q, Seen(%q,%q)=%q", agg1, id1, s1, agg2, id2, s2)
		}
		if (t1 == t2) != (agg1 == agg2) {
			t.Fatalf("State(%q)=%q, State(%q)=%q", agg1, t1, agg2, t2)
		}
		for _, pair := range [][2]string{{s1, t2}, {s2, t1}} {
			if pair[0] == pair[1] {
				t.Fatalf("a mark key equals a state key: %q", pair[0])
			}
		}
		for _, c := range []struct {
			key, agg, id string
			seen         bool
		}{{s1, agg1, id1, true}, {s2, agg2, id2, true}, {t1, agg1, "", false}, {t2, agg2, "", false}} {
			p := parseKey(t, c.key)
			if p != (parsedKey{prefix: DefaultPrefix, agg: c.agg, id: c.id, seen: c.seen}) {
				t.Fatalf("key %q parses to %+v, built from agg %q id %q", c.key, p, c.agg, c.id)
			}
		}
		// One aggregate, one slot: the tag of every key is the same,
		// non-empty, and ends before the suffix.
		if h := hashTag(s1); h != hashTag(t1) || h == s1 || !strings.HasPrefix(t1, "sw:{"+h+"}") {
			t.Fatalf("hash tags of %q and %q differ or are empty", s1, t1)
		}
		if ordinary(agg1) && (t1 != "sw:{"+agg1+"}:state" || s1 != "sw:{"+agg1+"}:seen:"+id1) {
			t.Fatalf("ordinary aggregate %q changed keys: %q, %q", agg1, t1, s1)
		}
	})
}
