// Package config loads the streamworker configuration from a file (YAML, or
// JSON or TOML by extension), the environment and command-line flags into a
// typed, validated Config. It is the only package that imports viper.
//
// Every setting has a key such as kafka.brokers. The same key names the file
// entry (nested maps), the flag (--kafka.brokers) and the environment variable
// (SW_KAFKA_BROKERS, see EnvName). Precedence: flags > environment > file >
// defaults. Lists are comma-separated in the environment and in flags,
// durations take a unit (30s, 5m, 24h), and byte sizes are an integer byte
// count or a number with a binary unit (64MiB). An empty environment variable
// is an empty value: refused where a value is required (SW_KAFKA_BROKERS=
// does not mean the default) and for numbers, durations, sizes and booleans.
// An SW_ variable that names no key is refused, with the closest key's
// variable as a suggestion (SW_TEST_* and the variables Kubernetes sets for a
// Service named sw... are not keys and are ignored). Keys lists every key
// with its default and documentation.
//
// The doc tags below are the reference documentation of each key: Keys, the
// flag usage strings and the README are built from them.
package config

import (
	"log/slog"
	"time"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
)

// Config is the whole streamworker configuration. A Config is a plain value:
// it is safe for concurrent use as long as nobody writes to it.
type Config struct {
	Kafka       Kafka       `yaml:"kafka"`
	Topics      Topics      `yaml:"topics"`
	Redis       Redis       `yaml:"redis"`
	Dedupe      Dedupe      `yaml:"dedupe"`
	State       State       `yaml:"state"`
	Sequencing  Sequencing  `yaml:"sequencing"`
	Input       Input       `yaml:"input"`
	Aggregation Aggregation `yaml:"aggregation"`
	Anomaly     Anomaly     `yaml:"anomaly"`
	Milestones  Milestones  `yaml:"milestones"`
	Outputs     Outputs     `yaml:"outputs"`
	HTTP        HTTP        `yaml:"http"`
	Log         Log         `yaml:"log"`
	Shutdown    Shutdown    `yaml:"shutdown"`
	Retry       Retry       `yaml:"retry"`
}

// Kafka configures the Kafka client and the consumer group.
type Kafka struct {
	Brokers        []string      `yaml:"brokers" doc:"Kafka bootstrap brokers, each host:port."`
	Group          string        `yaml:"group" doc:"Consumer group ID; not empty."`
	ClientID       string        `yaml:"client_id" doc:"Client ID sent to the brokers; not empty."`
	StartOffset    string        `yaml:"start_offset" values:"earliest|latest" doc:"Where a new consumer group starts: earliest or latest."`
	CommitInterval time.Duration `yaml:"commit_interval" doc:"Longest time between two offset commits while records are being processed (10ms to 1h)."`
	MaxPollRecords int           `yaml:"max_poll_records" doc:"Most records taken in one poll (1 to 10000)."`
	// FetchMaxPartitionBytes trades memory for throughput: each partition
	// holds about two fetches' worth of records, decompressed.
	FetchMaxPartitionBytes ByteSize `yaml:"fetch_max_partition_bytes" doc:"Most (compressed) bytes one fetch returns per partition; bounds the records held in memory (1KiB to 64MiB)."`
	// FetchMinBytes and FetchMaxWait let a fetch gather a few milliseconds
	// of records at low rates: fewer, larger batches cost less CPU per
	// event (fewer Redis and produce round trips), which at moderate rates
	// shortens the latency tail more than the wait adds.
	FetchMinBytes    ByteSize      `yaml:"fetch_min_bytes" doc:"Bytes a fetch waits for (up to fetch_max_wait) before the broker answers (1B to 64MiB)."`
	FetchMaxWait     time.Duration `yaml:"fetch_max_wait" doc:"Longest time the broker holds a fetch waiting for fetch_min_bytes (10ms to 30s)."`
	SessionTimeout   time.Duration `yaml:"session_timeout" doc:"Consumer group session timeout (6s to 30m, the broker's default group.min/max.session.timeout.ms)."`
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout" doc:"Longest time a member may take to rejoin the group during a rebalance (1s to 24h)."`
	// MaxMessageBytes must not exceed the topics' max.message.bytes (the
	// broker's message.max.bytes, 1048588 by default), or the broker
	// refuses what the worker produces.
	MaxMessageBytes ByteSize      `yaml:"max_message_bytes" doc:"Largest record the worker produces, every output and DLQ copy included (1KiB to 100MiB; at least input.max_bytes); at most the topics' max.message.bytes."`
	LagInterval     time.Duration `yaml:"lag_interval" doc:"How often consumer lag is read from the cluster (1s to 10m)."`
	SASL            SASL          `yaml:"sasl"`
	TLS             TLS           `yaml:"tls"`
}

