// Package dev is the embedded mode: an in-process Kafka cluster (kfake, on a
// real TCP port), a Redis, the worker, a demo load and a live summary, in
// one command with nothing to install.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/topics/admin"
)

// Options configures the embedded mode.
type Options struct {
	// Duration stops the run by itself after this long; 0 runs until the
	// context is cancelled.
	Duration time.Duration
	// Rate is the demo load in events per second.
	Rate float64
	// Users is the number of distinct users of the demo load.
	Users int
	// Partitions of the input topic.
	Partitions int
	// HTTPAddr serves /metrics, /livez and /readyz.
	HTTPAddr string
	// Seed makes the demo load reproducible.
	Seed int64
	// Out receives the summary; Log the worker's logs.
	Out io.Writer
	Log *slog.Logger
}

// Validate reports the first option out of its range, naming its flag.
func (o Options) Validate() error {
	switch {
	case o.Duration < 0:
		return fmt.Errorf("--duration %s: want 0 (until stopped) or more", o.Duration)
	case o.Rate < 0:
		return fmt.Errorf("--rate %g: want events per second, or 0 for as fast as possible", o.Rate)
	case o.Users < 1:
		return fmt.Errorf("--users %d: want at least 1", o.Users)
	case o.Partitions < 1:
		return fmt.Errorf("--partitions %d: want at least 1", o.Partitions)
	}
	return nil
}

// Run starts everything, prints a summary line every second, and stops
// cleanly when ctx is cancelled or Duration has passed. Options that
// Validate refuses are refused before anything starts.
func Run(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	names := topics.DefaultNames()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		return fmt.Errorf("starting the in-process Kafka cluster: %w", err)
	}
	defer cluster.Close()
	seeds := cluster.ListenAddrs()
	fmt.Fprintf(o.Out, "kafka   in-process kfake cluster on %v\n", seeds)

	redis, err := startRedis(ctx)
	if err != nil {
		return err
	}
	defer redis.stop()
	fmt.Fprintf(o.Out, "redis   %s on %s\n", redis.Kind, redis.Addr)

	c := config.Default()
	c.Kafka.Brokers = seeds
	c.Kafka.Group = "streamworker-dev"
	c.Redis.Addrs = []string{redis.Addr}
	c.HTTP.Addr = o.HTTPAddr
	c.Sequencing.GapTimeout = 5 * time.Second
	c.Shutdown.Timeout = 10 * time.Second
	if err := c.Validate(); err != nil {
		return err
	}

	kopts, _ := app.KafkaOpts(c.Kafka)
	cl, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := admin.Ensure(ctx, kadm.NewClient(cl), topics.Specs(names, int32(o.Partitions), 1)); err != nil {
		return fmt.Errorf("creating topics: %w", err)
	}
	fmt.Fprintf(o.Out, "topics  %s (%d partitions) -> %s, %s, %s, %s, %s\n", names.Input, o.Partitions,
		names.Aggregates, names.Milestones, names.Anomalies, names.DLQ, names.Gaps)
	ln, err := app.Listen(o.HTTPAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(o.Out, "http    %s  /livez  /readyz\n", metricsURL(ln.Addr()))
	fmt.Fprintf(o.Out, "load    %.0f events/s over %d users: 5%% duplicates, 3%% out of order, 1%% malformed, anomaly bursts\n\n", o.Rate, o.Users)

	gen, err := loadgen.New(loadgen.Config{
		Users: o.Users, Rate: o.Rate, Duplicates: 0.05, OutOfOrder: 0.03, Malformed: 0.01,
		// 15s of event time between a user's events keeps ordinary users
		// below the anomaly threshold: only the bursts fire.
		Bursts: 0.05, Seed: o.Seed, Topic: names.Input, Step: 15 * time.Second,
	})
	if err != nil {
		return err
	}

	reg := app.NewRegistry()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return app.RunOn(gctx, c, o.Log, reg, ln) })
	g.Go(func() error {
		_, err := loadgen.Produce(gctx, cl, gen, o.Rate, nil)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return err
	})
	g.Go(func() error { summarize(gctx, o.Out, reg); return nil })
	err = g.Wait()
	final := read(reg)
	fmt.Fprintf(o.Out, "\nstopped: consumed %.0f, processed %.0f, duplicates dropped %.0f, milestones %.0f, anomalies %.0f, dlq %.0f, gaps %.0f\n",
		final.consumed, final.processed, final.duplicates, final.milestones, final.anomalies, final.dlq, final.gaps)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// metricsURL is the URL of /metrics on a bound address: its real port, and
// localhost for an address bound on every interface.
func metricsURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/metrics"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics"
}

// counters is one reading of the metrics the summary shows.
type counters struct {
	consumed, processed, duplicates, buffered, milestones, anomalies, dlq, gaps, lag float64
}

func read(reg prometheus.Gatherer) counters {
	mfs, _ := reg.Gather()
	sum := func(name string) float64 {
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			var s float64
			for _, m := range mf.GetMetric() {
				s += value(mf.GetType(), m)
			}
			return s
		}
		return 0
	}
	return counters{
		consumed:   sum("streamworker_events_consumed_total"),
		processed:  sum("streamworker_events_processed_total"),
		duplicates: sum("streamworker_events_duplicate_total"),
		buffered:   sum("streamworker_buffered_events"),
		milestones: sum("streamworker_milestones_total"),
		anomalies:  sum("streamworker_anomalies_total"),
		dlq:        sum("streamworker_dlq_total"),
		gaps:       sum("streamworker_gaps_total"),
		lag:        sum("streamworker_consumer_lag"),
	}
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	return 0
}

func summarize(ctx context.Context, w io.Writer, reg prometheus.Gatherer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := read(reg)
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := read(reg)
			printSummary(w, prev, cur, now.Sub(last).Seconds())
			prev, last = cur, now
		}
	}
}

func printSummary(w io.Writer, prev, cur counters, secs float64) {
	fmt.Fprintf(w, "events/s %7.0f | processed %8.0f | duplicates dropped %6.0f | buffered %4.0f | milestones %5.0f | anomalies %4.0f | dlq %5.0f | gaps %3.0f | lag %5.0f\n",
		(cur.consumed-prev.consumed)/secs, cur.processed, cur.duplicates, cur.buffered,
		cur.milestones, cur.anomalies, cur.dlq, cur.gaps, cur.lag)
}
