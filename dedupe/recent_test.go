package dedupe

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

func TestRecent(t *testing.T) {
	r := NewRecent(3)
	if r.Contains("u1", "e1") {
		t.Fatal("empty Recent contains a pair")
	}
	r.Add("u1", "e1")
	r.Add("u1", "e2")
	r.Add("u2", "e1")
	r.Add("u1", "e1") // already held: no new slot
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3", r.Len())
	}
	for _, p := range [][2]string{{"u1", "e1"}, {"u1", "e2"}, {"u2", "e1"}} {
		if !r.Contains(p[0], p[1]) {
			t.Errorf("Contains(%q, %q) = false, want true", p[0], p[1])
		}
	}
	if r.Contains("u2", "e2") {
		t.Error("Contains(u2, e2) = true for a pair never added")
	}

	r.Add("u3", "e1") // evicts the oldest, (u1, e1)
	if r.Len() != 3 {
		t.Fatalf("Len after eviction = %d, want 3", r.Len())
	}
	if r.Contains("u1", "e1") {
		t.Error("oldest pair (u1, e1) not evicted")
	}
	if !r.Contains("u1", "e2") || !r.Contains("u3", "e1") {
		t.Error("eviction removed the wrong pair")
	}
	r.Add("u4", "e1") // evicts (u1, e2)
	r.Add("u5", "e1") // evicts (u2, e1)
	r.Add("u6", "e1") // wraps around: evicts (u3, e1)
	for _, agg := range []string{"u4", "u5", "u6"} {
		if !r.Contains(agg, "e1") {
			t.Errorf("after wrap-around Contains(%q, e1) = false, want true", agg)
		}
	}
	if r.Contains("u1", "e2") || r.Contains("u2", "e1") || r.Contains("u3", "e1") {
		t.Error("after wrap-around an evicted pair is still held")
	}

	r.Reset()
	if r.Len() != 0 || r.Contains("u6", "e1") {
		t.Fatal("Reset kept pairs")
	}
	r.Add("u7", "e1")
	if !r.Contains("u7", "e1") || r.Len() != 1 {
		t.Fatal("Recent unusable after Reset")
	}
}

func TestRecentPairsDoNotCollide(t *testing.T) {
	r := NewRecent(10)
	r.Add("a\x00b", "c")
	if r.Contains("a", "b\x00c") || r.Contains("a\x00", "bc") || r.Contains("a\x00bc", "") {
		t.Fatal("distinct pairs with the same concatenation collide")
	}
	if !r.Contains("a\x00b", "c") {
		t.Fatal("added pair missing")
	}
}

// TestRecentHashCollisions gives every pair the same hash: a pair is still
// held only when it was added, and one that cannot be indexed is reported
// missing, never present.
func TestRecentHashCollisions(t *testing.T) {
	r := NewRecent(2)
	r.hashOf = func(string, string) uint64 { return 7 }
	r.Add("u1", "e1")
	if r.Contains("u2", "e2") || r.Contains("u1", "e2") || r.Contains("u2", "e1") {
		t.Fatal("a pair never added is held: its hash collides with a held pair's")
	}
	r.Add("u2", "e2") // collides: not indexed, so not held
	if r.Contains("u2", "e2") {
		t.Fatal("a colliding pair is held although its slot holds another pair")
	}
	if !r.Contains("u1", "e1") || r.Len() != 1 {
		t.Fatalf("the first pair must stay held alone (Len %d)", r.Len())
	}
}

func TestRecentZeroCapacity(t *testing.T) {
	for _, c := range []int{0, -1} {
		r := NewRecent(c)
		r.Add("u", "e")
		if r.Contains("u", "e") || r.Len() != 0 {
			t.Errorf("NewRecent(%d) holds a pair", c)
		}
	}
}

