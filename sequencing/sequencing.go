// Package sequencing keeps each aggregate's events in sequence order
// (docs/contract.md, "Sequencing") with a bounded per-partition reorder buffer.
//
// The model. An aggregate (a user) expects the sequence lastSequence+1
// (Expected; 1 for a new aggregate). For each arriving event, Classify
// decides:
//   - DecisionApply: seq == expected, or the event carries no sequence
//     (seq 0), which is applied when it arrives even while a gap is open.
//     After applying a sequenced event, the caller drains the buffer: Pop the
//     new expected sequence until it is missing.
//   - DecisionBuffer: seq > expected. The caller holds the event in a Buffer
//     until the gap before it fills.
//   - DecisionBehind: seq < expected. The caller tells a duplicate (its ID
//     was seen: drop and count) from a late event (new ID: DLQ) with its
//     dedupe marks.
//   - DecisionInvalid: seq < 0, which the decoder should already have sent to
//     the DLQ.
//
// Buffered records are not done, so they hold the partition's commit point
// back: the caller commits no offset at or above MinOffset. The buffer lives
// in memory only; after a crash the records are simply read again.
//
// A gap is given up when it stays open for Config.GapTimeout (Expired lists
// such aggregates) or when the buffer is full (Add returns FullAggregate or
// FullPartition). Giving up means: publish the gap record for expected ..
// Lowest-1, make Lowest the expected sequence, drain, and call GiveUp: what
// stays buffered behind a further gap keeps the time it was buffered, so
// that gap may have expired too (GapExpired), and no event is held longer
// than GapTimeout by its timers.
//
// Nothing here reads the wall clock: callers pass now, so tests control time.
package sequencing

import (
	"errors"
	"fmt"
	"time"
)

// Decision is what Classify says to do with an event.
type Decision uint8

// Decisions.
const (
	// DecisionApply applies the event now.
	DecisionApply Decision = iota
	// DecisionBuffer holds the event until its predecessors are applied.
	DecisionBuffer
	// DecisionBehind marks an event whose sequence was already passed: a
	// duplicate or a late event.
	DecisionBehind
	// DecisionInvalid marks a negative sequence.
	DecisionInvalid
)

// String returns the decision's name.
func (d Decision) String() string {
	switch d {
	case DecisionApply:
		return "apply"
	case DecisionBuffer:
		return "buffer"
	case DecisionBehind:
		return "behind"
	case DecisionInvalid:
		return "invalid"
	}
	return fmt.Sprintf("Decision(%d)", uint8(d))
}

// Expected returns the sequence an aggregate whose last applied sequence is
// lastSequence (0 for none) expects next.
func Expected(lastSequence int64) int64 { return lastSequence + 1 }

// Classify returns what to do with an event of sequence seq (0 for none) for
// an aggregate that expects expected.
func Classify(expected, seq int64) Decision {
	switch {
	case seq == 0 || seq == expected:
		return DecisionApply
	case seq < 0:
		return DecisionInvalid
	case seq > expected:
		return DecisionBuffer
	}
	return DecisionBehind
}

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("sequencing: invalid config")

// Config bounds a partition's reorder buffer.
type Config struct {
	// MaxPerAggregate is the most events buffered for one aggregate.
	MaxPerAggregate int
	// MaxPerPartition is the most events buffered in the partition
	// (sequencing.max_buffered).
	MaxPerPartition int
	// MaxBytes is the most bytes (as the sizes given to Add) buffered in
	// the partition.
	MaxBytes int64
	// GapTimeout is how long a gap may stay open before it is given up
	// (sequencing.gap_timeout).
	GapTimeout time.Duration
}

// Defaults.
const (
	DefaultMaxPerAggregate = 1000
	DefaultMaxPerPartition = 10000
	DefaultMaxBytes        = 64 << 20
	DefaultGapTimeout      = 30 * time.Second
)

// DefaultConfig returns the default bounds.
func DefaultConfig() Config {
	return Config{
		MaxPerAggregate: DefaultMaxPerAggregate,
		MaxPerPartition: DefaultMaxPerPartition,
		MaxBytes:        DefaultMaxBytes,
		GapTimeout:      DefaultGapTimeout,
	}
}

// Validate reports a negative field, wrapping ErrInvalidConfig. Zero
// fields are valid: they take their defaults.
func (c Config) Validate() error {
	switch {
	case c.MaxPerAggregate < 0:
		return fmt.Errorf("%w: max per aggregate must be >= 0, got %d", ErrInvalidConfig, c.MaxPerAggregate)
	case c.MaxPerPartition < 0:
		return fmt.Errorf("%w: sequencing.max_buffered must be >= 0, got %d", ErrInvalidConfig, c.MaxPerPartition)
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: max bytes must be >= 0, got %d", ErrInvalidConfig, c.MaxBytes)
	case c.GapTimeout < 0:
		return fmt.Errorf("%w: sequencing.gap_timeout must be >= 0, got %v", ErrInvalidConfig, c.GapTimeout)
	}
	return nil
}

// withDefaults returns c with every non-positive field set to its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxPerAggregate <= 0 {
		c.MaxPerAggregate = d.MaxPerAggregate
	}
	if c.MaxPerPartition <= 0 {
		c.MaxPerPartition = d.MaxPerPartition
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.GapTimeout <= 0 {
		c.GapTimeout = d.GapTimeout
	}
	return c
}