// SASL configures Kafka authentication.
type SASL struct {
	Mechanism    string `yaml:"mechanism" values:"|PLAIN|SCRAM-SHA-256|SCRAM-SHA-512" doc:"SASL mechanism: empty (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."`
	Username     string `yaml:"username" doc:"SASL user name."`
	Password     Secret `yaml:"password" doc:"SASL password. Prefer the environment or password_file over the file and flags."`
	PasswordFile string `yaml:"password_file" doc:"File holding the SASL password (e.g. a mounted Secret); Load reads it into password."`
}

// TLS configures a TLS client connection.
type TLS struct {
	Enabled            bool   `yaml:"enabled" doc:"Connect with TLS."`
	CAFile             string `yaml:"ca_file" doc:"PEM file of the CA certificates to trust; empty means the system roots."`
	CertFile           string `yaml:"cert_file" doc:"PEM client certificate for mutual TLS; needs key_file."`
	KeyFile            string `yaml:"key_file" doc:"PEM private key of cert_file."`
	ServerName         string `yaml:"server_name" doc:"Server name to verify; empty means the host being dialled."`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" doc:"Do not verify the server certificate (testing only)."`
}

// Topics names the Kafka topics and how `topics ensure` creates them.
type Topics struct {
	Input             string `yaml:"input" doc:"Input topic of user-activity events."`
	Aggregates        string `yaml:"aggregates" doc:"Output topic of per-user aggregates (compacted)."`
	Milestones        string `yaml:"milestones" doc:"Output topic of reached milestones."`
	Anomalies         string `yaml:"anomalies" doc:"Output topic of detected anomalies."`
	DLQ               string `yaml:"dlq" doc:"Dead-letter topic for input that cannot be processed."`
	Gaps              string `yaml:"gaps" doc:"Output topic of sequence gaps given up on."`
	Parked            string `yaml:"parked" doc:"Topic of the events held for parked users (input.on_poison: park); same partition count as the input."`
	Partitions        int    `yaml:"partitions" doc:"Partitions of the topics created by topics ensure."`
	ReplicationFactor int    `yaml:"replication_factor" doc:"Replication factor of the topics created by topics ensure; -1 means the broker default."`
}

// Redis configures the Redis client (single node, Sentinel or Cluster).
type Redis struct {
	Addrs        []string      `yaml:"addr" doc:"Redis address host:port; several comma-separated addresses mean a Cluster (or Sentinels with master_name)."`
	Username     string        `yaml:"username" doc:"Redis ACL user name."`
	Password     Secret        `yaml:"password" doc:"Redis password. Prefer the environment or password_file over the file and flags."`
	PasswordFile string        `yaml:"password_file" doc:"File holding the Redis password (e.g. a mounted Secret); Load reads it into password."`
	DB           int           `yaml:"db" doc:"Redis database number (0 for Cluster)."`
	KeyPrefix    string        `yaml:"key_prefix" doc:"Prefix of every Redis key, e.g. sw gives sw:{u-42}:state."`
	MasterName   string        `yaml:"master_name" doc:"Sentinel master name; set it to use Redis Sentinel at addr."`
	TLS          TLS           `yaml:"tls"`
	DialTimeout  time.Duration `yaml:"dial_timeout" doc:"Timeout to connect to Redis (10ms to 5m)."`
	Timeout      time.Duration `yaml:"timeout" doc:"Timeout of one Redis read or write (10ms to 5m)."`
	PoolSize     int           `yaml:"pool_size" doc:"Connections per Redis node; 0 means the client default."`
	// MinReplicasAcked and ReplicaAckTimeout make a state commit wait
	// (Redis WAIT) until that many replicas have it, so that a failover
	// does not lose an acknowledged commit.
	MinReplicasAcked  int           `yaml:"min_replicas_acked" doc:"Replicas that must acknowledge each state commit (Redis WAIT) before its offsets are committed; 0 does not wait (0 to 16)."`
	ReplicaAckTimeout time.Duration `yaml:"replica_ack_timeout" doc:"Longest wait for min_replicas_acked replicas (1ms to 1m; below redis.timeout)."`
}

// Dedupe configures duplicate detection.
type Dedupe struct {
	TTL        time.Duration `yaml:"ttl" doc:"How long an applied event ID is remembered in Redis (1s to 8760h, and at least kafka.commit_interval + kafka.session_timeout + 1.25 × sequencing.gap_timeout)."`
	RecentSize int           `yaml:"recent_size" doc:"Recently applied event IDs kept in memory per partition in front of Redis; 0 disables it."`
}

