package sequencing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// trials returns n, or a tenth of it in -short and -race runs.
func trials(n int) int {
	if testing.Short() || raceEnabled {
		return n / 10
	}
	return n
}

type ev struct {
	agg    string
	seq    int64
	id     string
	offset int64
	size   int
}

// sim is a partition worker reduced to what sequencing decides: dedupe by
// applied IDs, Classify, Buffer, drain, and the gap give-up policy of the
// package doc.
type sim struct {
	t       *testing.T
	b       *Buffer[ev]
	now     time.Time
	last    map[string]int64 // lastSequence per aggregate
	applied map[string][]ev
	seen    map[string]bool // applied IDs: the dedupe marks
	late    map[string]ev   // by ID
	dropped int             // duplicates dropped
	conflct map[string]ev   // by ID
	gaps    map[string][][2]int64
}

func newSim(t *testing.T, cfg Config) *sim {
	return &sim{
		t: t, b: NewBuffer[ev](cfg), now: start,
		last: map[string]int64{}, applied: map[string][]ev{}, seen: map[string]bool{},
		late: map[string]ev{}, conflct: map[string]ev{}, gaps: map[string][][2]int64{},
	}
}

func (s *sim) deliver(e ev) {
	if s.seen[e.id] {
		s.dropped++
		return
	}
	switch Classify(Expected(s.last[e.agg]), e.seq) {
	case DecisionApply:
		s.apply(e)
		s.drain(e.agg)
	case DecisionBuffer:
		s.buffer(e)
	case DecisionBehind:
		s.late[e.id] = e
	default:
		s.t.Fatalf("Classify(%d, %d) invalid", Expected(s.last[e.agg]), e.seq)
	}
}

func (s *sim) buffer(e ev) {
	switch r := s.b.Add(e.agg, e.seq, e.id, e.offset, e.size, s.now, e); r {
	case Buffered:
	case Duplicate:
		s.dropped++
	case Conflict:
		s.conflct[e.id] = e
	case FullAggregate, FullPartition:
		victim := e.agg
		if r == FullPartition {
			if o, ok := s.b.Oldest(); ok {
				victim = o
			}
		}
		if low, ok := s.b.Lowest(victim); ok && (victim != e.agg || low < e.seq) {
			s.giveUp(victim)
			s.deliver(e) // classify again: every give-up frees at least one slot
			return
		}
		// Nothing of e's aggregate is buffered below e: skip to e.
		s.gap(e.agg, e.seq)
		s.apply(e)
		s.drain(e.agg)
	}
}

func (s *sim) apply(e ev) {
	if e.seq > 0 {
		if want := Expected(s.last[e.agg]); e.seq != want {
			s.t.Fatalf("applied %s/%d while expecting %d", e.agg, e.seq, want)
		}
		s.last[e.agg] = e.seq
	}
	s.seen[e.id] = true
	s.applied[e.agg] = append(s.applied[e.agg], e)
}

func (s *sim) drain(agg string) {
	for {
		e, ok := s.b.Pop(agg, Expected(s.last[agg]))
		if !ok {
			return
		}
		s.apply(e)
	}
}

// gap records the give-up of agg's sequences expected..resumeAt-1.
func (s *sim) gap(agg string, resumeAt int64) {
	s.gaps[agg] = append(s.gaps[agg], [2]int64{Expected(s.last[agg]), resumeAt})
	s.last[agg] = resumeAt - 1
}

func (s *sim) giveUp(agg string) {
	low, ok := s.b.Lowest(agg)
	if !ok {
		s.t.Fatalf("give up %s with nothing buffered", agg)
	}
	s.gap(agg, low)
	s.drain(agg)
	s.b.GiveUp(agg)
}

func (s *sim) expire() {
	for _, agg := range s.b.Expired(s.now, nil) {
		for s.b.GapExpired(agg, s.now) {
			s.giveUp(agg)
		}
	}
}

