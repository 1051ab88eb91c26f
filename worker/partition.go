package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/topics"
)

// queueDepth bounds the batches handed to a partition goroutine; at
// pauseDepth queued batches the partition's fetching is paused, and it
// resumes once the goroutine has taken every queued batch. One batch
// waiting while one is processed keeps the goroutine busy; more would only
// hold fetched records in memory.
const (
	queueDepth  = 16
	pauseDepth  = 1
	resumeDepth = 0
)

// errConflict reports that the store rejected a state write: another owner
// wrote the aggregate (a zombie is fenced) or an event was already marked.
var errConflict = errors.New("state write rejected by the store")

// partition owns one assigned input partition. Its lifecycle (this file):
// the poll loop enqueues batches, one goroutine (run) processes them in
// order, and stopAndWait ends it. Each batch goes through the stages in
// process: decode.go, load.go, sequence.go, produce.go, persist.go, then
// progress.go moves the commit point. Only the goroutine touches the fields
// below the "goroutine-owned" line.
type partition struct {
	w     *Worker
	id    int32
	topic string

	queue   chan []*kgo.Record
	stopC   chan struct{}
	doneC   chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	pauseMu sync.Mutex // makes the paused flag and the client's pause state change together
	paused  bool

	progress   sync.Mutex // guards the fields below it up to the line
	doneOffset int64      // everything below it is done; -1 before the first batch
	doneEpoch  int32
	hwm        int64
	oldest     time.Time   // timestamp of the oldest record not yet done; zero if none
	pendingTS  []time.Time // first record timestamp of each batch queued or in hand
	buffered   int
	bufBytes   int64
	faultSince atomic.Int64 // unix nanoseconds since the partition retries; 0 when it does not
	callSince  atomic.Int64 // unix nanoseconds since the Kafka or Redis call in flight began; 0 when none

	committed int64 // last committed offset; guarded by Worker.commitMu

	// goroutine-owned
	dec    *topics.Decoder
	proc   *processors.Processor
	buf    *sequencing.Buffer[*item] // the one owner of held events
	recent *dedupe.Recent
	// reusers holds the aggregates whose write was rejected for a mark
	// (paired with the empty event ID); it outlives the rebuild that
	// follows, so that their aggregates come back with checkMarks.
	reusers       *dedupe.Recent
	cache         map[string]*aggregate
	next          int64         // offset after the last record handed to process
	faulting      bool          // retrying a failed Redis or Kafka call
	lost          time.Duration // time the sequencing clock does not count (stall.go)
	silenceMark   time.Time     // real time up to which Kafka's silence is counted in lost
	faultAttempts int
	lastFaultLog  time.Time
	lastSegment   bool                       // the batch in hand ends the records of one poll (progress.go)
	merged        int                        // whole polls merged into the batch in hand (merge.go)
	noMerge       bool                       // the batch in hand runs again after a rejected write: it takes no more records (merge.go)
	rest          []*kgo.Record              // the records of the poll's segment after the batch in hand
	restLast      bool                       // that segment ends the poll
	stashed       []*kgo.Record              // a poll merge took from the queue but left for a batch of its own
	cur           *kgo.Record                // the record a stage is working on, blamed for a panic
	curAgg        string                     // its user, once known
	poison        map[recordKey]*poisonError // records an earlier attempt of the batch failed on
	rebuffer      map[int64]time.Time        // by offset, when the events reset took out of the reorder buffer were first buffered
	headers       []topics.Header
	dlqLog        logLimiter // bounds the DLQ log lines
	gapLog        logLimiter // bounds the gap log lines
	b             batch
}

// mustDecoder returns a decoder of limits that New validated.
func mustDecoder(limits topics.Limits) *topics.Decoder {
	d, err := topics.NewDecoder(limits)
	if err != nil {
		panic(err)
	}
	return d
}

func newPartition(w *Worker, id int32) *partition {
	ctx, cancel := context.WithCancel(w.abort)
	p := &partition{
		w:          w,
		id:         id,
		topic:      w.opts.Topics.Input,
		queue:      make(chan []*kgo.Record, queueDepth),
		stopC:      make(chan struct{}),
		doneC:      make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		doneOffset: -1,
		committed:  -1,
		next:       -1,
		dec:        mustDecoder(w.opts.Limits),
		proc:       w.proc,
		buf:        sequencing.NewBuffer[*item](w.opts.Sequencing),
		recent:     dedupe.NewRecent(w.opts.RecentSize),
		reusers:    dedupe.NewRecent(maxReusers),
		cache:      make(map[string]*aggregate),
	}
	p.b.dlqCount = make(map[string]int)
	return p
}

