package sequencing

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var start = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestClassify(t *testing.T) {
	tests := []struct {
		expected, seq int64
		want          Decision
	}{
		{1, 1, DecisionApply},        // the expected one
		{1, 0, DecisionApply},        // unsequenced: applied on arrival
		{5, 0, DecisionApply},        // even with a gap open
		{1, 2, DecisionBuffer},       // ahead
		{1, 1 << 62, DecisionBuffer}, // far ahead
		{5, 4, DecisionBehind},       // already passed
		{5, 1, DecisionBehind},
		{1, -1, DecisionInvalid},
	}
	for _, tt := range tests {
		if got := Classify(tt.expected, tt.seq); got != tt.want {
			t.Errorf("Classify(%d, %d) = %v, want %v", tt.expected, tt.seq, got, tt.want)
		}
	}
	if Expected(0) != 1 || Expected(41) != 42 {
		t.Error("Expected is not lastSequence+1")
	}
}

func TestConfig(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, c := range []Config{{MaxPerAggregate: -1}, {MaxPerPartition: -1}, {MaxBytes: -1}, {GapTimeout: -time.Second}} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
	if got := NewBuffer[int](Config{MaxBytes: 5}).cfg; got != (Config{1000, 10000, 5, 30 * time.Second}) {
		t.Errorf("zero fields not defaulted: %+v", got)
	}
}

func TestAdd(t *testing.T) {
	cfg := Config{MaxPerAggregate: 3, MaxPerPartition: 5, MaxBytes: 100, GapTimeout: time.Second}
	type add struct {
		agg  string
		seq  int64
		id   string
		size int
		want AddResult
	}
	tests := []struct {
		name string
		adds []add
	}{
		{"buffered", []add{{"a", 3, "x3", 10, Buffered}, {"a", 2, "x2", 10, Buffered}}},
		{"same id same seq", []add{{"a", 3, "x3", 10, Buffered}, {"a", 3, "x3", 10, Duplicate}}},
		{"same id other seq", []add{{"a", 3, "x3", 10, Buffered}, {"a", 4, "x3", 10, Duplicate}}},
		{"same id other aggregate", []add{{"a", 3, "x3", 10, Buffered}, {"b", 3, "x3", 10, Buffered}}},
		{"other id same seq", []add{{"a", 3, "x3", 10, Buffered}, {"a", 3, "y3", 10, Conflict}}},
		{"aggregate count", []add{
			{"a", 2, "x2", 1, Buffered}, {"a", 3, "x3", 1, Buffered}, {"a", 4, "x4", 1, Buffered},
			{"a", 5, "x5", 1, FullAggregate}, {"a", 4, "x4", 1, Duplicate}, {"b", 5, "y5", 1, Buffered},
		}},
		{"partition count", []add{
			{"a", 2, "a2", 1, Buffered}, {"b", 2, "b2", 1, Buffered}, {"c", 2, "c2", 1, Buffered},
			{"d", 2, "d2", 1, Buffered}, {"e", 2, "e2", 1, Buffered}, {"f", 2, "f2", 1, FullPartition},
		}},
		{"partition bytes", []add{
			{"a", 2, "a2", 60, Buffered}, {"b", 2, "b2", 41, FullPartition}, {"b", 2, "b2", 40, Buffered},
			{"c", 2, "c2", 0, Buffered},
		}},
		{"larger than MaxBytes", []add{{"a", 2, "a2", 101, FullPartition}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer[string](cfg)
			var n int
			var bytes int64
			for i, a := range tt.adds {
				if got := b.Add(a.agg, a.seq, a.id, int64(i), a.size, start, a.id); got != a.want {
					t.Fatalf("add %d %+v = %v, want %v", i, a, got, a.want)
				}
				if a.want == Buffered {
					n++
					bytes += int64(a.size)
				}
				if b.Len() != n || b.Bytes() != bytes {
					t.Fatalf("after add %d: Len %d Bytes %d, want %d %d", i, b.Len(), b.Bytes(), n, bytes)
				}
			}
		})
	}
}

