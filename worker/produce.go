package worker

// The produce stage takes the batch's queued outputs (b.out, b.vals) and
// hands on nothing but the fact that every one of them is acknowledged by
// Kafka; it comes before persist, so that a crash in between replays the
// same events and produces the same outputs again (docs/contract.md,
// "Delivery guarantees").

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produce sends every queued output and waits for all acknowledgements,
// sending the unacknowledged ones again until none is left.
func (p *partition) produce() error {
	b := &p.b
	if len(b.out) == 0 {
		return nil
	}
	b.vals.each(func(i int, v []byte) { b.out[i].Value = v })
	todo := b.out
	err := p.retry("produce", func() error {
		results := p.w.cl.ProduceSync(p.ctx, todo...)
		var failed []*kgo.Record
		var firstErr error
		for _, res := range results {
			if res.Err != nil {
				failed = append(failed, res.Record)
				firstErr = res.Err
			}
		}
		if len(failed) == 0 {
			return nil
		}
		p.w.m.produceErrors.Add(float64(len(failed)))
		todo = failed
		return fmt.Errorf("%w: %d of %d records: %w", errProduce, len(failed), len(results), firstErr)
	})
	if err != nil {
		return err
	}
	acked := time.Now()
	for i, r := range b.out {
		p.w.m.outputs.WithLabelValues(r.Topic).Inc()
		if ts := b.outTimes[i]; !ts.IsZero() {
			p.w.m.endToEnd.Observe(acked.Sub(ts).Seconds())
		}
	}
	return nil
}