// enqueue hands a poll's records to the goroutine; it never blocks the poll
// loop for long: at pauseDepth queued batches fetching pauses.
func (p *partition) enqueue(recs []*kgo.Record, hwm int64) {
	p.progress.Lock()
	p.hwm = hwm
	if len(recs) > 0 {
		p.pendingTS = append(p.pendingTS, recs[0].Timestamp)
		if p.oldest.IsZero() {
			p.oldest = recs[0].Timestamp
		}
	}
	p.progress.Unlock()
	if len(recs) == 0 {
		return
	}
	select {
	case p.queue <- recs:
	case <-p.doneC:
		return
	}
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if len(p.queue) >= pauseDepth {
		p.pauseLocked()
	}
}

// pauseLocked pauses fetching; the caller holds pauseMu.
func (p *partition) pauseLocked() {
	if !p.paused {
		p.paused = true
		p.w.cl.PauseFetchPartitions(map[string][]int32{p.topic: {p.id}})
	}
}

// maybeResume resumes fetching when the partition paused it and is neither
// behind on queued batches nor retrying a failed call.
func (p *partition) maybeResume() {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if p.paused && !p.faulting && len(p.queue) <= resumeDepth {
		p.paused = false
		p.w.cl.ResumeFetchPartitions(map[string][]int32{p.topic: {p.id}})
	}
}

// run processes batches until stopped. On stop it finishes the batch in
// hand (unless that batch is waiting to retry a failed call) and drops the
// queued ones: they are not committed, so the next owner reads them again.
func (p *partition) run() {
	defer close(p.doneC)
	tick := time.NewTicker(max(p.w.opts.Sequencing.GapTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stopC:
			return
		case <-p.ctx.Done():
			return
		case recs := <-p.queue:
			p.maybeResume()
			p.process(recs)
			for p.stashed != nil && !p.stopping() { // a poll merge took but could not merge
				recs, p.stashed = p.stashed, nil
				p.process(recs)
			}
		case <-tick.C:
			if p.buf.Len() > 0 {
				p.process(nil) // give up expired gaps
			}
			now := p.w.opts.Now()
			p.dlqLog.flush(p, now)
			p.gapLog.flush(p, now)
		}
	}
}

// stopAndWait asks the goroutine to stop and waits until it has exited.
// Once it returns, nothing of the partition touches the client's pause
// state any more.
func (p *partition) stopAndWait() {
	select {
	case <-p.stopC:
	default:
		close(p.stopC)
	}
	<-p.doneC
	p.cancel()
	if p.faulting { // the goroutine has exited: its fields are ours now
		p.faulting = false
		p.faultSince.Store(0)
		p.w.faulting.Add(-1)
	}
}

// process runs the records of one poll through the pipeline, every control
// record in a batch of its own (park.go), and the rest in batches that start
// with at most batchRecords records (merge.go may add more). A nil batch
// only gives up expired gaps. It returns when the records are done or the
// partition stops; an abandoned batch is simply not marked done.
func (p *partition) process(recs []*kgo.Record) {
	if len(recs) == 0 {
		// No poll of its own: run again after a failure (with the
		// records of the buffered events), it still takes no poll, and
		// its end pops no poll's timestamp.
		p.lastSegment = false
		p.processBatch(nil)
		return
	}
	segments(recs, func(seg []*kgo.Record, last bool) bool {
		p.rest = seg
		for len(p.rest) > 0 && !p.stopping() {
			n := min(len(p.rest), batchRecords)
			batch := p.rest[:n:n]
			p.rest = p.rest[n:]
			p.lastSegment = last && len(p.rest) == 0
			p.restLast = last
			p.processBatch(batch)
		}
		p.rest = nil
		return !p.stopping()
	})
}

// processBatch runs one batch through the pipeline until it is done or the
// partition stops.
func (p *partition) processBatch(recs []*kgo.Record) {
	start := time.Now()
	conflicts, stackLogged := 0, false
	p.merged, p.noMerge = 0, false
	for attempt := 0; ; {
		var err error
		recs, err = p.processOnce(recs)
		if err == nil {
			break
		}
		if errors.Is(err, errStopped) || p.stopping() {
			return
		}
		// Never skip the batch: rebuild the partition's state from the
		// store and run the unfinished records again; dedupe marks make
		// that safe.
		p.w.m.partitionResets.Inc()
		var poison *poisonError
		isPoison := errors.As(err, &poison) && p.poison[poison.key()] == nil
		recs = p.reset(recs)
		switch {
		case isPoison:
			// Without the record, the batch runs again at once.
			p.blame(poison)
			continue
		case errors.Is(err, errConflict):
			// The store rejected a write: this partition's view of an
			// aggregate is stale.
			conflicts++
			p.noMerge = true
			p.w.log.Warn("state write rejected; rebuilding partition state from the store",
				"partition", p.id, "attempt", conflicts)
			if conflicts >= conflictFaultAfter {
				p.fault(true, "state write", err)
			}
		default:
			var ie *internalError
			if errors.As(err, &ie) && !stackLogged { // once per batch; fault logs each retry
				stackLogged = true
				p.w.log.Error("panic in the pipeline", "partition", p.id, "stage", ie.stage, "panic", fmt.Sprint(ie.value), "stack", string(ie.stack))
			}
			p.fault(true, "batch", err)
		}
		if !p.sleep(p.w.opts.Retry.Delay(attempt)) {
			return
		}
		attempt++
	}
	p.fault(false, "batch", nil)
	clear(p.poison)
	clear(p.rebuffer)
	if len(recs) > 0 {
		p.w.m.batchSeconds.Observe(time.Since(start).Seconds())
	}
}