// check compares the buffer's accounting with a brute-force walk.
func (s *sim) check(cfg Config) {
	var n int
	var bytes int64
	minOff, any := int64(0), false
	for agg, a := range s.b.aggs {
		live := a.live()
		if len(live) == 0 || len(live) > cfg.MaxPerAggregate {
			s.t.Fatalf("%s holds %d events", agg, len(live))
		}
		var ab int64
		for i, e := range live {
			if i > 0 && e.seq <= live[i-1].seq {
				s.t.Fatalf("%s not ascending", agg)
			}
			if e.seq <= s.last[agg] {
				s.t.Fatalf("%s holds %d, already passed (last %d)", agg, e.seq, s.last[agg])
			}
			if !any || e.offset < minOff {
				minOff, any = e.offset, true
			}
			ab += e.size
		}
		if ab != a.bytes {
			s.t.Fatalf("%s bytes %d, want %d", agg, a.bytes, ab)
		}
		n += len(live)
		bytes += ab
	}
	if s.b.Len() != n || s.b.Bytes() != bytes || n > cfg.MaxPerPartition || bytes > cfg.MaxBytes {
		s.t.Fatalf("Len %d Bytes %d, walked %d %d, bounds %d %d", s.b.Len(), s.b.Bytes(), n, bytes, cfg.MaxPerPartition, cfg.MaxBytes)
	}
	got, _, ok := s.b.MinOffset()
	if ok != any || got != minOff {
		s.t.Fatalf("MinOffset = %d, %v; brute force %d, %v", got, ok, minOff, any)
	}
	if len(s.b.removed) > max(64, s.b.n) {
		s.t.Fatalf("%d removed offsets pending for %d buffered", len(s.b.removed), s.b.n)
	}
}

// genStreams returns per-aggregate streams: sequences 1..n, some events
// without a sequence, some IDs delivered twice and, when conflicts, some
// sequences shared by two IDs. It returns the events in sequence order.
func genStreams(r *rand.Rand, conflicts bool) []ev {
	var out []ev
	for a := range 1 + r.IntN(5) {
		agg := fmt.Sprintf("u-%d", a)
		n := r.IntN(40)
		for seq := int64(1); seq <= int64(n); seq++ {
			out = append(out, ev{agg: agg, seq: seq, id: fmt.Sprintf("%s-%d", agg, seq), size: 1 + r.IntN(50)})
			if r.IntN(6) == 0 {
				out = append(out, ev{agg: agg, id: fmt.Sprintf("%s-free-%d", agg, seq), size: 1 + r.IntN(50)})
			}
			if conflicts && r.IntN(15) == 0 {
				out = append(out, ev{agg: agg, seq: seq, id: fmt.Sprintf("%s-%d-other", agg, seq), size: 1})
			}
		}
	}
	for range len(out) / 5 {
		out = append(out, out[r.IntN(len(out))]) // duplicate deliveries
	}
	return out
}

// shuffle reorders events: a full shuffle, or only nearby swaps.
func shuffle(r *rand.Rand, es []ev) {
	if r.IntN(2) == 0 {
		r.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
		return
	}
	for i := range es {
		j := min(len(es)-1, i+r.IntN(4))
		es[i], es[j] = es[j], es[i]
	}
}

// TestPermutationsApplyInOrder: with room enough and no timeout firing,
// every permutation of the streams applies each aggregate's sequenced events
// exactly in sequence order, as in-order delivery does, and every event
// without a sequence once.
func TestPermutationsApplyInOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range trials(2000) {
		inOrder := genStreams(r, false)
		delivered := slices.Clone(inOrder)
		shuffle(r, delivered)
		for i := range delivered {
			delivered[i].offset = int64(1000 + i)
		}
		cfg := Config{MaxPerAggregate: 1000, MaxPerPartition: 10000, MaxBytes: 1 << 30, GapTimeout: time.Hour}
		s := newSim(t, cfg)
		for _, e := range delivered {
			s.deliver(e)
			s.now = s.now.Add(time.Millisecond)
			s.check(cfg)
		}
		if s.b.Len() != 0 || len(s.late) != 0 || len(s.gaps) != 0 {
			t.Fatalf("trial %d: %d left buffered, %d late, gaps %v", trial, s.b.Len(), len(s.late), s.gaps)
		}
		want := map[string][]string{}
		free := map[string]int{}
		for _, e := range inOrder {
			if e.seq > 0 && !slices.Contains(want[e.agg], e.id) {
				want[e.agg] = append(want[e.agg], e.id)
			}
			if e.seq == 0 {
				free[e.id] = 1
			}
		}
		for agg, ids := range want {
			var got []string
			for _, e := range s.applied[agg] {
				if e.seq > 0 {
					got = append(got, e.id)
				} else {
					free[e.id]--
				}
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("trial %d, %s: applied %v, want %v", trial, agg, got, ids)
			}
		}
		for id, n := range free {
			if n != 0 {
				t.Fatalf("trial %d: unsequenced %s applied %d times too few", trial, id, n)
			}
		}
	}
}

