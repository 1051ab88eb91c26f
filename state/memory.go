package state

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MemoryStore is a Store in memory for unit tests of the runtime. It honors
// versions, marks and mark expiry on an injected clock, can be made to fail
// (SetError), and counts its calls (Calls). It is safe for concurrent use.
type MemoryStore struct {
	mu        sync.Mutex
	ttl       time.Duration
	now       func() time.Time
	states    map[string]Snapshot
	marks     map[Mark]time.Time // expiry
	lastSweep time.Time
	err       error
	fetches   int
	commits   int
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store whose marks expire after ttl
// (DefaultMarkTTL when ttl <= 0) as told by now (time.Now when nil).
func NewMemoryStore(ttl time.Duration, now func() time.Time) *MemoryStore {
	if ttl <= 0 {
		ttl = DefaultMarkTTL
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{
		ttl:    ttl,
		now:    now,
		states: map[string]Snapshot{},
		marks:  map[Mark]time.Time{},
	}
}

// SetError makes every later Fetch and Commit fail with err (wrapped), as
// an unreachable Redis would, until SetError(nil).
func (m *MemoryStore) SetError(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// Calls returns how many times Fetch and Commit were called, failed calls
// included: each call stands for one Redis round trip.
func (m *MemoryStore) Calls() (fetches, commits int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fetches, m.commits
}

// Fetch implements Store.
func (m *MemoryStore) Fetch(ctx context.Context, aggs []string, marks []Mark) ([]Snapshot, []bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetches++
	if err := m.check(ctx); err != nil {
		return nil, nil, fmt.Errorf("state: fetch %d aggregates, %d marks: %w", len(aggs), len(marks), err)
	}
	now := m.now()
	snaps := make([]Snapshot, len(aggs))
	for i, agg := range aggs {
		s := m.states[agg]
		snaps[i] = Snapshot{Version: s.Version, Data: clone(s.Data)}
	}
	exists := make([]bool, len(marks))
	for i, mk := range marks {
		exists[i] = m.marked(mk, now)
	}
	return snaps, exists, nil
}

// Commit implements Store.
func (m *MemoryStore) Commit(ctx context.Context, writes []Write) ([]Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commits++
	out := make([]Outcome, len(writes))
	if err := m.check(ctx); err != nil {
		return out, fmt.Errorf("state: commit %d writes: %w", len(writes), err)
	}
	now := m.now()
	m.sweep(now)
	for i, w := range writes {
		marked := func(id string) bool { return m.marked(Mark{w.Aggregate, id}, now) }
		out[i] = decide(m.states[w.Aggregate], w, marked)
		if out[i] != Committed || m.states[w.Aggregate].Version != w.Expect {
			continue // a conflict, or this write already applied
		}
		m.states[w.Aggregate] = Snapshot{Version: w.Expect + 1, Data: append([]byte{}, w.Data...)}
		for _, id := range w.Marks {
			m.marks[Mark{w.Aggregate, id}] = now.Add(m.ttl)
		}
	}
	return out, nil
}

// Ping implements Store: it fails while SetError holds an error.
func (m *MemoryStore) Ping(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.check(ctx)
}

func (m *MemoryStore) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return m.err
}

func (m *MemoryStore) marked(mk Mark, now time.Time) bool {
	exp, ok := m.marks[mk]
	return ok && now.Before(exp)
}

// sweep drops expired marks, at most once per TTL, so memory stays bounded
// by the marks of one TTL or two.
func (m *MemoryStore) sweep(now time.Time) {
	if now.Sub(m.lastSweep) < m.ttl {
		return
	}
	m.lastSweep = now
	for mk, exp := range m.marks {
		if !now.Before(exp) {
			delete(m.marks, mk)
		}
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