// processOnce runs the stages of the pipeline over one batch, and over the
// polls merge adds to it (merge.go); it returns the batch's records,
// merged ones included.
func (p *partition) processOnce(recs []*kgo.Record) (all []*kgo.Record, err error) {
	defer func() { // a panic outside the record stages: retried, reported
		if v := recover(); v != nil {
			p.w.m.internalErrors.WithLabelValues("batch").Inc()
			err = &internalError{stage: "batch", value: v, stack: debug.Stack()}
		}
	}()
	p.b.reset()
	if err := p.applyRecords(recs); err != nil {
		return recs, err
	}
	for {
		more := p.merge(recs)
		if more == nil {
			break
		}
		recs = append(recs[:len(recs):len(recs)], more...)
		if err := p.applyRecords(more); err != nil {
			return recs, err
		}
	}
	if err := p.guard("process", p.emitAggregates); err != nil {
		return recs, err
	}
	if p.b.oversize != nil {
		return recs, p.b.oversize
	}
	if err := p.produce(); err != nil {
		return recs, err
	}
	crashPoint("produced")
	if err := p.persist(); err != nil {
		return recs, err
	}
	crashPoint("persisted")
	p.logReleases()
	p.b.flush(p.w.m, p.topic)
	if n := len(recs); n > 0 && recs[n-1].Offset >= p.next { // a give-up run again holds only records read before
		p.next = recs[n-1].Offset + 1
	}
	p.markDone(recs)
	p.evict()
	return recs, nil
}

// applyRecords runs the record stages over recs: decode, load and
// sequence. Their changes and outputs join the batch in hand.
func (p *partition) applyRecords(recs []*kgo.Record) error {
	p.b.nextSegment(len(recs))
	now := p.seqClock()
	if err := p.guard("decode", func() {
		for _, r := range recs {
			p.cur = r
			p.decode(r)
		}
	}); err != nil {
		return err
	}
	if err := p.collectHeld(); err != nil {
		return err
	}
	if err := p.load(); err != nil {
		return err
	}
	return p.guard("process", func() { p.sequenceAll(now) })
}

// reset forgets every aggregate, buffered event and remembered ID, and
// returns the records still to do: the buffered ones, those the failed
// attempt took out of the buffer (read by earlier batches, they are in no
// other list) and recs, in offset order.
func (p *partition) reset(recs []*kgo.Record) []*kgo.Record {
	var again []*kgo.Record
	keep := func(it *item) {
		again = append(again, it.rec)
		if p.rebuffer == nil {
			p.rebuffer = make(map[int64]time.Time)
		}
		p.rebuffer[it.rec.Offset] = it.at
	}
	for _, it := range p.buf.All() {
		if it.kind == eventItem { // a held event of a release is read again from the parked topic
			keep(it)
		}
	}
	for _, it := range p.b.unbuffered {
		keep(it)
	}
	again = append(again, recs...)
	slices.SortFunc(again, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	again = slices.CompactFunc(again, func(a, b *kgo.Record) bool { return a.Offset == b.Offset })
	p.b.reset()
	p.buf.Reset()
	clear(p.cache)
	p.recent.Reset()
	return again
}

// bufferedAt returns when the record at offset, about to be buffered at now,
// was first buffered: the time it had before a failed attempt made reset
// take it out of the reorder buffer, so that running a batch again never
// restarts a gap's timeout (its give-up would be undone, and its record
// already produced), or else now.
func (p *partition) bufferedAt(offset int64, now time.Time) time.Time {
	if at, ok := p.rebuffer[offset]; ok && !at.IsZero() {
		delete(p.rebuffer, offset)
		return at
	}
	return now
}

// clearGauges removes the partition's labelled series.
func (p *partition) clearGauges() {
	part := itoa(int64(p.id))
	p.w.m.processedLag.DeleteLabelValues(p.topic, part)
	p.w.m.lagSeconds.DeleteLabelValues(p.topic, part)
	p.w.m.consumerLag.DeleteLabelValues(p.w.opts.Group, p.topic, part)
	p.w.m.stuckSeconds.DeleteLabelValues(p.topic, part)
}