// TestBoundedGiveUps: with small bounds, conflicting sequences and gap
// timeouts, order still holds and nothing is lost silently: every ID is
// applied once, or else reported late (its sequence inside a gap given up or
// taken by another ID) or rejected as a conflict; the applied sequences and
// the gaps tile 1..last.
func TestBoundedGiveUps(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var gapCount, lateCount, conflictCount int
	for trial := range trials(2000) {
		events := genStreams(r, true)
		shuffle(r, events)
		for i := range events {
			events[i].offset = int64(i)
		}
		cfg := Config{
			MaxPerAggregate: 1 + r.IntN(20),
			MaxPerPartition: 1 + r.IntN(40),
			MaxBytes:        int64(50 + r.IntN(1000)),
			GapTimeout:      time.Duration(1+r.IntN(5)) * time.Second,
		}
		s := newSim(t, cfg)
		for _, e := range events {
			s.deliver(e)
			s.now = s.now.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
			s.expire()
			s.check(cfg)
		}
		s.now = s.now.Add(time.Hour) // let every remaining gap time out
		s.expire()
		s.check(cfg)
		if s.b.Len() != 0 {
			t.Fatalf("trial %d: %d still buffered", trial, s.b.Len())
		}

		ids := map[string]ev{}
		for _, e := range events {
			ids[e.id] = e
		}
		for id, e := range ids {
			_, late := s.late[id]
			_, conflict := s.conflct[id]
			// A redelivered ID can be a conflict first and late later, but an
			// applied one is neither: the expected sequence never goes back.
			if s.seen[id] == (late || conflict) {
				t.Fatalf("trial %d: %s applied %v, late %v, conflict %v", trial, id, s.seen[id], late, conflict)
			}
			if late {
				if e.seq <= 0 {
					t.Fatalf("trial %d: unsequenced %s reported late", trial, id)
				}
				inGap := slices.ContainsFunc(s.gaps[e.agg], func(g [2]int64) bool { return e.seq >= g[0] && e.seq < g[1] })
				if !inGap && !slices.ContainsFunc(s.applied[e.agg], func(a ev) bool { return a.seq == e.seq }) {
					t.Fatalf("trial %d: %s late but its sequence was neither skipped nor taken", trial, id)
				}
			}
		}
		for agg, last := range s.last {
			covered := make([]int, last+1)
			for _, e := range s.applied[agg] {
				if e.seq > 0 {
					covered[e.seq]++
				}
			}
			for _, g := range s.gaps[agg] {
				for q := g[0]; q < g[1]; q++ {
					covered[q]++
				}
			}
			for q := int64(1); q <= last; q++ {
				if covered[q] != 1 {
					t.Fatalf("trial %d: %s sequence %d covered %d times", trial, agg, q, covered[q])
				}
			}
		}
		for _, g := range s.gaps {
			gapCount += len(g)
		}
		lateCount += len(s.late)
		conflictCount += len(s.conflct)
	}
	t.Logf("%d gaps, %d late, %d conflicts", gapCount, lateCount, conflictCount)
	if gapCount == 0 || lateCount == 0 || conflictCount == 0 {
		t.Error("the trials exercise too little")
	}
}

