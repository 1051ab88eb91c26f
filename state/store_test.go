package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newStoreFunc returns an empty store whose marks expire after ttl, and a
// function that moves the store's clock forward (a no-op for a store on the
// wall clock).
type newStoreFunc func(t *testing.T, ttl time.Duration) (s Store, advance func(time.Duration))

// testStore is the conformance suite every Store passes.
func testStore(t *testing.T, newStore newStoreFunc) {
	ctx := context.Background()
	fetch := func(t *testing.T, s Store, aggs []string, marks ...Mark) ([]Snapshot, []bool) {
		t.Helper()
		snaps, exists, err := s.Fetch(ctx, aggs, marks)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(snaps) != len(aggs) || len(exists) != len(marks) {
			t.Fatalf("Fetch returned %d snapshots, %d marks; want %d, %d", len(snaps), len(exists), len(aggs), len(marks))
		}
		return snaps, exists
	}
	commit := func(t *testing.T, s Store, writes ...Write) []Outcome {
		t.Helper()
		out, err := s.Commit(ctx, writes)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if len(out) != len(writes) {
			t.Fatalf("Commit returned %d outcomes for %d writes", len(out), len(writes))
		}
		return out
	}
	wantState := func(t *testing.T, s Store, agg string, version int64, data string) {
		t.Helper()
		snaps, _ := fetch(t, s, []string{agg})
		if snaps[0].Version != version || string(snaps[0].Data) != data {
			t.Fatalf("state of %s = v%d %q, want v%d %q", agg, snaps[0].Version, snaps[0].Data, version, data)
		}
	}
	wantMarks := func(t *testing.T, s Store, agg string, want map[string]bool) {
		t.Helper()
		var marks []Mark
		for id := range want {
			marks = append(marks, Mark{agg, id})
		}
		_, exists := fetch(t, s, nil, marks...)
		for i, m := range marks {
			if exists[i] != want[m.EventID] {
				t.Errorf("mark %s/%s exists = %v, want %v", agg, m.EventID, exists[i], want[m.EventID])
			}
		}
	}

	t.Run("absent", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		snaps, exists := fetch(t, s, []string{"u-1", "u-2"}, Mark{"u-1", "e1"})
		for _, sn := range snaps {
			if sn.Version != 0 || sn.Data != nil {
				t.Errorf("absent snapshot = %+v, want version 0 and nil data", sn)
			}
		}
		if exists[0] {
			t.Error("absent mark reported as existing")
		}
	})

	t.Run("empty", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		fetch(t, s, nil)
		commit(t, s)
	})

	t.Run("commit then fetch", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		out := commit(t, s, Write{Aggregate: "u-1", Expect: 0, Data: []byte(`{"n":2}`), Marks: []string{"e1", "e2"}})
		if out[0] != Committed {
			t.Fatalf("outcome = %v, want committed", out[0])
		}
		wantState(t, s, "u-1", 1, `{"n":2}`)
		wantMarks(t, s, "u-1", map[string]bool{"e1": true, "e2": true, "e3": false})
		wantMarks(t, s, "u-2", map[string]bool{"e1": false}) // marks belong to their aggregate

		out = commit(t, s, Write{Aggregate: "u-1", Expect: 1, Data: []byte(`{"n":3}`), Marks: []string{"e3"}})
		if out[0] != Committed {
			t.Fatalf("second outcome = %v, want committed", out[0])
		}
		wantState(t, s, "u-1", 2, `{"n":3}`)
	})

	t.Run("version conflict fences a stale writer", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		commit(t, s, Write{Aggregate: "u-1", Expect: 0, Data: []byte("v1"), Marks: []string{"e1"}})
		// Two owners (the new one and a zombie) both loaded version 1.
		snaps, _ := fetch(t, s, []string{"u-1"})
		loaded := snaps[0].Version
		first := commit(t, s, Write{Aggregate: "u-1", Expect: loaded, Data: []byte("new owner"), Marks: []string{"e2"}})
		second := commit(t, s, Write{Aggregate: "u-1", Expect: loaded, Data: []byte("zombie"), Marks: []string{"e2", "e3"}})
		if first[0] != Committed || second[0] != VersionConflict {
			t.Fatalf("outcomes = %v, %v; want committed, version_conflict", first[0], second[0])
		}
		// Nothing of the zombie's write is applied: neither state nor marks.
		wantState(t, s, "u-1", 2, "new owner")
		wantMarks(t, s, "u-1", map[string]bool{"e1": true, "e2": true, "e3": false})

		ahead := commit(t, s, Write{Aggregate: "u-1", Expect: 5, Data: []byte("ahead"), Marks: []string{"e4"}})
		if ahead[0] != VersionConflict {
			t.Fatalf("write expecting a future version: %v, want version_conflict", ahead[0])
		}
		wantMarks(t, s, "u-1", map[string]bool{"e4": false})
	})

	t.Run("retry of an applied write is committed", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		w := Write{Aggregate: "u-1", Expect: 0, Data: []byte("v1"), Marks: []string{"e1", "e2"}}
		for i := range 2 {
			if out := commit(t, s, w); out[0] != Committed {
				t.Fatalf("attempt %d: %v, want committed", i+1, out[0])
			}
		}
		wantState(t, s, "u-1", 1, "v1")
		// The same version with other data, or fewer marks, is not a retry.
		other := []Write{
			{Aggregate: "u-1", Expect: 0, Data: []byte("v1'"), Marks: []string{"e1", "e2"}},
			{Aggregate: "u-1", Expect: 0, Data: []byte("v1"), Marks: []string{"e1", "e2", "e9"}},
		}
		for _, w := range other {
			if out := commit(t, s, w); out[0] != VersionConflict {
				t.Errorf("write %q %v: %v, want version_conflict", w.Data, w.Marks, out[0])
			}
		}
		wantMarks(t, s, "u-1", map[string]bool{"e9": false})
	})

	t.Run("mark conflict", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		commit(t, s, Write{Aggregate: "u-1", Expect: 0, Data: []byte("v1"), Marks: []string{"e1"}})
		out := commit(t, s, Write{Aggregate: "u-1", Expect: 1, Data: []byte("v2"), Marks: []string{"e2", "e1"}})
		if out[0] != MarkConflict {
			t.Fatalf("outcome = %v, want mark_conflict", out[0])
		}
		wantState(t, s, "u-1", 1, "v1")
		wantMarks(t, s, "u-1", map[string]bool{"e1": true, "e2": false})
	})

	t.Run("batch of outcomes in order", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		commit(t, s,
			Write{Aggregate: "u-1", Expect: 0, Data: []byte("a1"), Marks: []string{"e1"}},
			Write{Aggregate: "u-2", Expect: 0, Data: []byte("b1"), Marks: []string{"e1"}},
		)
		out := commit(t, s,
			Write{Aggregate: "u-1", Expect: 0, Data: []byte("stale"), Marks: []string{"e2"}},
			Write{Aggregate: "u-2", Expect: 1, Data: []byte("b2"), Marks: []string{"e1"}},
			Write{Aggregate: "u-3", Expect: 0, Data: []byte("c1"), Marks: []string{"e1"}},
			Write{Aggregate: "u-3", Expect: 1, Data: []byte("c2"), Marks: []string{"e2"}},
			Write{Aggregate: "u-4", Expect: 0, Data: []byte("d1")},
		)
		want := []Outcome{VersionConflict, MarkConflict, Committed, Committed, Committed}
		for i := range want {
			if out[i] != want[i] {
				t.Errorf("outcome %d = %v, want %v", i, out[i], want[i])
			}
		}
		snaps, _ := fetch(t, s, []string{"u-1", "u-2", "u-3", "u-4"})
		wantSnaps := []Snapshot{{1, []byte("a1")}, {1, []byte("b1")}, {2, []byte("c2")}, {1, []byte("d1")}}
		for i, w := range wantSnaps {
			if snaps[i].Version != w.Version || !bytes.Equal(snaps[i].Data, w.Data) {
				t.Errorf("snapshot %d = v%d %q, want v%d %q", i, snaps[i].Version, snaps[i].Data, w.Version, w.Data)
			}
		}
	})

	t.Run("large batch", func(t *testing.T) {
		// More writes than one script call takes and more marks than one
		// read, aggregate IDs that need escaping, an aggregate written
		// twice in one batch, and marks fetched out of aggregate order.
		s, _ := newStore(t, time.Hour)
		const n = 600
		agg := func(i int) string {
			switch i {
			case 0:
				return ""
			case 1:
				return "}x"
			case 2:
				return "~y"
			}
			return fmt.Sprintf("u-%d", i)
		}
		var writes []Write
		for i := range n {
			writes = append(writes, Write{Aggregate: agg(i), Data: []byte(fmt.Sprintf("d%d", i)), Marks: []string{"a", fmt.Sprintf("b%d", i)}})
		}
		writes[7].Data = nil
		writes = append(writes, Write{Aggregate: agg(5), Expect: 1, Data: []byte("again"), Marks: []string{"c"}})
		for i, o := range commit(t, s, writes...) {
			if o != Committed {
				t.Fatalf("outcome %d = %v, want committed", i, o)
			}
		}
		var aggs []string
		var marks []Mark
		for i := n - 1; i >= 0; i-- {
			aggs = append(aggs, agg(i))
			marks = append(marks, Mark{agg(i), "a"}, Mark{agg(i), "b0"}, Mark{agg((i + 1) % n), fmt.Sprintf("b%d", i)})
		}
		snaps, exists := fetch(t, s, aggs, marks...)
		for j, i := 0, n-1; i >= 0; i, j = i-1, j+1 {
			want := Snapshot{1, []byte(fmt.Sprintf("d%d", i))}
			switch i {
			case 5:
				want = Snapshot{2, []byte("again")}
			case 7:
				want.Data = nil
			}
			if snaps[j].Version != want.Version || !bytes.Equal(snaps[j].Data, want.Data) {
				t.Errorf("snapshot of %q = v%d %q, want v%d %q", agg(i), snaps[j].Version, snaps[j].Data, want.Version, want.Data)
			}
			got := exists[3*j : 3*j+3]
			if want := []bool{true, i == 0, false}; !slices.Equal(got, want) {
				t.Errorf("marks a, b0 of %q and b%d of %q = %v, want %v", agg(i), i, agg((i+1)%n), got, want)
			}
		}
		if _, exists := fetch(t, s, nil, Mark{agg(5), "c"}); !exists[0] {
			t.Error("mark of the second write of one aggregate missing")
		}
	})

	t.Run("marks expire", func(t *testing.T) {
		const ttl = 500 * time.Millisecond
		s, advance := newStore(t, ttl)
		commit(t, s, Write{Aggregate: "u-1", Expect: 0, Data: []byte("v1"), Marks: []string{"e1"}})
		wantMarks(t, s, "u-1", map[string]bool{"e1": true})
		testenv.Eventually(t, 10*ttl, func() bool {
			advance(ttl / 5)
			_, exists := fetch(t, s, nil, Mark{"u-1", "e1"})
			return !exists[0]
		}, "mark did not expire after %v", ttl)
		// The state stays; only the mark is gone.
		wantState(t, s, "u-1", 1, "v1")
		out := commit(t, s, Write{Aggregate: "u-1", Expect: 1, Data: []byte("v2"), Marks: []string{"e1"}})
		if out[0] != Committed {
			t.Fatalf("commit with an expired mark: %v, want committed", out[0])
		}
	})

	t.Run("canceled context", func(t *testing.T) {
		s, _ := newStore(t, time.Hour)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := s.Fetch(cctx, []string{"u-1"}, nil); !errors.Is(err, context.Canceled) || IsRetryable(err) {
			t.Errorf("Fetch with a canceled context: %v (retryable %v), want context.Canceled, not retryable", err, IsRetryable(err))
		}
		out, err := s.Commit(cctx, []Write{{Aggregate: "u-1", Data: []byte("x")}})
		if !errors.Is(err, context.Canceled) || len(out) != 1 || out[0] != Unknown {
			t.Errorf("Commit with a canceled context: %v %v, want context.Canceled and an unknown outcome", out, err)
		}
		wantState(t, s, "u-1", 0, "")
	})
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{
		Unknown: "unknown", Committed: "committed", VersionConflict: "version_conflict",
		MarkConflict: "mark_conflict", 200: "unknown",
	} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", o, got, want)
		}
	}
}

func ExampleStore() {
	ctx := context.Background()
	var s Store = NewMemoryStore(time.Hour, nil)

	// A batch: load the aggregate and the marks of its events.
	snaps, seen, _ := s.Fetch(ctx, []string{"u-42"}, []Mark{{"u-42", "evt-1"}})
	fmt.Println(snaps[0].Version, seen[0])

	// Apply the events not seen, then write state and marks together.
	out, _ := s.Commit(ctx, []Write{{Aggregate: "u-42", Expect: snaps[0].Version, Data: []byte(`{"total":1}`), Marks: []string{"evt-1"}}})
	fmt.Println(out[0])

	// A worker still holding version 0 is fenced.
	out, _ = s.Commit(ctx, []Write{{Aggregate: "u-42", Expect: 0, Data: []byte(`{"total":7}`), Marks: []string{"evt-2"}}})
	fmt.Println(out[0])
	// Output:
	// 0 false
	// committed
	// version_conflict
}
