package worker

// Merging. Under a backlog, the next poll of a partition is usually waiting
// in its queue by the time a batch has been applied. merge lets the batch
// take it before its outputs and state are written, so that each aggregate's
// state is written once, with all its marks, and its aggregated output is
// emitted once, for every event of both polls: the per-aggregate work of a
// batch (the state's encoding, its store write, the coalesced output) is
// spread over more events. merge never waits for a poll, so a partition that
// keeps up writes each poll at once and latency does not change; and it
// stops once the batch touches many aggregates, where merging would only
// hold more records in memory for no saving.

import "github.com/twmb/franz-go/pkg/kgo"

const (
	// batchRecords bounds the records a batch starts with: a poll of more
	// (kafka.max_poll_records is up to 10000, so that a poll takes all a
	// fetch holds of a partition, which is dropped and fetched again when
	// the partition pauses) is cut into batches of at most this many.
	batchRecords = 5000
	// mergeRecords bounds the records of a batch, merged polls included.
	mergeRecords = 4 * batchRecords
	// mergeUsers: a batch that touches more aggregates takes no more
	// records.
	mergeUsers = batchRecords / 2
	// mergeEventsPerUser: a batch whose events are fewer than this many
	// per aggregate touched takes no more records: with many users and few
	// events each, merging saves few writes and holds more memory.
	mergeEventsPerUser = 2
)

// merge returns more records for the batch in hand, of records recs: the
// rest of its poll, or else the next poll waiting in the queue, when the
// batch may take them; nil when none are there or the batch is full. A
// control record needs a batch of its own (park.go): a batch that ends
// with one (a release, after the buffered records of a rerun) takes
// nothing, and a poll with one is kept in p.stashed for run to process
// next. A batch run again after a rejected write takes nothing more: its
// records are checked against the store afresh, but a merged poll's event
// of a user the batch has loaded is not (load.go), and an event ID it
// reuses would be rejected again, attempt after attempt.
func (p *partition) merge(recs []*kgo.Record) []*kgo.Record {
	n := len(recs)
	changes := len(p.b.changes)
	if n == 0 || n >= mergeRecords || changes > mergeUsers || n < mergeEventsPerUser*changes || p.noMerge || p.stopping() {
		return nil
	}
	if _, ok := controlRecord(recs[n-1]); ok {
		return nil
	}
	if len(p.rest) > 0 {
		take := min(len(p.rest), mergeRecords-n)
		more := p.rest[:take:take]
		p.rest = p.rest[take:]
		p.lastSegment = p.restLast && len(p.rest) == 0
		return more
	}
	if !p.lastSegment || p.stashed != nil {
		return nil
	}
	select {
	case recs := <-p.queue:
		p.maybeResume()
		// A poll with a control record, or too large for the room left,
		// waits for a batch of its own.
		if firstControl(recs) >= 0 || len(recs) > mergeRecords-n {
			p.stashed = recs
			return nil
		}
		p.merged++
		return recs
	default:
		return nil
	}
}

// nextSegment starts a new segment of items for the records merge added:
// the items of earlier segments keep their addresses (a change points at
// its last applied item) until reset drops them. A merged segment's memory
// is not kept for the next merge, so that merging at the start of a run,
// when polls are small, does not hold it for good.
func (b *batch) nextSegment(records int) {
	if len(b.items) == 0 {
		return
	}
	b.segments = append(b.segments, b.items)
	b.items = make([]item, 0, records)
}

// resetSegments drops the items of every segment but the newest, and makes
// the first segment, whose memory is reused, the batch's items again.
func (b *batch) resetSegments() {
	if len(b.segments) == 0 {
		return
	}
	first := b.segments[0]
	clear(first)
	b.items = first[:0]
	clear(b.segments)
	b.segments = b.segments[:0]
}
