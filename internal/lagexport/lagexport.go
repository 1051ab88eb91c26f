// Package lagexport reads a consumer group's lag from the brokers with kadm
// and exports it as streamworker_group_lag{group,topic,partition}: every
// partition of the group's topics exactly once, whether the group has
// members or not. A worker exports only the partitions it owns (so a sum over
// workers double-counts a partition during a hand-over and shows nothing
// when no worker runs); this exporter is the group's lag as Kafka sees it.
package lagexport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Partition is the lag of one partition.
type Partition struct {
	Topic     string
	Partition int32
	Lag       int64
}

// Exporter reads the lag of one group and is a prometheus.Collector of the
// last read. It is safe for concurrent use.
type Exporter struct {
	adm    *kadm.Client
	group  string
	topics []string
	latest bool

	lagDesc  *prometheus.Desc
	readTime prometheus.Gauge
	errors   prometheus.Counter

	mu   sync.Mutex
	last []Partition
}

// New returns an Exporter of group's lag. topics are the topics the group
// consumes: their partitions are exported even when the group has never
// committed to them and no member is assigned them, with the lag a new
// consumer would start with (startOffset "earliest": every retained record;
// "latest": none), as the workers' kafka.start_offset does.
func New(adm *kadm.Client, group string, topics []string, startOffset string) *Exporter {
	return &Exporter{
		adm:    adm,
		group:  group,
		topics: slices.Clone(topics),
		latest: startOffset == "latest",
		lagDesc: prometheus.NewDesc("streamworker_group_lag",
			"Records of the partition not yet committed by the consumer group, read from the brokers (kadm).",
			[]string{"group", "topic", "partition"}, nil),
		readTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamworker_group_lag_last_read_timestamp_seconds",
			Help: "Unix time of the last successful read of the group's lag.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamworker_group_lag_read_errors_total",
			Help: "Reads of the group's lag that failed; the lag series are dropped until a read succeeds.",
		}),
	}
}

// Read reads the group's lag once and keeps it for Collect. It returns one
// Partition per partition, sorted by topic and partition. On error the kept
// lag is dropped, so that a stale lag is never exported as current.
func (e *Exporter) Read(ctx context.Context) ([]Partition, error) {
	parts, err := e.read(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.errors.Inc()
		e.last = nil
		return nil, err
	}
	e.readTime.SetToCurrentTime()
	e.last = parts
	return slices.Clone(parts), nil
}

func (e *Exporter) read(ctx context.Context) ([]Partition, error) {
	lags, err := e.adm.Lag(ctx, e.group)
	if err != nil {
		return nil, fmt.Errorf("group %s lag: %w", e.group, err)
	}
	gl, ok := lags[e.group]
	if !ok {
		return nil, fmt.Errorf("group %s lag: not in the response", e.group)
	}
	byKey := make(map[Partition]int64) // Lag field zero: the key
	switch err := gl.Error(); {
	case errors.Is(err, kerr.GroupIDNotFound):
		// A group that never existed (some brokers answer so rather than
		// with state Dead): no commits, no members.
	case err != nil:
		return nil, fmt.Errorf("group %s lag: %w", e.group, err)
	default:
		for _, l := range gl.Lag.Sorted() {
			if l.Err != nil {
				return nil, fmt.Errorf("group %s lag of %s/%d: %w", e.group, l.Topic, l.Partition, l.Err)
			}
			lag := l.Lag
			if e.latest && l.Commit.At < 0 {
				// kadm counts an uncommitted partition from its start; a
				// consumer starting at the latest offset has nothing to read.
				lag = 0
			}
			byKey[Partition{Topic: l.Topic, Partition: l.Partition}] = lag
		}
	}
	// Partitions of the group's topics that it never committed to and that
	// no member is assigned: kadm leaves them out.
	if len(e.topics) > 0 {
		ends, err := e.adm.ListEndOffsets(ctx, e.topics...)
		if err != nil {
			return nil, fmt.Errorf("end offsets of %v: %w", e.topics, err)
		}
		var starts kadm.ListedOffsets
		if !e.latest {
			if starts, err = e.adm.ListStartOffsets(ctx, e.topics...); err != nil {
				return nil, fmt.Errorf("start offsets of %v: %w", e.topics, err)
			}
		}
		var missing error
		ends.Each(func(o kadm.ListedOffset) {
			k := Partition{Topic: o.Topic, Partition: o.Partition}
			if _, ok := byKey[k]; ok {
				return
			}
			if o.Err != nil {
				missing = fmt.Errorf("end offset of %s/%d: %w", o.Topic, o.Partition, o.Err)
				return
			}
			lag := int64(0)
			if !e.latest {
				lag = o.Offset
				if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
					lag -= s.Offset
				}
			}
			byKey[k] = max(lag, 0)
		})
		if missing != nil {
			return nil, missing
		}
	}
	parts := make([]Partition, 0, len(byKey))
	for k, lag := range byKey {
		k.Lag = lag
		parts = append(parts, k)
	}
	slices.SortFunc(parts, func(a, b Partition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return parts, nil
}

// Run reads the lag now and then every interval until ctx ends, logging
// failed reads.
func (e *Exporter) Run(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		if _, err := e.Read(rctx); err != nil && ctx.Err() == nil {
			log.Warn("reading the group's lag failed", "group", e.group, "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.lagDesc
	e.readTime.Describe(ch)
	e.errors.Describe(ch)
}

// Collect implements prometheus.Collector: the lag of the last read.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	last := e.last
	e.mu.Unlock()
	for _, p := range last {
		ch <- prometheus.MustNewConstMetric(e.lagDesc, prometheus.GaugeValue, float64(p.Lag),
			e.group, p.Topic, strconv.Itoa(int(p.Partition)))
	}
	e.readTime.Collect(ch)
	e.errors.Collect(ch)
}

// Descs describes the metrics an Exporter exports, for checks of the
// dashboards and alert rules that read them.
func Descs() []*prometheus.Desc {
	ch := make(chan *prometheus.Desc, 8)
	New(nil, "", nil, "").Describe(ch)
	close(ch)
	var descs []*prometheus.Desc
	for d := range ch {
		descs = append(descs, d)
	}
	return descs
}
