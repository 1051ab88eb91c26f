package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/topics/admin"
)

// cluster is a fresh in-process kfake cluster with the streamworker topics.
// It counts the produce requests it receives while counting is on.
type cluster struct {
	fake  *kfake.Cluster
	seeds []string
	names topics.Names
	cl    *kgo.Client // producer of the input and admin requests
	adm   *kadm.Client

	counting  atomic.Bool
	produces  atomic.Int64 // produce requests
	batches   atomic.Int64 // partition batches in those requests
	producing atomic.Int64 // records in those batches
}

// newCluster starts a one-broker kfake cluster and creates the topics of
// topics.Specs with the given partition count.
func newCluster(ctx context.Context, partitions int) (*cluster, error) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("bench: start kfake: %w", err)
	}
	c := &cluster{fake: fake, seeds: fake.ListenAddrs(), names: topics.DefaultNames()}
	fake.ControlKey(int16(kmsg.Produce), c.countProduce)
	c.cl, err = kgo.NewClient(kgo.SeedBrokers(c.seeds...),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(200_000),
		// kadm answers from the client's metadata cache: keep it from
		// serving the "unknown topic" seen before the topics existed.
		kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		fake.Close()
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	c.adm = kadm.NewClient(c.cl)
	if _, err := admin.Ensure(ctx, c.adm, topics.Specs(c.names, int32(partitions), -1)); err != nil {
		c.close()
		return nil, fmt.Errorf("bench: create topics: %w", err)
	}
	return c, nil
}

// countProduce is a kfake control function that counts produce requests,
// their partition batches and records, and lets the cluster handle them.
func (c *cluster) countProduce(req kmsg.Request) (kmsg.Response, error, bool) {
	if !c.counting.Load() {
		return nil, nil, false
	}
	pr, ok := req.(*kmsg.ProduceRequest)
	if !ok {
		return nil, nil, false
	}
	c.produces.Add(1)
	for _, t := range pr.Topics {
		c.batches.Add(int64(len(t.Partitions)))
		for _, p := range t.Partitions {
			c.producing.Add(int64(batchRecords(p.Records)))
		}
	}
	return nil, nil, false
}

// batchRecords returns the record count of a v2 record batch (the
// NumRecords field at byte 57); kgo sends one batch per partition.
func batchRecords(b []byte) int {
	if len(b) < 61 {
		return 0
	}
	return int(uint32(b[57])<<24 | uint32(b[58])<<16 | uint32(b[59])<<8 | uint32(b[60]))
}

// produceCounts is what countProduce saw.
type produceCounts struct{ requests, batches, records int64 }

// startCounting resets the produce counters and starts counting.
func (c *cluster) startCounting() {
	c.produces.Store(0)
	c.batches.Store(0)
	c.producing.Store(0)
	c.counting.Store(true)
}

// stopCounting stops counting and returns the counts.
func (c *cluster) stopCounting() produceCounts {
	c.counting.Store(false)
	return produceCounts{c.produces.Load(), c.batches.Load(), c.producing.Load()}
}

// close stops the client and the cluster; the cluster's memory is freed.
func (c *cluster) close() {
	c.cl.Close()
	c.fake.Close()
}

// preProduce writes the whole stream of w to the input topic as fast as the
// cluster takes it and returns the log-end offset of every input partition.
func (c *cluster) preProduce(ctx context.Context, w loadgen.Config) (map[int32]int64, error) {
	w.Topic = c.names.Input
	g, err := loadgen.New(w)
	if err != nil {
		return nil, err
	}
	if _, err := loadgen.Produce(ctx, c.cl, g, 0, nil); err != nil {
		return nil, fmt.Errorf("bench: pre-produce: %w", err)
	}
	return c.endOffsets(ctx, c.names.Input)
}

// endOffsets returns the log-end offset of every partition of topic.
func (c *cluster) endOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	listed, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("bench: list end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	var errs error
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && errs == nil {
			errs = fmt.Errorf("bench: end offset of %s/%d: %w", topic, o.Partition, o.Err)
		}
		ends[o.Partition] = o.Offset
	})
	return ends, errs
}

// total sums offsets.
func total(offsets map[int32]int64) int64 {
	var n int64
	for _, o := range offsets {
		n += o
	}
	return n
}

// committedReach reports whether group has committed ends on the input.
func (c *cluster) committedReach(ctx context.Context, group string, ends map[int32]int64) (bool, int64, error) {
	offs, err := c.adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, 0, err
	}
	done, n := true, int64(0)
	for p, end := range ends {
		o, ok := offs.Lookup(c.names.Input, p)
		if !ok || o.Err != nil {
			done = false
			continue
		}
		n += o.At
		if o.At < end {
			done = false
		}
	}
	return done, n, nil
}

// waitDrained polls the group's committed offsets every pollEvery until they
// reach ends, calling tick (if not nil) at each poll, and returns the time
// the drain was first seen. It gives up after timeout, or when tick returns
// an error.
func (c *cluster) waitDrained(ctx context.Context, group string, ends map[int32]int64, timeout time.Duration, tick func() error) (time.Time, error) {
	const pollEvery = 100 * time.Millisecond
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	var last int64
	for {
		done, n, err := c.committedReach(ctx, group, ends)
		now := time.Now()
		if err == nil && done {
			return now, nil
		}
		if err == nil {
			last = n
		}
		if now.After(deadline) {
			return now, fmt.Errorf("bench: group %s committed %d of %d records within %v", group, last, total(ends), timeout)
		}
		if tick != nil {
			if err := tick(); err != nil {
				return now, err
			}
		}
		select {
		case <-ctx.Done():
			return now, ctx.Err()
		case <-t.C:
		}
	}
}
