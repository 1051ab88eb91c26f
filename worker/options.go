package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/topics"
)

// Unknown-type policies for Options.UnknownTypes.
const (
	UnknownSkip = "skip"
	UnknownDLQ  = "dlq"
)

// Options configures a Worker. The zero value of every field but Kafka,
// Redis and Group takes the documented default.
type Options struct {
	// Kafka holds the client options that say how to reach the cluster:
	// seed brokers, TLS, SASL, client ID. The worker adds the group,
	// consuming and producing options itself.
	Kafka []kgo.Opt
	// Group is the consumer group.
	Group string
	// Topics names the input and output topics.
	Topics topics.Names
	// StartAtEnd makes a new group start at the end of the input instead of
	// the earliest offset.
	StartAtEnd bool
	// CommitInterval is how often progress is committed (default 1s).
	CommitInterval time.Duration
	// MaxPollRecords bounds the records taken from the client per poll
	// (default 5000).
	MaxPollRecords int
	// FetchMaxPartitionBytes bounds the (compressed) bytes one fetch
	// returns per partition, and so the records a partition holds in
	// memory (default 512 KiB).
	FetchMaxPartitionBytes int
	// FetchMinBytes and FetchMaxWait: a fetch waits up to FetchMaxWait for
	// FetchMinBytes (defaults 16 KiB and 10ms; at least 10ms).
	FetchMinBytes int
	FetchMaxWait  time.Duration
	// SessionTimeout and RebalanceTimeout are the group timeouts (defaults
	// 45s and 60s).
	SessionTimeout, RebalanceTimeout time.Duration

	// Redis holds aggregate state and dedupe marks. Single, Sentinel and
	// Cluster clients all work.
	Redis redis.UniversalClient
	// KeyPrefix prefixes every Redis key (default "sw").
	KeyPrefix string
	// DedupeTTL is how long an applied event's dedupe mark lives
	// (default 24h).
	DedupeTTL time.Duration
	// RecentSize is the number of recently applied event IDs remembered
	// per partition in front of Redis (default 10000; negative disables it).
	RecentSize int
	// CacheSize is the number of aggregate states kept in memory per
	// worker, shared by its partitions (default 50000; negative disables
	// the cache).
	CacheSize int

	// Sequencing bounds the reorder buffers and sets the gap timeout.
	Sequencing sequencing.Config
	// MaxInputBytes rejects larger input values to the DLQ (default 1 MiB).
	MaxInputBytes int
	// UnknownTypes is UnknownSkip (default) or UnknownDLQ.
	UnknownTypes string
	// CoalesceAggregates publishes one aggregated snapshot per user per
	// batch instead of one per applied event.
	CoalesceAggregates bool
	// Processors configures aggregation, anomaly detection and milestones.
	Processors processors.Config

	// RetryInitial and RetryMax bound the backoff of Redis and Kafka
	// retries (defaults 100ms and 10s).
	RetryInitial, RetryMax time.Duration
	// ShutdownTimeout bounds the drain on shutdown and on revoke
	// (default 30s).
	ShutdownTimeout time.Duration
	// LagInterval is how often consumer lag is read from the cluster
	// (default 5s).
	LagInterval time.Duration

	// Logger receives the worker's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the worker's and the Kafka client's metrics; nil
	// registers nothing.
	Registerer prometheus.Registerer
	// Now is the wall clock (default time.Now); it drives gap timeouts
	// and lag ages, never the processors.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Topics == (topics.Names{}) {
		o.Topics = topics.DefaultNames()
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = time.Second
	}
	if o.MaxPollRecords <= 0 {
		o.MaxPollRecords = 5000
	}
	if o.FetchMaxPartitionBytes <= 0 {
		o.FetchMaxPartitionBytes = 512 << 10
	}
	if o.FetchMinBytes <= 0 {
		o.FetchMinBytes = 16 << 10
	}
	o.FetchMaxWait = max(o.FetchMaxWait, 10*time.Millisecond) // the default, and the client's floor
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 45 * time.Second
	}
	if o.RebalanceTimeout <= 0 {
		o.RebalanceTimeout = 60 * time.Second
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "sw"
	}
	if o.DedupeTTL <= 0 {
		o.DedupeTTL = 24 * time.Hour
	}
	if o.RecentSize == 0 {
		o.RecentSize = 10_000
	}
	if o.CacheSize == 0 {
		o.CacheSize = 50_000
	}
	if o.MaxInputBytes <= 0 {
		o.MaxInputBytes = 1 << 20
	}
	if o.UnknownTypes == "" {
		o.UnknownTypes = UnknownSkip
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.LagInterval <= 0 {
		o.LagInterval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *Options) validate() error {
	var errs []error
	if len(o.Kafka) == 0 {
		errs = append(errs, errors.New("worker: no Kafka options (seed brokers)"))
	}
	if o.Group == "" {
		errs = append(errs, errors.New("worker: empty consumer group"))
	}
	if o.Redis == nil {
		errs = append(errs, errors.New("worker: no Redis client"))
	}
	if o.UnknownTypes != UnknownSkip && o.UnknownTypes != UnknownDLQ {
		errs = append(errs, fmt.Errorf("worker: unknown-types policy %q is neither %q nor %q", o.UnknownTypes, UnknownSkip, UnknownDLQ))
	}
	return errors.Join(errs...)
}