func TestPop(t *testing.T) {
	b := NewBuffer[string](DefaultConfig())
	for _, seq := range []int64{5, 3, 4, 7} {
		id := string(rune('a' + seq))
		if r := b.Add("a", seq, id, 100+seq, 10, start, id); r != Buffered {
			t.Fatalf("Add %d = %v", seq, r)
		}
	}
	if low, ok := b.Lowest("a"); !ok || low != 3 {
		t.Errorf("Lowest = %d, %v; want 3", low, ok)
	}
	if _, ok := b.Pop("a", 2); ok {
		t.Error("Pop of a missing sequence succeeded")
	}
	if _, ok := b.Pop("b", 3); ok {
		t.Error("Pop of an unknown aggregate succeeded")
	}
	var got []string
	for seq := int64(3); ; seq++ {
		it, ok := b.Pop("a", seq)
		if !ok {
			break
		}
		got = append(got, it)
	}
	if want := []string{"d", "e", "f"}; !slices.Equal(got, want) {
		t.Errorf("drained %v, want %v", got, want)
	}
	if b.Len() != 1 || b.Bytes() != 10 || aggregates(b) != 1 || buffered(b, "a") != 1 {
		t.Errorf("Len %d Bytes %d Aggregates %d", b.Len(), b.Bytes(), aggregates(b))
	}
	if o, _, ok := b.MinOffset(); !ok || o != 107 {
		t.Errorf("MinOffset = %d, %v; want 107", o, ok)
	}
	if it, ok := b.Pop("a", 7); !ok || it != "h" {
		t.Errorf("Pop(7) = %q, %v", it, ok)
	}
	if b.Len() != 0 || aggregates(b) != 0 {
		t.Errorf("not empty: Len %d Aggregates %d", b.Len(), aggregates(b))
	}
	if _, _, ok := b.MinOffset(); ok {
		t.Error("MinOffset of an empty buffer")
	}
	if _, ok := b.Lowest("a"); ok {
		t.Error("Lowest of a drained aggregate")
	}
}

func TestPopFromTheMiddle(t *testing.T) {
	b := NewBuffer[int64](DefaultConfig())
	for _, seq := range []int64{2, 4, 6} {
		b.Add("a", seq, string(rune('a'+seq)), seq, 1, start, seq)
	}
	if it, ok := b.Pop("a", 4); !ok || it != 4 {
		t.Fatalf("Pop(4) = %d, %v", it, ok)
	}
	if low, _ := b.Lowest("a"); low != 2 || buffered(b, "a") != 2 {
		t.Errorf("Lowest %d, Buffered %d", low, buffered(b, "a"))
	}
	if o, _, _ := b.MinOffset(); o != 2 {
		t.Errorf("MinOffset = %d", o)
	}
}

