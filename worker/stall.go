package worker

// Stalls: calls that hang rather than fail. A produce to a broker that
// stopped answering (a network partition, a blackholed connection) does not
// return an error for as long as the client keeps retrying, a consumer whose
// brokers all went silent sees no error either, and a Redis call on a dead
// connection takes up to (retries + 1) x redis.timeout to fail; without
// this, the worker would wait while saying it is ready, and the partition
// would not report stuck. The bound is the group session timeout: a member
// that cannot reach the coordinator for that long loses its partitions
// anyway.

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// StallBound is how long a partition's call to Kafka or Redis may hang,
// Kafka stay silent, or offset commits keep failing, before the worker
// reports not ready (and its partitions report stuck): kafka.session_timeout.
func StallBound(opts Options) time.Duration { return opts.SessionTimeout }

// kafkaHealth is a kgo hook that records when a broker last answered.
type kafkaHealth struct{ w *Worker }

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (h kafkaHealth) OnBrokerE2E(_ kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	if e2e.Err() == nil {
		h.w.kafkaOK.Store(time.Now().UnixNano())
	}
}

// since returns how long ago the unix-nanosecond time t was when that is
// more than bound, else 0 (also when t is 0: nothing pending).
func since(t int64, now time.Time, bound time.Duration) time.Duration {
	if t == 0 {
		return 0
	}
	if d := now.Sub(time.Unix(0, t)); d > bound {
		return d
	}
	return 0
}

// kafkaStall returns how long Kafka has been silent, or offset commits
// have been failing, when that exceeds the bound; else 0.
func (w *Worker) kafkaStall(now time.Time) time.Duration {
	bound := StallBound(w.opts)
	return max(since(w.kafkaOK.Load(), now, bound), since(w.commitFailing.Load(), now, bound))
}

// callStall returns how long the partition's call in flight has been
// hanging, when that exceeds the bound; else 0.
func (p *partition) callStall(now time.Time) time.Duration {
	return since(p.callSince.Load(), now, StallBound(p.w.opts))
}

// stalled reports whether Kafka is silent, commits keep failing, or a
// partition's call hangs, beyond the bound; it logs the first report of
// each stall.
func (w *Worker) stalled() bool {
	now := time.Now()
	d := w.kafkaStall(now)
	w.mu.Lock()
	for _, p := range w.parts {
		d = max(d, p.callStall(now))
	}
	w.mu.Unlock()
	was := w.stallLogged.Swap(d > 0)
	if d > 0 && !was {
		w.log.Error("calls hang, or Kafka fails, beyond kafka.session_timeout; the worker is not ready",
			"for", d.Round(time.Millisecond), "bound", StallBound(w.opts))
	}
	if d == 0 && was {
		w.log.Info("calls answer again")
	}
	return d > 0
}

// The sequencing clock. A sequence gap is given up once it has been open
// for sequencing.gap_timeout; time during which the partition could not
// read or process records does not count, so that an outage of Kafka or
// Redis shorter than the gap timeout plus its own length does not give up a
// gap whose missing event is merely not read yet. Not counted: the time a
// partition retried a failed call (added when the fault clears), the part of
// a call beyond silenceGrace, and the time Kafka did not answer beyond
// silenceGrace. Overlaps may be counted twice, which only lengthens the wait.

// silenceGrace is how long Kafka may go without answering, or a call take,
// before the sequencing clock stops: a fetch long-polls for FetchMaxWait at
// most.
func (w *Worker) silenceGrace() time.Duration { return max(2*w.opts.FetchMaxWait, time.Second) }

// seqClock returns the partition's sequencing clock: the worker's clock
// less the time not counted. It runs on the partition's goroutine.
func (p *partition) seqClock() time.Time {
	real := time.Now()
	from := time.Unix(0, p.w.kafkaOK.Load()).Add(p.w.silenceGrace())
	if p.silenceMark.After(from) {
		from = p.silenceMark
	}
	if real.After(from) {
		p.lost += real.Sub(from)
	}
	p.silenceMark = real
	return p.w.opts.Now().Add(-p.lost)
}