// TestMinOffsetLongHold: one low offset held while many others come and go
// keeps MinOffset exact and the removal heap bounded.
func TestMinOffsetLongHold(t *testing.T) {
	b := NewBuffer[int](DefaultConfig())
	b.Add("held", 2, "held-2", 7, 1, start, 0)
	for i := range 10_000 {
		off := int64(100 + i)
		agg := fmt.Sprintf("u-%d", i%50)
		if r := b.Add(agg, 2, agg+"-"+fmt.Sprint(i), off, 1, start, 0); r != Buffered {
			t.Fatalf("Add: %v", r)
		}
		if _, ok := b.Pop(agg, 2); !ok {
			t.Fatal("Pop")
		}
		if o, _, ok := b.MinOffset(); !ok || o != 7 {
			t.Fatalf("MinOffset = %d, %v; want 7", o, ok)
		}
		if len(b.removed) > 64 || len(b.offsets) > 66 {
			t.Fatalf("heaps grew: %d offsets, %d removed", len(b.offsets), len(b.removed))
		}
	}
	b.Pop("held", 2)
	if _, _, ok := b.MinOffset(); ok {
		t.Error("MinOffset of an empty buffer")
	}
}

// TestRandomOperations compares every Buffer operation, in any order and
// with any arguments, with a map of slices.
func TestRandomOperations(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	type item struct {
		seq          int64
		id           string
		offset, size int64
	}
	for trial := range trials(300) {
		cfg := Config{MaxPerAggregate: 1 + r.IntN(8), MaxPerPartition: 1 + r.IntN(20), MaxBytes: int64(1 + r.IntN(400)), GapTimeout: time.Second}
		b := NewBuffer[item](cfg)
		model := map[string][]item{}
		var offset int64
		for op := range 400 {
			agg := fmt.Sprintf("u-%d", r.IntN(4))
			switch k := r.IntN(10); {
			case k < 5:
				it := item{seq: 1 + r.Int64N(12), id: fmt.Sprintf("id-%d", r.IntN(30)), offset: offset, size: r.Int64N(60)}
				offset++
				want := Buffered
				n, bytes := 0, int64(0)
				for _, its := range model {
					n += len(its)
					for _, x := range its {
						bytes += x.size
					}
				}
				switch {
				case slices.ContainsFunc(model[agg], func(x item) bool { return x.id == it.id }):
					want = Duplicate
				case slices.ContainsFunc(model[agg], func(x item) bool { return x.seq == it.seq }):
					want = Conflict
				case len(model[agg]) >= cfg.MaxPerAggregate:
					want = FullAggregate
				case n >= cfg.MaxPerPartition || bytes+it.size > cfg.MaxBytes:
					want = FullPartition
				}
				if got := b.Add(agg, it.seq, it.id, it.offset, int(it.size), start, it); got != want {
					t.Fatalf("trial %d op %d: Add %s %+v = %v, want %v", trial, op, agg, it, got, want)
				}
				if want == Buffered {
					model[agg] = append(model[agg], it)
					slices.SortFunc(model[agg], func(x, y item) int { return int(x.seq - y.seq) })
				}
			case k < 9:
				seq := 1 + r.Int64N(12)
				got, ok := b.Pop(agg, seq)
				i := slices.IndexFunc(model[agg], func(x item) bool { return x.seq == seq })
				if ok != (i >= 0) || (ok && got != model[agg][i]) {
					t.Fatalf("trial %d op %d: Pop %s %d = %+v, %v; model index %d", trial, op, agg, seq, got, ok, i)
				}
				if ok {
					model[agg] = slices.Delete(model[agg], i, i+1)
				}
			default:
				b.Drop(agg)
				model[agg] = nil
			}
			n, bytes, minOff := 0, int64(0), int64(-1)
			for a, its := range model {
				low, ok := b.Lowest(a)
				if ok != (len(its) > 0) || (ok && low != its[0].seq) || buffered(b, a) != len(its) {
					t.Fatalf("trial %d op %d: Lowest(%s) = %d, %v; model %v", trial, op, a, low, ok, its)
				}
				n += len(its)
				for _, x := range its {
					bytes += x.size
					if minOff < 0 || x.offset < minOff {
						minOff = x.offset
					}
				}
			}
			got, _, ok := b.MinOffset()
			if b.Len() != n || b.Bytes() != bytes || ok != (minOff >= 0) || (ok && got != minOff) {
				t.Fatalf("trial %d op %d: Len %d Bytes %d MinOffset %d %v; model %d %d %d", trial, op, b.Len(), b.Bytes(), got, ok, n, bytes, minOff)
			}
		}
	}
}
