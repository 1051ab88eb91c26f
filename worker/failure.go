package worker

// Failures caused by one record, and failures that last (docs/contract.md,
// "Delivery guarantees", points 5 and 6). A record that makes a stage panic,
// or whose output could never be produced, is a poison record: the batch is
// abandoned, the partition's view is rebuilt from the store (nothing of the
// failed attempt was produced or persisted), and the batch runs again with
// that record sent to the DLQ instead. Any other failure is retried with the
// backoff while the partition reports a fault: not ready, its stuck time in
// streamworker_partition_stuck_seconds, and an error line per backoff step
// (at most one a second).

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/topics"
)

// recordKey names an input record: its partition and offset (a held event
// of a release is named by the input record it copies).
type recordKey struct {
	partition int32
	offset    int64
}

func keyOf(r *kgo.Record) recordKey { return recordKey{r.Partition, r.Offset} }

// poisonError names the record that made an attempt of a batch fail.
type poisonError struct {
	partition int32
	offset    int64
	stage     string // where it failed: decode, process, encode
	reason    string // the DLQ reason: internal_error, output_too_large
	detail    string
	stack     []byte // of a panic
	// aggregate is the record's user, when it decoded: with
	// input.on_poison: park, that user is parked (park.go).
	aggregate string
}

func (e *poisonError) key() recordKey { return recordKey{e.partition, e.offset} }

func (e *poisonError) Error() string {
	return fmt.Sprintf("record at offset %d failed in %s: %s: %s", e.offset, e.stage, e.reason, e.detail)
}

// internalError is a panic that no record can be blamed for: the batch is
// retried with the backoff, and the partition reports a fault.
type internalError struct {
	stage string
	value any
	stack []byte
}

func (e *internalError) Error() string { return fmt.Sprintf("panic in %s: %v", e.stage, e.value) }

// guard runs f, a stage over the batch's records, and turns a panic into a
// poisonError naming the record in hand (p.cur), or into an internalError
// when there is none or that record already failed once.
func (p *partition) guard(stage string, f func()) (err error) {
	p.cur, p.curAgg = nil, ""
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		stack := debug.Stack()
		p.w.m.internalErrors.WithLabelValues(stage).Inc()
		if r := p.cur; r != nil {
			if _, again := p.poison[keyOf(r)]; !again {
				err = &poisonError{partition: r.Partition, offset: r.Offset, stage: stage, reason: "internal_error", detail: fmt.Sprint(v), stack: stack, aggregate: p.curAgg}
				return
			}
		}
		err = &internalError{stage: stage, value: v, stack: stack}
	}()
	f()
	return nil
}

// blame records the poison record of a failed attempt, so that the next
// attempt sends it to the DLQ (see decode).
func (p *partition) blame(e *poisonError) {
	if p.poison == nil {
		p.poison = make(map[recordKey]*poisonError)
	}
	p.poison[e.key()] = e
	args := []any{"partition", p.id, "offset", e.offset, "stage", e.stage, "reason", e.reason, "error", e.detail}
	if e.stack != nil {
		args = append(args, "stack", string(e.stack))
	}
	if p.w.opts.OnPoison == PoisonPark && e.aggregate != "" {
		args = append(args, "aggregate", e.aggregate)
		p.w.log.Error("record failed; sending it to the DLQ, parking its user and running its batch again without it", args...)
		return
	}
	p.w.log.Error("record failed; sending it to the DLQ and running its batch again without it", args...)
}

// poisoned sends r to the DLQ if an earlier attempt blamed it, and reports
// whether it did. With input.on_poison: park, it also parks r's user, in
// r's place in the batch.
func (p *partition) poisoned(r *kgo.Record) bool {
	e, ok := p.poison[keyOf(r)]
	if !ok {
		return false
	}
	p.dlq(r, "", e.reason, e.detail, e.stage)
	if p.w.opts.OnPoison == PoisonPark && e.aggregate != "" {
		p.b.items = append(p.b.items, item{rec: r, ev: topics.Event{AggregateID: e.aggregate}, kind: parkUser, park: e})
	}
	return true
}

// conflictFaultAfter is how many rejected state writes in a row a batch may
// meet before the partition reports a fault: a conflict is normal right after
// a rebalance, not several times over.
const conflictFaultAfter = 3

// fault records whether the partition is retrying a failed call: fetching
// pauses and the worker reports not ready until the call succeeds.
func (p *partition) fault(on bool, op string, err error) {
	now := p.w.opts.Now()
	if !on {
		if p.faulting {
			since := time.Unix(0, p.faultSince.Swap(0))
			p.lost += max(now.Sub(since), 0) // not counted against open gaps
			p.faulting = false
			p.faultAttempts = 0
			p.w.faulting.Add(-1)
			p.w.log.Info("recovered", "partition", p.id, "op", op, "stuck_for", now.Sub(since).Round(time.Millisecond))
			p.maybeResume()
		}
		return
	}
	p.pauseMu.Lock()
	p.pauseLocked()
	p.pauseMu.Unlock()
	if !p.faulting {
		p.faulting = true
		p.faultSince.Store(now.UnixNano())
		p.w.faulting.Add(1)
	}
	p.faultAttempts++
	if now.Sub(p.lastFaultLog) >= time.Second {
		p.lastFaultLog = now
		p.w.log.Error("partition stuck: retrying a failed call", "partition", p.id, "op", op,
			"attempt", p.faultAttempts, "stuck_for", now.Sub(time.Unix(0, p.faultSince.Load())).Round(time.Millisecond), "err", err)
	}
}

// stuckFor returns how long the partition has been retrying, or waiting on
// Kafka beyond StallBound (see stall.go), 0 if it is neither.
func (p *partition) stuckFor(now time.Time) time.Duration {
	d := max(p.callStall(now), p.w.kafkaStall(now))
	if since := p.faultSince.Load(); since != 0 {
		d = max(d, now.Sub(time.Unix(0, since)))
	}
	return d
}
