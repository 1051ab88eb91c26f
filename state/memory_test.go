package state

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newMemoryStore(t *testing.T, ttl time.Duration) (Store, func(time.Duration)) {
	clock := &fakeClock{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	return NewMemoryStore(ttl, clock.Now), clock.Advance
}

func TestMemoryStore(t *testing.T) { testStore(t, newMemoryStore) }

func TestMemoryStoreExpiryIsExact(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	s := NewMemoryStore(time.Minute, clock.Now)
	ctx := context.Background()
	if _, err := s.Commit(ctx, []Write{{Aggregate: "u", Data: []byte("x"), Marks: []string{"e"}}}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		exists  bool
	}{{time.Minute - time.Nanosecond, true}, {time.Nanosecond, false}} {
		clock.Advance(step.advance)
		_, exists, err := s.Fetch(ctx, nil, []Mark{{"u", "e"}})
		if err != nil || exists[0] != step.exists {
			t.Fatalf("after %v: exists = %v, %v; want %v", step.advance, exists, err, step.exists)
		}
	}
}

func TestMemoryStoreSweepsExpiredMarks(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	s := NewMemoryStore(time.Minute, clock.Now)
	ctx := context.Background()
	for i := range 3 {
		w := Write{Aggregate: "u", Expect: int64(i), Data: []byte("x"), Marks: []string{string(rune('a' + i))}}
		if _, err := s.Commit(ctx, []Write{w}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Minute)
	}
	s.mu.Lock()
	n := len(s.marks)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d marks held, want 1 (expired ones swept)", n)
	}
}

func TestMemoryStoreSetErrorAndCalls(t *testing.T) {
	s := NewMemoryStore(time.Hour, nil)
	ctx := context.Background()
	down := errors.New("redis down")
	s.SetError(down)
	if _, _, err := s.Fetch(ctx, []string{"u"}, nil); !errors.Is(err, down) {
		t.Fatalf("Fetch error = %v, want %v", err, down)
	}
	out, err := s.Commit(ctx, []Write{{Aggregate: "u", Data: []byte("x")}})
	if !errors.Is(err, down) || out[0] != Unknown {
		t.Fatalf("Commit = %v, %v; want unknown, %v", out, err, down)
	}
	s.SetError(nil)
	if out, err := s.Commit(ctx, []Write{{Aggregate: "u", Data: []byte("x")}}); err != nil || out[0] != Committed {
		t.Fatalf("Commit after recovery = %v, %v", out, err)
	}
	if f, c := s.Calls(); f != 1 || c != 2 {
		t.Fatalf("Calls = %d fetches, %d commits; want 1, 2", f, c)
	}
}

func TestMemoryStoreCopiesData(t *testing.T) {
	s := NewMemoryStore(time.Hour, nil)
	ctx := context.Background()
	data := []byte("abc")
	if _, err := s.Commit(ctx, []Write{{Aggregate: "u", Data: data}}); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X'
	snaps, _, _ := s.Fetch(ctx, []string{"u"}, nil)
	snaps[0].Data[1] = 'Y'
	snaps, _, _ = s.Fetch(ctx, []string{"u"}, nil)
	if string(snaps[0].Data) != "abc" {
		t.Fatalf("stored data = %q, want abc (caller's buffers must not alias it)", snaps[0].Data)
	}
}
