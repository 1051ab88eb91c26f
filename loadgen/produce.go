package loadgen

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Stats counts the records Produce got acknowledged.
type Stats struct {
	Sent       int64 // acknowledged records of every kind
	Valid      int64
	Duplicates int64
	Malformed  int64
	Elapsed    time.Duration
}

// Rate returns the acknowledged records per second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// counters are the atomic form of Stats, updated by produce promises.
type counters struct {
	byKind [3]atomic.Int64
	err    atomic.Pointer[error] // the first produce error
}

func (c *counters) stats(start time.Time) Stats {
	s := Stats{
		Valid:      c.byKind[Valid].Load(),
		Duplicates: c.byKind[Duplicate].Load(),
		Malformed:  c.byKind[Malformed].Load(),
		Elapsed:    time.Since(start),
	}
	s.Sent = s.Valid + s.Duplicates + s.Malformed
	return s
}

func (c *counters) failed() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Produce writes g's records to g.Config().Topic until g ends, ctx is done
// or a record fails, then waits for every record it produced to be
// acknowledged or failed, and returns what was acknowledged.
//
// rate is in records per second; 0 means as fast as the client takes them:
// records are produced asynchronously and the client's
// kgo.MaxBufferedRecords bounds how many are in flight. A positive rate
// paces the records in batches of at most about a millisecond's worth.
// Records keep a zero timestamp so that the client stamps their produce
// time. progress, if not nil, is called about once a second from another
// goroutine (never concurrently with itself) with the counts so far.
//
// It returns ctx.Err() if ctx ended first (records still buffered are then
// failed by the client, or acknowledged), or the first produce error,
// wrapped. cl may be shared: Produce waits only for its own records. g must
// not be used by anything else while Produce runs.
func Produce(ctx context.Context, cl *kgo.Client, g *Generator, rate float64, progress func(Stats)) (Stats, error) {
	if rate < 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return Stats{}, fmt.Errorf("%w: rate %v", ErrInvalidConfig, rate)
	}
	start := time.Now()
	topic := g.Config().Topic
	var (
		c        counters
		inflight sync.WaitGroup
	)
	if progress != nil {
		stop := make(chan struct{})
		var done sync.WaitGroup
		done.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					progress(c.stats(start))
				}
			}
		})
		defer done.Wait()
		defer close(stop)
	}

	timer := time.NewTimer(time.Hour) // reset before each wait
	defer timer.Stop()
	var n int64
	for ctx.Err() == nil && c.failed() == nil {
		if rate > 0 {
			at := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
			if d := time.Until(at); d > time.Millisecond {
				timer.Reset(d)
				select {
				case <-ctx.Done():
				case <-timer.C:
				}
				continue
			}
		}
		r, ok := g.Next()
		if !ok {
			break
		}
		n++
		kind := r.Kind
		inflight.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: r.Headers},
			func(_ *kgo.Record, err error) {
				defer inflight.Done()
				if err != nil {
					c.err.CompareAndSwap(nil, &err)
					return
				}
				c.byKind[kind].Add(1)
			})
	}
	inflight.Wait()
	s := c.stats(start)
	if err := ctx.Err(); err != nil {
		return s, err
	}
	if err := c.failed(); err != nil {
		return s, fmt.Errorf("loadgen: produce to %s: %w", topic, err)
	}
	return s, nil
}
