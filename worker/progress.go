package worker

// Progress. Once a batch is done, markDone moves the partition's commit
// point (read by the offset commits, group.go) and its lag figures (read by
// lag.go), and evict keeps the state cache within its share.

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// markDone moves the partition's commit point: past every record of the
// batch, but never past a record still held in the reorder buffer.
func (p *partition) markDone(recs []*kgo.Record) {
	p.progress.Lock()
	defer p.progress.Unlock()
	if n := len(recs); n > 0 && recs[n-1].Offset+1 == p.next {
		p.doneEpoch = recs[n-1].LeaderEpoch
	}
	if p.next >= 0 {
		p.doneOffset = p.next
	}
	if len(recs) > 0 && p.lastSegment {
		done := min(1+p.merged, len(p.pendingTS)) // the batch's poll and the polls merged into it
		p.pendingTS = p.pendingTS[done:]
	}
	p.oldest = time.Time{}
	if len(p.pendingTS) > 0 {
		p.oldest = p.pendingTS[0]
	}
	if off, it, ok := p.buf.MinOffset(); ok {
		p.doneOffset = off
		p.oldest = it.rec.Timestamp
	}
	p.buffered = p.buf.Len()
	p.bufBytes = p.buf.Bytes()
}

// committable returns the offset to commit: every record below it is done.
func (p *partition) committable() (kgo.EpochOffset, bool) {
	p.progress.Lock()
	defer p.progress.Unlock()
	return kgo.EpochOffset{Epoch: p.doneEpoch, Offset: p.doneOffset}, p.doneOffset >= 0
}

// evict keeps the cache within the partition's share of the worker's cache
// size (state.cache_size, shared evenly by the partitions owned), down to
// 90% of it so that eviction does not run on every batch. Aggregates with
// buffered events stay: their expected sequence lives here.
func (p *partition) evict() {
	capacity := p.w.opts.CacheSize / max(int(p.w.owned.Load()), 1)
	if len(p.cache) <= capacity {
		return
	}
	target := capacity * 9 / 10
	for id := range p.cache {
		if len(p.cache) <= target {
			return
		}
		if _, ok := p.buf.Lowest(id); !ok {
			delete(p.cache, id)
		}
	}
}