// State configures the aggregate state store.
type State struct {
	// CacheSize bounds the worker's memory for state: a cached user costs
	// about 0.5 KB of heap (1 KB of RSS at the default GOGC), so the default
	// holds about 25 MB.
	CacheSize int `yaml:"cache_size" doc:"Aggregates kept in memory per worker, shared by its partitions; 0 disables the cache."`
}

// Sequencing configures the per-aggregate reorder buffer.
type Sequencing struct {
	GapTimeout           time.Duration `yaml:"gap_timeout" doc:"How long a sequence gap may stay open before it is given up (1ms to 24h)."`
	MaxBuffered          int           `yaml:"max_buffered" doc:"Most out-of-order events buffered per aggregate; at most max_buffered_partition."`
	MaxBufferedPartition int           `yaml:"max_buffered_partition" doc:"Most out-of-order events buffered per partition."`
	MaxBufferedBytes     ByteSize      `yaml:"max_buffered_bytes" doc:"Most bytes of out-of-order events buffered per partition (e.g. 64MiB); at least input.max_bytes."`
}

// Input configures input decoding.
type Input struct {
	MaxBytes            ByteSize      `yaml:"max_bytes" doc:"Largest accepted record value; larger ones go to the DLQ (1KiB to 100MiB)."`
	UnknownTypes        string        `yaml:"unknown_types" values:"skip|dlq" doc:"What to do with events of an unknown type: skip or dlq."`
	OnPoison            string        `yaml:"on_poison" values:"dlq|park" doc:"What to do with the user of a record that fails by itself (internal_error, output_too_large): dlq sends the record to the DLQ; park also holds the user's later events on topics.parked until streamworker parked release."`
	MaxIDBytes          ByteSize      `yaml:"max_id_bytes" doc:"Longest accepted event id; longer ones go to the DLQ (1B to 64KiB)."`
	MaxAggregateIDBytes ByteSize      `yaml:"max_aggregate_id_bytes" doc:"Longest accepted aggregateId (user); longer ones go to the DLQ (1B to 64KiB)."`
	MaxLabelBytes       ByteSize      `yaml:"max_label_bytes" doc:"Longest accepted action, resource and event type; longer ones go to the DLQ (1B to 64KiB)."`
	MaxTimeAhead        time.Duration `yaml:"max_time_ahead" doc:"Furthest an event's timestamp may be after its record's timestamp; later ones go to the DLQ as invalid_timestamp (1s to 87600h)."`
}

// Aggregation configures the user-activity aggregation processor.
type Aggregation struct {
	MaxResources int `yaml:"max_resources" doc:"Distinct resources counted per user; later new ones count under _other."`
	MaxActions   int `yaml:"max_actions" doc:"Distinct actions counted per user; later new ones count under _other."`
}

// Anomaly configures the high-activity anomaly detector. Rates are in events
// per minute.
type Anomaly struct {
	Window             time.Duration `yaml:"window" doc:"Sliding window of the current rate and the cooldown between anomalies; whole seconds, 1s to 24h."`
	Multiplier         float64       `yaml:"multiplier" doc:"An anomaly fires when the current rate exceeds multiplier times the average rate."`
	MinEvents          int           `yaml:"min_events" doc:"Fewest events in the window for an anomaly to fire."`
	DefaultAverageRate float64       `yaml:"default_average_rate" doc:"Average rate (events per minute) assumed while a user's history is shorter than the window."`
	MinAverageRate     float64       `yaml:"min_average_rate" doc:"Floor of the average rate (events per minute)."`
}

// Milestones configures the milestone processor.
type Milestones struct {
	Every      int   `yaml:"every" doc:"A milestone is published each time a user's total activity reaches a multiple of this."`
	Thresholds []int `yaml:"thresholds" doc:"Extra total-activity milestones, e.g. 1,10,50."`
}

// Outputs configures what is published.
type Outputs struct {
	CoalesceAggregates bool `yaml:"coalesce_aggregates" doc:"Publish one aggregate per user per batch instead of one per event."`
}

// HTTP configures the metrics and health endpoint.
type HTTP struct {
	Addr string `yaml:"addr" doc:"Listen address of /metrics, /livez and /readyz, host:port (empty host: all interfaces)."`
	// Pprof also serves the Go runtime profiles under /debug/pprof/ on
	// the same address. Off by default: profiles reveal internals and cost
	// CPU while taken.
	Pprof bool `yaml:"pprof" doc:"Also serve Go runtime profiles under /debug/pprof/ on http.addr."`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level" values:"debug|info|warn|error" doc:"Log level: debug, info, warn or error."`
	Format string `yaml:"format" values:"json|text" doc:"Log format: json or text."`
}

