// Interning: the decoder shares the strings that recur from record to record
// (types, sources, actions, resources, user IDs) through bounded tables.

package topics

import "hash/maphash"

// Bounds of the string tables.
const (
	// maxInterned is the length of the longest string a table keeps.
	// Longer values are seldom the recurring kind, and the bound caps
	// what a full table holds.
	maxInterned = 64
	// tableEntries is the capacity of a stringTable: far more than the
	// distinct names a workload has (loadgen's: 225 resources, 5
	// actions), and at most about 270 kB when full of 64-byte strings.
	tableEntries = 2048
	// recentSlots is the size of a recentStrings, a power of two: 64 kB
	// of slots plus the strings they hold. Measured over 6 partitions
	// with loadgen's mix of users, it finds the aggregate ID of 86% of
	// the events at 10,000 users and of 17% at 1,000,000 (1,024 slots:
	// 65% and 14%).
	recentSlots = 4096
)

// stringTable interns the values of a field with few distinct values: it
// keeps the first tableEntries distinct strings of up to maxInterned bytes
// it is given, and then stops growing. It never evicts, so a field whose
// values are unbounded costs one full table, not a leak, and the values that
// came first keep being shared. The zero value is an empty table.
type stringTable struct {
	m map[string]string
}

// value is stringValue through the table. A string with escapes, which is
// rare, is not looked up.
func (t *stringTable) value(raw []byte) (string, bool) {
	if body, ok := plainString(raw); ok {
		return t.get(body), true
	}
	return stringValue(raw)
}

func (t *stringTable) get(b []byte) string {
	if s, ok := t.m[string(b)]; ok { // the lookup does not allocate
		return s
	}
	s := string(b)
	if len(b) > 0 && len(b) <= maxInterned && len(t.m) < tableEntries {
		if t.m == nil {
			t.m = make(map[string]string)
		}
		t.m[s] = s
	}
	return s
}

// recentStrings shares the strings of a field with as many values as there
// are users: a direct-mapped cache of recentSlots strings, each the last
// one its hash chose. A user's events that arrive close together share one
// string, and the cache never holds more than recentSlots strings however
// many users there are; a stringTable would fill up with the first users
// seen and keep them. A miss costs a hash on top of the allocation it
// would have cost anyway. The zero value is an empty cache.
type recentStrings struct {
	seed  maphash.Seed
	slots []string
}

// value is stringValue through the cache. A string with escapes, which is
// rare, is not looked up.
func (c *recentStrings) value(raw []byte) (string, bool) {
	if body, ok := plainString(raw); ok {
		return c.get(body), true
	}
	return stringValue(raw)
}

func (c *recentStrings) get(b []byte) string {
	if len(b) == 0 || len(b) > maxInterned {
		return string(b)
	}
	if c.slots == nil {
		c.seed = maphash.MakeSeed()
		c.slots = make([]string, recentSlots)
	}
	slot := &c.slots[maphash.Bytes(c.seed, b)&(recentSlots-1)]
	if *slot != string(b) {
		*slot = string(b)
	}
	return *slot
}