func TestGapTimer(t *testing.T) {
	const timeout = 30 * time.Second
	b := NewBuffer[int](Config{GapTimeout: timeout})
	at := func(d time.Duration) time.Time { return start.Add(d) }
	expired := func(d time.Duration) []string { return b.Expired(at(d), nil) }

	b.Add("a", 3, "a3", 1, 1, at(0), 0)              // opens a's gap at 0
	b.Add("a", 5, "a5", 2, 1, at(10*time.Second), 0) // a's gap is already open
	b.Add("b", 2, "b2", 3, 1, at(5*time.Second), 0)  // opens b's gap at 5s
	if got := expired(timeout - time.Nanosecond); len(got) != 0 {
		t.Errorf("expired before the timeout: %v", got)
	}
	if got := expired(timeout); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Expired(at timeout) = %v, want [a]", got)
	}
	if got := expired(time.Hour); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Expired = %v, want oldest first [a b]", got)
	}
	if agg, ok := b.Oldest(); !ok || agg != "a" {
		t.Errorf("Oldest = %q, %v", agg, ok)
	}

	// Filling part of a's gap does not restart its timer.
	b.Pop("a", 3)
	if got := expired(timeout); !slices.Equal(got, []string{"a"}) {
		t.Errorf("a's timer moved on Pop: Expired(at timeout) = %v", got)
	}
	// Giving up a's gap with 5 still buffered: the gap before 5 has been
	// open since 5 was buffered (10s), not since the give-up. Before,
	// the timer restarted, and a producer skipping every other sequence
	// held its first record for one timeout per gap.
	b.GiveUp("a")
	if got := expired(10*time.Second + timeout - 1); slices.Contains(got, "a") {
		t.Errorf("a expired before 5 was held for the timeout: %v", got)
	}
	if got := expired(10*time.Second + timeout); !slices.Contains(got, "a") {
		t.Errorf("a did not expire once 5 was held for the timeout: %v", got)
	}
	if !b.GapExpired("a", at(10*time.Second+timeout)) || b.GapExpired("a", at(10*time.Second+timeout-1)) {
		t.Error("GapExpired disagrees with Expired")
	}
	// A drained aggregate forgets its timer; a later Add opens a new gap.
	b.Pop("a", 5)
	b.GiveUp("a") // nothing buffered: no effect
	if got := expired(time.Hour); slices.Contains(got, "a") {
		t.Errorf("a drained aggregate still has a timer: %v", got)
	}
	b.Add("a", 9, "a9", 4, 1, at(time.Minute), 0)
	if got := expired(time.Minute + timeout - 1); slices.Contains(got, "a") {
		t.Errorf("new gap of a expired before 1m + timeout: %v", got)
	}
	if got := expired(time.Minute + timeout); !slices.Contains(got, "a") {
		t.Errorf("new gap of a, opened at 1m, did not expire at 1m + timeout: %v", got)
	}
	dst := b.Expired(at(time.Hour), []string{"keep"})
	if !slices.Equal(dst, []string{"keep", "b", "a"}) {
		t.Errorf("Expired appended %v", dst)
	}
}

func TestDropAndReset(t *testing.T) {
	b := NewBuffer[int](DefaultConfig())
	b.Add("a", 2, "a2", 10, 5, start, 0)
	b.Add("a", 3, "a3", 11, 5, start, 0)
	b.Add("b", 2, "b2", 12, 7, start, 0)
	b.Drop("a")
	b.Drop("zzz")
	if b.Len() != 1 || b.Bytes() != 7 || aggregates(b) != 1 {
		t.Errorf("after Drop: Len %d Bytes %d Aggregates %d", b.Len(), b.Bytes(), aggregates(b))
	}
	if o, _, ok := b.MinOffset(); !ok || o != 12 {
		t.Errorf("MinOffset = %d, %v; want 12", o, ok)
	}
	b.Reset()
	if _, _, ok := b.MinOffset(); ok || b.Len() != 0 || b.Bytes() != 0 || aggregates(b) != 0 {
		t.Error("Reset left something")
	}
	if r := b.Add("a", 2, "a2", 10, 5, start, 0); r != Buffered {
		t.Errorf("Add after Reset = %v", r)
	}
}

func TestPopReleasesItems(t *testing.T) {
	b := NewBuffer[*int](DefaultConfig())
	v := new(int)
	b.Add("a", 2, "a2", 1, 1, start, v)
	b.Add("a", 3, "a3", 2, 1, start, v)
	b.Pop("a", 2)
	a := b.aggs["a"]
	for _, e := range a.entries[:a.head] {
		if e.item != nil {
			t.Error("a popped entry still references its item")
		}
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[string]string{
		DecisionApply.String(): "apply", DecisionBuffer.String(): "buffer", DecisionBehind.String(): "behind",
		DecisionInvalid.String(): "invalid", Decision(9).String(): "Decision(9)",
		Buffered.String(): "buffered", Duplicate.String(): "duplicate", Conflict.String(): "conflict",
		FullAggregate.String(): "full_aggregate", FullPartition.String(): "full_partition", AddResult(9).String(): "AddResult(9)",
	} {
		if v != want {
			t.Errorf("%q, want %q", v, want)
		}
	}
}

// buffered returns the number of events buffered for agg.
func buffered[T any](b *Buffer[T], agg string) int {
	n := 0
	for a := range b.All() {
		if a == agg {
			n++
		}
	}
	return n
}

// aggregates returns the number of aggregates with buffered events.
func aggregates[T any](b *Buffer[T]) int {
	seen := map[string]bool{}
	for a := range b.All() {
		seen[a] = true
	}
	return len(seen)
}
