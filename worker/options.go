package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
)

// Unknown-type policies for Options.UnknownTypes.
const (
	UnknownSkip = "skip"
	UnknownDLQ  = "dlq"
)

// Poison policies for Options.OnPoison: what happens to the user of a
// record that fails by itself (docs/contract.md, "Parked users").
const (
	PoisonDLQ  = "dlq"
	PoisonPark = "park"
)

// Options configures a Worker. Every field holds the effective value: the
// defaults live in one place, the configuration (config.Default), and New
// refuses a value that cannot work instead of replacing it. Only Logger,
// Registerer and Now may be left zero.
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
	// CommitInterval is how often progress is committed.
	CommitInterval time.Duration
	// MaxPollRecords bounds the records taken from the client per poll.
	MaxPollRecords int
	// FetchMaxPartitionBytes bounds the (compressed) bytes one fetch
	// returns per partition, and so the records a partition holds in
	// memory.
	FetchMaxPartitionBytes int
	// FetchMinBytes and FetchMaxWait: a fetch waits up to FetchMaxWait (at
	// least 10ms, the client's floor) for FetchMinBytes.
	FetchMinBytes int
	FetchMaxWait  time.Duration
	// SessionTimeout and RebalanceTimeout are the group timeouts.
	SessionTimeout, RebalanceTimeout time.Duration

	// Store holds aggregate state and dedupe marks. Nil means a
	// state.RedisStore on Redis, with KeyPrefix and DedupeTTL.
	Store state.Store
	// Redis is the client of the default store. Single, Sentinel and
	// Cluster clients all work. Unused when Store is set.
	Redis redis.UniversalClient
	// KeyPrefix prefixes every Redis key of the default store.
	KeyPrefix string
	// DedupeTTL is how long an applied event's dedupe mark lives in the
	// default store.
	DedupeTTL time.Duration
	// MinReplicasAcked replicas must acknowledge each commit of the
	// default store (Redis WAIT on every master written to, within
	// ReplicaAckTimeout) before the batch's offsets are marked; fewer is a
	// transient failure, retried. 0 does not wait.
	MinReplicasAcked  int
	ReplicaAckTimeout time.Duration
	// RecentSize is the number of recently applied event IDs remembered
	// per partition in front of the store; 0 disables the front.
	RecentSize int
	// CacheSize is the number of aggregate states kept in memory per
	// worker, shared by its partitions; 0 keeps only those a batch or the
	// reorder buffer needs.
	CacheSize int

	// Sequencing bounds the reorder buffers and sets the gap timeout.
	Sequencing sequencing.Config
	// Limits bound what one input record may hold (input.max_bytes, the
	// ID and label lengths); a record past one goes to the DLQ.
	Limits topics.Limits
	// MaxMessageBytes is the largest record the producer sends (the
	// broker's or topic's max.message.bytes must allow it). An output
	// that would be larger sends its input to the DLQ (output_too_large);
	// a DLQ copy that would be larger is truncated.
	MaxMessageBytes int
	// UnknownTypes is UnknownSkip or UnknownDLQ.
	UnknownTypes string
	// OnPoison is PoisonDLQ or PoisonPark. With PoisonPark, Topics.Parked
	// must be named and have the input's partition count.
	OnPoison string
	// CoalesceAggregates publishes one aggregated snapshot per user per
	// batch instead of one per applied event.
	CoalesceAggregates bool
	// Processors configures aggregation, anomaly detection and milestones.
	Processors processors.Config

	// Retry is the backoff of every retried Redis and Kafka call.
	Retry Backoff
	// ShutdownTimeout bounds the drain on shutdown and on revoke.
	ShutdownTimeout time.Duration
	// LagInterval is how often consumer lag is read from the cluster.
	LagInterval time.Duration

	// Logger receives the worker's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the worker's and the Kafka client's metrics; nil
	// registers nothing.
	Registerer prometheus.Registerer
	// Now is the wall clock (nil: time.Now); it drives gap timeouts and
	// lag ages, never the processors.
	Now func() time.Time
}

