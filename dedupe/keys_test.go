package dedupe

import (
	"strings"
	"testing"
)

// hashTag returns the part of key that Redis Cluster hashes.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 { // no closing brace, or an empty tag: the whole key
		return key
	}
	return key[i+1 : i+1+j]
}

func TestKeys(t *testing.T) {
	tests := []struct {
		name        string
		keys        Keys
		agg, id     string
		state, seen string
	}{
		{"default prefix", Keys{}, "u-42", "evt-1", "sw:{u-42}:state", "sw:{u-42}:seen:evt-1"},
		{"custom prefix", Keys{Prefix: "replay7"}, "u-42", "evt-1", "replay7:{u-42}:state", "replay7:{u-42}:seen:evt-1"},
		{"braces in event id", Keys{}, "u-1", "{x}", "sw:{u-1}:state", "sw:{u-1}:seen:{x}"},
		{"empty aggregate is escaped", Keys{}, "", "e", "sw:{~}:state", "sw:{~}:seen:e"},
		{"leading close brace is escaped", Keys{}, "}a", "e", "sw:{~%7Da}:state", "sw:{~%7Da}:seen:e"},
		{"leading tilde keeps its key", Keys{}, "~a", "e", "sw:{~~a}:state", "sw:{~~a}:seen:e"},
		{"leading tilde and brace", Keys{}, "~}a", "e", "sw:{~~%7Da}:state", "sw:{~~%7Da}:seen:e"},
		{"inner close brace", Keys{}, "a}b", "e", "sw:{~a%7Db}:state", "sw:{~a%7Db}:seen:e"},
		{"percent in an escaped id", Keys{}, "~%7D", "e", "sw:{~~%257D}:state", "sw:{~~%257D}:seen:e"},
		{"percent in an ordinary id", Keys{}, "a%7Db", "e", "sw:{a%7Db}:state", "sw:{a%7Db}:seen:e"},
		{"open brace in aggregate", Keys{}, "{a", "e", "sw:{{a}:state", "sw:{{a}:seen:e"},
		{"issue 12: injected seen", Keys{}, "a}:seen:b", "c", "sw:{~a%7D:seen:b}:state", "sw:{~a%7D:seen:b}:seen:c"},
		{"issue 12: injected state", Keys{}, "v", "x}:state", "sw:{v}:state", "sw:{v}:seen:x}:state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.keys.State(tt.agg); got != tt.state {
				t.Errorf("State(%q) = %q, want %q", tt.agg, got, tt.state)
			}
			if got := tt.keys.Seen(tt.agg, tt.id); got != tt.seen {
				t.Errorf("Seen(%q, %q) = %q, want %q", tt.agg, tt.id, got, tt.seen)
			}
			if got := string(tt.keys.AppendSeen([]byte("x"), tt.agg, tt.id)); got != "x"+tt.seen {
				t.Errorf("AppendSeen = %q, want %q", got, "x"+tt.seen)
			}
			st, sn := hashTag(tt.keys.State(tt.agg)), hashTag(tt.keys.Seen(tt.agg, tt.id))
			if st != sn || st == tt.keys.State(tt.agg) || !strings.HasPrefix(tt.state, tt.keys.prefix()+":{"+st+"}") {
				t.Errorf("hash tags differ or are empty: state %q, seen %q", st, sn)
			}
		})
	}
}

func TestKeysDistinctAggregatesDistinctKeys(t *testing.T) {
	aggs := []string{"", "~", "~~", "}", "~}", "}}", "a", "~a", "a}", "}a", "%", "~%", "~%7D", "%7D", "a%7D", "a}b", "~a}"}
	seen := map[string]string{}
	for _, a := range aggs {
		k := Keys{}.State(a)
		if prev, ok := seen[k]; ok {
			t.Fatalf("aggregates %q and %q share key %q", prev, a, k)
		}
		seen[k] = a
	}
}

func TestKeysValidate(t *testing.T) {
	for _, p := range []string{"", "sw", "replay:2026"} {
		if err := (Keys{Prefix: p}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"{sw", "sw}", "a{b}"} {
		if err := (Keys{Prefix: p}).Validate(); err != ErrBadPrefix {
			t.Errorf("Validate(%q) = %v, want ErrBadPrefix", p, err)
		}
	}
}

func BenchmarkAppendSeen(b *testing.B) {
	k := Keys{}
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = k.AppendSeen(buf[:0], "u-42", "evt-8f14e45f")
	}
}

// TestParseState: ParseState inverts State for ordinary and escaped
// aggregates, and refuses mark keys and keys of another prefix.
func TestParseState(t *testing.T) {
	k := Keys{Prefix: "pf"}
	for _, agg := range []string{"u-42", "", "~x", "a}b", "%}%7D", "~%25"} {
		if got, ok := k.ParseState(k.State(agg)); !ok || got != agg {
			t.Errorf("ParseState(State(%q)) = %q, %v", agg, got, ok)
		}
	}
	for _, key := range []string{k.Seen("u", "x}:state"), Keys{}.State("u"), "pf:{u}:statex", "pf:{~%zz}:state"} {
		if agg, ok := k.ParseState(key); ok {
			t.Errorf("ParseState(%q) = %q, want no state key", key, agg)
		}
	}
}

// TestKeysSlot checks Slot against the CRC16 check value of the Redis
// Cluster specification (123456789 -> 0x31C3) and slots CLUSTER KEYSLOT
// gives (foo -> 12182); TestRedisStoreClusterSlots in state compares it with
// CLUSTER KEYSLOT for ordinary and escaped IDs.
func TestKeysSlot(t *testing.T) {
	k := Keys{Prefix: "sw"}
	for agg, want := range map[string]uint16{"123456789": 0x31C3 % 16384, "foo": 12182} {
		if got := k.Slot(agg); got != want {
			t.Errorf("Slot(%q) = %d, want %d", agg, got, want)
		}
	}
	if k.Slot("u-1") != (Keys{Prefix: "other"}).Slot("u-1") {
		t.Error("the slot depends on the prefix")
	}
}
