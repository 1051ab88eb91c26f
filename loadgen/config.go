// Package loadgen generates a deterministic stream of user-activity records
// for the streamworker input topic, with controlled fractions of duplicates,
// out-of-order and unsequenced events, malformed records, CloudEvents
// binary-mode records and anomaly bursts; an Oracle that knows what a
// correct worker must make of that stream; and Produce, which writes the
// stream to Kafka at a given rate.
//
// The same Config always yields the byte-identical stream: every choice
// comes from a generator seeded with Config.Seed and every event time from
// Config.Start and Config.Step, never from the wall clock.
package loadgen

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate and New.
var ErrInvalidConfig = errors.New("loadgen: invalid config")

// Defaults of Config's zero fields.
const (
	DefaultUsers      = 100
	DefaultStep       = time.Second
	DefaultUserPrefix = "u-"
	// MaxUsers bounds Config.Users (the generator keeps state per user).
	MaxUsers = 1_000_000
)

// DefaultStart is the event-time base of a zero Config.Start.
var DefaultStart = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// Config describes a workload. Its zero value is valid: 100 users, an
// unbounded stream of valid, sequenced JSON events.
//
// Duplicates and Malformed are fractions of all records; OutOfOrder,
// Unsequenced and CloudEvents are fractions of the unique valid events;
// Bursts is a fraction of the users.
type Config struct {
	// Users is the number of users (aggregates); 0 means DefaultUsers.
	Users int
	// Events is the total number of records to emit, every kind counted;
	// 0 means unbounded.
	Events int
	// Rate is the intended rate in records per second (0 = as fast as
	// possible). The Generator does not pace itself: it is the rate a
	// caller hands to Produce. When positive it also caps how long an
	// out-of-order event is held back (see OutOfOrder).
	Rate float64
	// Duplicates is the fraction of records that re-emit an earlier valid
	// record (same bytes): a quarter of them the latest valid record, the
	// rest one of the last 1024, so some arrive hundreds of records later.
	Duplicates float64
	// OutOfOrder is the fraction of sequenced events held back and emitted
	// after the next 1 to 3 new events of the same user. A user has at most
	// one event held at a time, so no event moves more than 3 places within
	// its user, and fractions above 1/3 saturate there. A held event is released early, in place, when its user
	// stays quiet for max(8*Users, 64) records or, when Rate > 0, for 10
	// seconds of records at Rate, so a worker's gap timeout (30s by
	// default) never fires; and at the end of a bounded stream.
	OutOfOrder float64
	// Malformed is the fraction of records the decoder must reject. They
	// cycle through a fixed list of defects (see Record.Reason); they carry
	// fresh IDs and never consume a sequence number.
	Malformed float64
	// Unsequenced is the fraction of events that carry no sequence.
	Unsequenced float64
	// CloudEvents is the fraction of events in CloudEvents binary mode.
	CloudEvents float64
	// Bursts is the fraction of users that are quiet (mean spacing
	// 120*Step) and, after their first 10 events, emit a burst of 30
	// events at a mean spacing of Step/10: with the default anomaly
	// parameters and Step, each such user fires anomaly.detected. A burst
	// needs about 40 events of its user in the stream.
	Bursts float64
	// Seed seeds every random choice.
	Seed int64
	// Start is the event-time base; zero means DefaultStart. Event times
	// are written with millisecond precision.
	Start time.Time
	// Step is the mean event-time spacing of a user's events; 0 means
	// DefaultStep. From 1ms to 1h.
	Step time.Duration
	// Topic is the topic Produce writes to; "" means user.activity.
	Topic string
	// UserPrefix prefixes the user IDs (prefix + 1..Users); "" means
	// DefaultUserPrefix. A second run against the same worker state needs
	// a new prefix, or its sequences restart below the stored ones.
	UserPrefix string
	// Hostile is the fraction of records an attacker crafted (see
	// hostile.go): IDs that once broke the Redis key layout, fields over
	// the worker's bounds, a spoofed dlq.reason, a sequence beyond the
	// maximum. Their users are apart from the normal ones ("h~...").
	Hostile float64
	// Oversized adds a value larger than topics.DefaultMaxBytes to the
	// malformed cycle. Producing it needs a client and topic that accept
	// records over 1 MB (kgo.ProducerBatchMaxBytes, max.message.bytes).
	Oversized bool
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	c.Start = c.Start.UTC().Truncate(time.Millisecond)
	if c.Step == 0 {
		c.Step = DefaultStep
	}
	if c.Topic == "" {
		c.Topic = topics.DefaultNames().Input
	}
	if c.UserPrefix == "" {
		c.UserPrefix = DefaultUserPrefix
	}
	return c
}

// Validate reports every problem of c (after defaults), each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Users < 1 || c.Users > MaxUsers {
		bad("users %d: want 1 to %d", c.Users, MaxUsers)
	}
	if c.Events < 0 {
		bad("events %d: want 0 (unbounded) or more", c.Events)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		bad("rate %v: want 0 (unlimited) or a positive number", c.Rate)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"duplicates", c.Duplicates}, {"out_of_order", c.OutOfOrder},
		{"malformed", c.Malformed}, {"unsequenced", c.Unsequenced},
		{"cloudevents", c.CloudEvents}, {"bursts", c.Bursts}, {"hostile", c.Hostile},
	} {
		if !(f.v >= 0 && f.v <= 1) { // also catches NaN
			bad("%s %v: want a fraction in [0,1]", f.name, f.v)
		}
	}
	if c.Duplicates+c.Malformed+c.Hostile > 1 {
		bad("duplicates + malformed + hostile = %v: want at most 1", c.Duplicates+c.Malformed+c.Hostile)
	}
	if c.Step < time.Millisecond || c.Step > time.Hour {
		bad("step %v: want 1ms to 1h", c.Step)
	}
	return errors.Join(errs...)
}