// validate refuses values that cannot work; each error names the field.
func (o *Options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("worker: "+format, args...))
		}
	}
	check(len(o.Kafka) > 0, "no Kafka options (seed brokers)")
	if err := o.Limits.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("worker: %w", err))
	}
	check(o.Group != "", "empty consumer group")
	check(o.Store != nil || o.Redis != nil, "neither a Store nor a Redis client")
	check(o.Topics.Input != "" && o.Topics.Aggregates != "" && o.Topics.Milestones != "" &&
		o.Topics.Anomalies != "" && o.Topics.DLQ != "" && o.Topics.Gaps != "", "every topic must be named: %+v", o.Topics)
	check(o.OnPoison == PoisonDLQ || o.OnPoison == PoisonPark,
		"OnPoison %q is neither %q nor %q", o.OnPoison, PoisonDLQ, PoisonPark)
	check(o.OnPoison != PoisonPark || o.Topics.Parked != "", "OnPoison %q needs Topics.Parked", PoisonPark)
	check(o.UnknownTypes == UnknownSkip || o.UnknownTypes == UnknownDLQ,
		"UnknownTypes %q is neither %q nor %q", o.UnknownTypes, UnknownSkip, UnknownDLQ)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CommitInterval", o.CommitInterval}, {"SessionTimeout", o.SessionTimeout},
		{"RebalanceTimeout", o.RebalanceTimeout}, {"Retry.Initial", o.Retry.Initial},
		{"ShutdownTimeout", o.ShutdownTimeout}, {"LagInterval", o.LagInterval},
	} {
		check(d.v > 0, "%s must be positive, got %v", d.name, d.v)
	}
	check(o.Retry.Max >= o.Retry.Initial, "Retry.Max %v is below Retry.Initial %v", o.Retry.Max, o.Retry.Initial)
	check(o.FetchMaxWait >= 10*time.Millisecond, "FetchMaxWait must be at least 10ms, got %v", o.FetchMaxWait)
	for _, n := range []struct {
		name string
		v    int
	}{
		{"MaxPollRecords", o.MaxPollRecords}, {"FetchMaxPartitionBytes", o.FetchMaxPartitionBytes},
		{"FetchMinBytes", o.FetchMinBytes}, {"MaxMessageBytes", o.MaxMessageBytes},
		{"Sequencing.MaxPerAggregate", o.Sequencing.MaxPerAggregate},
		{"Sequencing.MaxPerPartition", o.Sequencing.MaxPerPartition},
		{"Sequencing.MaxBytes", int(min(o.Sequencing.MaxBytes, 1<<31))},
	} {
		check(n.v > 0, "%s must be positive, got %d", n.name, n.v)
	}
	check(o.Sequencing.GapTimeout > 0, "Sequencing.GapTimeout must be positive, got %v", o.Sequencing.GapTimeout)
	check(o.RecentSize >= 0 && o.CacheSize >= 0, "RecentSize and CacheSize must be >= 0, got %d and %d", o.RecentSize, o.CacheSize)
	if o.Store == nil {
		check(o.KeyPrefix != "", "empty KeyPrefix")
		if err := (dedupe.Keys{Prefix: o.KeyPrefix}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("worker: KeyPrefix %q: %w", o.KeyPrefix, err))
		}
		check(o.DedupeTTL > 0, "DedupeTTL must be positive, got %v", o.DedupeTTL)
		check(o.MinReplicasAcked >= 0, "MinReplicasAcked must be >= 0, got %d", o.MinReplicasAcked)
		check(o.MinReplicasAcked == 0 || o.ReplicaAckTimeout > 0,
			"ReplicaAckTimeout must be positive with MinReplicasAcked %d, got %v", o.MinReplicasAcked, o.ReplicaAckTimeout)
	}
	if err := o.Processors.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("worker: processors: %w", err))
	}
	return errors.Join(errs...)
}