// SlogLevel returns the slog level of l.Level; an unknown level is Info.
func (l Log) SlogLevel() slog.Level {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return lvl
}

// Shutdown configures graceful shutdown.
type Shutdown struct {
	Timeout time.Duration `yaml:"timeout" doc:"Longest time to drain, flush, persist and commit after SIGTERM (1s to 1h)."`
}

// Retry configures the capped exponential backoff used when Kafka or Redis fails.
type Retry struct {
	InitialBackoff time.Duration `yaml:"initial_backoff" doc:"Cap of the first retry delay; each delay is random between 0 and its cap, which doubles per attempt (1ms to 1m)."`
	MaxBackoff     time.Duration `yaml:"max_backoff" doc:"Largest cap of a retry delay (1ms to 10m)."`
}

// Default returns the configuration used for every key that is not set.
// Where a package owns a default (topic names, reorder-buffer bounds,
// processor parameters, key prefix, mark TTL, input size) it is taken from
// that package, so that it is defined once.
func Default() Config {
	names := topics.DefaultNames()
	seq := sequencing.DefaultConfig()
	proc := processors.DefaultConfig()
	lim := topics.DefaultLimits()
	thresholds := make([]int, 0, len(proc.Milestones.Thresholds))
	for _, t := range proc.Milestones.Thresholds {
		thresholds = append(thresholds, int(t))
	}
	return Config{
		Kafka: Kafka{
			Brokers:                []string{"localhost:9092"},
			Group:                  "streamworker",
			ClientID:               "streamworker",
			StartOffset:            "earliest",
			CommitInterval:         time.Second,
			MaxPollRecords:         10000,
			FetchMaxPartitionBytes: 512 * KiB,
			FetchMinBytes:          16 * KiB,
			FetchMaxWait:           10 * time.Millisecond,
			SessionTimeout:         45 * time.Second,
			RebalanceTimeout:       60 * time.Second,
			MaxMessageBytes:        MiB,
			LagInterval:            5 * time.Second,
		},
		Topics: Topics{
			Input:             names.Input,
			Aggregates:        names.Aggregates,
			Milestones:        names.Milestones,
			Anomalies:         names.Anomalies,
			DLQ:               names.DLQ,
			Gaps:              names.Gaps,
			Parked:            names.Parked,
			Partitions:        12,
			ReplicationFactor: -1,
		},
		Redis: Redis{
			Addrs:       []string{"localhost:6379"},
			KeyPrefix:   dedupe.DefaultPrefix,
			DialTimeout: 5 * time.Second,
			Timeout:     3 * time.Second,

			ReplicaAckTimeout: time.Second,
		},
		Dedupe: Dedupe{TTL: state.DefaultMarkTTL, RecentSize: 10_000},
		State:  State{CacheSize: 25_000},
		Sequencing: Sequencing{
			GapTimeout:           seq.GapTimeout,
			MaxBuffered:          seq.MaxPerAggregate,
			MaxBufferedPartition: seq.MaxPerPartition,
			MaxBufferedBytes:     ByteSize(seq.MaxBytes),
		},
		Input: Input{MaxBytes: ByteSize(lim.MaxBytes), UnknownTypes: "skip", OnPoison: "dlq",
			MaxIDBytes: ByteSize(lim.MaxIDBytes), MaxAggregateIDBytes: ByteSize(lim.MaxAggregateIDBytes), MaxLabelBytes: ByteSize(lim.MaxLabelBytes),
			MaxTimeAhead: lim.MaxTimeAhead},
		Aggregation: Aggregation{MaxResources: proc.MaxResources, MaxActions: proc.MaxActions},
		Anomaly: Anomaly{
			Window:             proc.Anomaly.Window,
			Multiplier:         proc.Anomaly.Multiplier,
			MinEvents:          proc.Anomaly.MinEvents,
			DefaultAverageRate: proc.Anomaly.DefaultAverageRate,
			MinAverageRate:     proc.Anomaly.MinAverageRate,
		},
		Milestones: Milestones{Every: int(proc.Milestones.Every), Thresholds: thresholds},
		Outputs:    Outputs{CoalesceAggregates: true},
		HTTP:       HTTP{Addr: ":9464"},
		Log:        Log{Level: "info", Format: "json"},
		Shutdown:   Shutdown{Timeout: 30 * time.Second},
		Retry:      Retry{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second},
	}
}
