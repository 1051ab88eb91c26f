package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/worker"
)

// Names returns the topic names of c.
func Names(c config.Topics) topics.Names {
	return topics.Names{Input: c.Input, Aggregates: c.Aggregates, Milestones: c.Milestones,
		Anomalies: c.Anomalies, DLQ: c.DLQ, Gaps: c.Gaps, Parked: c.Parked}
}

// ProcessorConfig returns the processor settings of c.
func ProcessorConfig(c config.Config) processors.Config {
	pc := processors.DefaultConfig()
	pc.MaxResources = c.Aggregation.MaxResources
	pc.MaxActions = c.Aggregation.MaxActions
	pc.Anomaly.Window = c.Anomaly.Window
	pc.Anomaly.Multiplier = c.Anomaly.Multiplier
	pc.Anomaly.MinEvents = c.Anomaly.MinEvents
	pc.Anomaly.DefaultAverageRate = c.Anomaly.DefaultAverageRate
	pc.Anomaly.MinAverageRate = c.Anomaly.MinAverageRate
	pc.Milestones.Every = int64(c.Milestones.Every)
	pc.Milestones.Thresholds = nil
	for _, t := range c.Milestones.Thresholds {
		pc.Milestones.Thresholds = append(pc.Milestones.Thresholds, int64(t))
	}
	return pc
}

// WorkerOptions maps a validated configuration onto worker options; the
// caller adds the clients, logger and registerer.
func WorkerOptions(c config.Config) (worker.Options, error) {
	kopts, err := KafkaOpts(c.Kafka)
	if err != nil {
		return worker.Options{}, err
	}
	return worker.Options{
		Kafka:                  kopts,
		Group:                  c.Kafka.Group,
		Topics:                 Names(c.Topics),
		StartAtEnd:             c.Kafka.StartOffset == "latest",
		CommitInterval:         c.Kafka.CommitInterval,
		MaxPollRecords:         c.Kafka.MaxPollRecords,
		FetchMaxPartitionBytes: int(c.Kafka.FetchMaxPartitionBytes),
		FetchMinBytes:          int(c.Kafka.FetchMinBytes),
		FetchMaxWait:           c.Kafka.FetchMaxWait,
		SessionTimeout:         c.Kafka.SessionTimeout,
		RebalanceTimeout:       c.Kafka.RebalanceTimeout,
		KeyPrefix:              c.Redis.KeyPrefix,
		DedupeTTL:              c.Dedupe.TTL,
		MinReplicasAcked:       c.Redis.MinReplicasAcked,
		ReplicaAckTimeout:      c.Redis.ReplicaAckTimeout,
		RecentSize:             c.Dedupe.RecentSize,
		CacheSize:              c.State.CacheSize,
		Sequencing: sequencing.Config{
			MaxPerAggregate: c.Sequencing.MaxBuffered,
			MaxPerPartition: c.Sequencing.MaxBufferedPartition,
			MaxBytes:        int64(c.Sequencing.MaxBufferedBytes),
			GapTimeout:      c.Sequencing.GapTimeout,
		},
		Limits:             c.Limits(),
		MaxMessageBytes:    int(c.Kafka.MaxMessageBytes),
		UnknownTypes:       c.Input.UnknownTypes,
		OnPoison:           c.Input.OnPoison,
		CoalesceAggregates: c.Outputs.CoalesceAggregates,
		Processors:         ProcessorConfig(c),
		Retry:              worker.Backoff{Initial: c.Retry.InitialBackoff, Max: c.Retry.MaxBackoff},
		ShutdownTimeout:    c.Shutdown.Timeout,
		LagInterval:        c.Kafka.LagInterval,
	}, nil
}

// Run runs a worker configured by c, with its metrics and health endpoint
// on c.HTTP.Addr, until ctx is cancelled, then drains it. reg may be nil for
// a new registry.
func Run(ctx context.Context, c config.Config, log *slog.Logger, reg *prometheus.Registry) error {
	return RunOn(ctx, c, log, reg, nil)
}

// RunOn is Run with the metrics and health endpoint served on ln, a
// listener the caller bound (and so knows the address of, port 0
// included); a nil ln listens on c.HTTP.Addr. RunOn closes ln.
func RunOn(ctx context.Context, c config.Config, log *slog.Logger, reg *prometheus.Registry, ln net.Listener) error {
	if ln != nil {
		defer ln.Close()
	}
	if reg == nil {
		reg = NewRegistry()
	}
	opts, err := WorkerOptions(c)
	if err != nil {
		return err
	}
	rc, err := RedisClient(c.Redis)
	if err != nil {
		return err
	}
	defer rc.Close()
	opts.Redis, opts.Logger, opts.Registerer = rc, log, reg
	w, err := worker.New(opts)
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = Listen(c.HTTP.Addr); err != nil {
			return err
		}
	}
	log.Info("serving metrics and health", "addr", ln.Addr().String())
	h := Handler(reg, w.Ready)
	if c.HTTP.Pprof {
		h = WithPprof(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		logProbe(gctx, c, log)
		return nil
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		err := w.Run(gctx)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return err
	})
	return g.Wait()
}

// Listen binds the metrics and health address addr (http.addr).
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr %s: %w", addr, err)
	}
	return ln, nil
}

// WithPprof serves the runtime profiles of net/http/pprof under
// /debug/pprof/ and everything else with h.
func WithPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics from reg, /livez (the process answers) and
// /readyz (ready reports true).
func Handler(reg prometheus.Gatherer, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: group not joined, Redis unreachable, retrying a failed call, or calls hanging", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
