package worker

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/streamworker/streamworker/state"
)

// Backoff is the one retry policy of the worker: capped exponential backoff
// with full jitter. Before retry attempt n (0 for the first retry) it waits a
// uniformly random time in [0, min(Max, Initial × 2^n)], so that a fleet of
// workers that failed together does not retry in lockstep.
//
// A Backoff is a value; it is safe for concurrent use.
type Backoff struct {
	Initial, Max time.Duration
	// rand returns a uniform int64 in [0, n); nil means math/rand/v2.
	rand func(n int64) int64
}

// Ceiling returns the upper bound of the delay before retry attempt n.
func (b Backoff) Ceiling(attempt int) time.Duration {
	d := b.Initial
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Delay returns the jittered delay before retry attempt n.
func (b Backoff) Delay(attempt int) time.Duration {
	ceiling := int64(b.Ceiling(attempt))
	if ceiling <= 0 {
		return 0
	}
	r := b.rand
	if r == nil {
		r = rand.Int64N
	}
	return time.Duration(r(ceiling + 1))
}

// transient reports whether err is a failure of the infrastructure that a
// retry in place may mend: Redis unreachable, loading, failing over or busy
// (see state.IsRetryable), or a Kafka produce that was not acknowledged.
// It is the one place that decides whether a failure is retried in place.
func transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, errProduce), errors.Is(err, errParkedRead):
		return true
	}
	return state.IsRetryable(err)
}

// errProduce wraps the failure of a produce: the records it names were not
// acknowledged and are sent again.
var errProduce = errors.New("produce not acknowledged")

// retry calls op until it succeeds, fails in a way a retry cannot mend, or
// the partition stops. While op fails transiently the partition reports a
// fault (fetching paused, the worker not ready) and waits the backoff; the
// fault lasts until the batch is done (process clears it). It returns nil,
// op's last error, or errStopped.
func (p *partition) retry(name string, op func() error) error {
	for attempt := 0; ; attempt++ {
		start := time.Now()
		p.callSince.Store(start.UnixNano()) // a call that hangs is a stall (stall.go)
		err := op()
		p.callSince.Store(0)
		if d := time.Since(start) - p.w.silenceGrace(); d > 0 {
			p.lost += d // a call that hung: not counted against open gaps
		}
		if err == nil {
			return nil
		}
		if p.stopping() {
			return errStopped
		}
		if !transient(err) {
			return err
		}
		p.fault(true, name, err)
		if !p.sleep(p.w.opts.Retry.Delay(attempt)) {
			return errStopped
		}
	}
}

// errStopped reports that the partition stopped (revoked, lost or shut down)
// while a batch was waiting to retry: the batch is abandoned, not done.
var errStopped = errors.New("partition stopped")

// sleep waits d unless the partition stops first; it reports whether it
// waited the whole time.
func (p *partition) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	case <-p.stopC:
		return false
	}
}

// stopping reports whether the partition was asked to stop or cancelled.
func (p *partition) stopping() bool {
	select {
	case <-p.stopC:
		return true
	default:
		return p.ctx.Err() != nil
	}
}
