package sequencing

import (
	"fmt"
	"testing"
	"time"
)

type benchItem struct {
	seq    int64
	offset int64
}

// benchWorker is the per-event work of a partition: classify, buffer or
// apply and drain, and read the commit bound.
type benchWorker struct {
	b    *Buffer[benchItem]
	last map[string]int64
}

func (w *benchWorker) deliver(agg, id string, seq, offset int64, now time.Time) {
	switch Classify(Expected(w.last[agg]), seq) {
	case DecisionApply:
		w.last[agg] = seq
		for {
			it, ok := w.b.Pop(agg, Expected(w.last[agg]))
			if !ok {
				break
			}
			w.last[agg] = it.seq
		}
	case DecisionBuffer:
		w.b.Add(agg, seq, id, offset, 200, now, benchItem{seq, offset})
	}
	w.b.MinOffset()
}

func benchUsers() ([]string, []string) {
	users := make([]string, 100)
	ids := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("u-%d", i)
		ids[i] = fmt.Sprintf("evt-%d", i)
	}
	return users, ids
}

// BenchmarkBufferInOrder: every event is the expected one; nothing is
// buffered.
func BenchmarkBufferInOrder(b *testing.B) {
	users, ids := benchUsers()
	w := &benchWorker{b: NewBuffer[benchItem](DefaultConfig()), last: map[string]int64{}}
	now := time.Now()
	var i int64
	for b.Loop() {
		u := i % int64(len(users))
		w.deliver(users[u], ids[u], i/int64(len(users))+1, i, now)
		i++
	}
	if w.b.Len() != 0 {
		b.Fatal("something was buffered")
	}
}

// BenchmarkBufferReorder: each user's events arrive in swapped pairs (2, 1,
// 4, 3, ...): every other event is buffered and popped by the next.
func BenchmarkBufferReorder(b *testing.B) {
	users, ids := benchUsers()
	w := &benchWorker{b: NewBuffer[benchItem](DefaultConfig()), last: map[string]int64{}}
	now := time.Now()
	var i int64
	for b.Loop() {
		u := i % int64(len(users))
		k := i / int64(len(users)) // the user's k-th event
		seq := k + 1 + 1 - 2*(k%2) // 2, 1, 4, 3, ...
		w.deliver(users[u], ids[(u+k)%int64(len(ids))], seq, i, now)
		i++
	}
	b.ReportMetric(float64(w.b.Len()), "buffered")
}