func TestRecentAllocations(t *testing.T) {
	r := NewRecent(1024)
	r.Add("u-42", "evt-8f14e45f-0000-4000-8000-000000000001")
	if n := testing.AllocsPerRun(100, func() {
		r.Contains("u-42", "evt-8f14e45f-0000-4000-8000-000000000001")
		r.Contains("u-43", "evt-8f14e45f-0000-4000-8000-000000000001")
	}); n != 0 {
		t.Errorf("Contains allocates %.1f times, want 0", n)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		i++
		r.Add("u-42", ids[i%len(ids)])
	}); n != 0 {
		t.Errorf("Add allocates %.1f times, want 0", n)
	}
}

// TestRecentMatchesModel checks Recent against a plain FIFO list over random
// adds, lookups and resets, with pairs whose concatenations coincide.
func TestRecentMatchesModel(t *testing.T) {
	parts := []string{"", "a", "b", "ab", "a\x00", "\x00b"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, capacity := range []int{1, 2, 5, 17} {
		r := NewRecent(capacity)
		var model [][2]string // oldest first
		held := func(p [2]string) bool { return slices.Contains(model, p) }
		for step := range 5000 {
			p := [2]string{parts[rng.IntN(len(parts))], parts[rng.IntN(len(parts))]}
			switch op := rng.IntN(100); {
			case op == 0:
				r.Reset()
				model = model[:0]
			case op < 50:
				r.Add(p[0], p[1])
				if !held(p) {
					if len(model) == capacity {
						model = model[1:]
					}
					model = append(model, p)
				}
			default:
				if got, want := r.Contains(p[0], p[1]), held(p); got != want {
					t.Fatalf("capacity %d, step %d: Contains(%q, %q) = %v, want %v", capacity, step, p[0], p[1], got, want)
				}
			}
			if r.Len() != len(model) {
				t.Fatalf("capacity %d, step %d: Len = %d, want %d", capacity, step, r.Len(), len(model))
			}
		}
	}
}

var ids = func() []string {
	s := make([]string, 1<<17)
	for i := range s {
		s[i] = "evt-" + strconv.Itoa(i) + "-8f14e45f-0000-4000-8000"
	}
	return s
}()

// BenchmarkRecentMissAdd measures one partition's steady state for new
// events: each is looked up, missed, and added to a full Recent, which evicts
// the oldest pair.
func BenchmarkRecentMissAdd(b *testing.B) {
	for _, capacity := range []int{1 << 10, 10_000, 1 << 16} {
		b.Run("cap="+strconv.Itoa(capacity), func(b *testing.B) {
			r := NewRecent(capacity)
			for i := range capacity {
				r.Add("u-0", ids[i])
			}
			i := 0
			for b.Loop() {
				i++
				id := ids[i%len(ids)] // len(ids) > capacity: always a miss
				if r.Contains("u-42", id) {
					b.Fatal("unexpected hit")
				}
				r.Add("u-42", id)
			}
		})
	}
}

// BenchmarkRecentContainsHit measures the lookup of a redelivered event.
func BenchmarkRecentContainsHit(b *testing.B) {
	r := NewRecent(1 << 16)
	for i := range 1 << 16 {
		r.Add("u-42", ids[i])
	}
	i := 0
	for b.Loop() {
		i++
		if !r.Contains("u-42", ids[i&(1<<16-1)]) {
			b.Fatal("miss")
		}
	}
}

// BenchmarkRecentPartitions is the runtime's use: one full Recent per
// partition (6 of the default 10,000 pairs), each event looked up, missed
// and added, its IDs from a pool far larger than the caches hold, so that
// evicting a pair reads memory no longer in the CPU caches.
func BenchmarkRecentPartitions(b *testing.B) {
	const partitions, capacity, pool = 6, 10_000, 1 << 20
	users := make([]string, 10_000)
	for i := range users {
		users[i] = "u-" + strconv.Itoa(i)
	}
	events := make([]string, pool)
	for i := range events {
		events[i] = "evt-" + strconv.Itoa(i) + "-8f14e45f-0000-4000-8000"
	}
	rs := make([]*Recent, partitions)
	for p := range rs {
		rs[p] = NewRecent(capacity)
	}
	i := 0
	for b.Loop() {
		i++
		r, agg, id := rs[i%partitions], users[i%len(users)], events[i%pool]
		if !r.Contains(agg, id) {
			r.Add(agg, id)
		}
	}
}
