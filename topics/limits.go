// Bounds on what one input record can make big: the value's size, the
// length of its IDs and labels, and its sequence number. The Decoder
// rejects a record past any of them before an output is built, so that
// every output and every stored state stays within sizes known in advance.
package topics

import "fmt"

// MaxSequence is the largest sequence number accepted: 2^53-1, the largest
// integer every JSON reader represents exactly. A larger sequence is
// rejected with ReasonInvalidSequence, so lastSequence+1 and every other
// sum of sequences stays far from int64 overflow.
const MaxSequence = 1<<53 - 1

// Default bounds of Limits.
const (
	// DefaultMaxIDBytes bounds the event id and the metadata IDs
	// (correlationId, causationId, traceId).
	DefaultMaxIDBytes = 256
	// DefaultMaxAggregateIDBytes bounds the aggregate ID (aggregateId or
	// the record key used as one) and the user IDs (data.userId,
	// metadata.userId).
	DefaultMaxAggregateIDBytes = 256
	// DefaultMaxLabelBytes bounds type, source, data.action and
	// data.resource. An aggregated output holds up to a thousand resource
	// keys, each written JSON-escaped (up to 6 bytes per byte): 128 keeps
	// MaxAggregatedBytes of the default bounds under the producer's
	// default record limit of 1,000,012 bytes.
	DefaultMaxLabelBytes = 128
)

// Limits are the bounds a Decoder enforces, in bytes of the decoded
// strings. Every field is an effective value: 0 is not "the default" but a
// limit Validate refuses. Start from DefaultLimits and change what you need.
type Limits struct {
	// MaxBytes is the largest record value (input.max_bytes).
	MaxBytes int
	// MaxIDBytes bounds id (ReasonInvalidID) and metadata.correlationId,
	// causationId and traceId (ReasonInvalidMetadata).
	MaxIDBytes int
	// MaxAggregateIDBytes bounds the aggregate ID
	// (ReasonInvalidAggregateID), data.userId (ReasonInvalidData) and
	// metadata.userId (ReasonInvalidMetadata).
	MaxAggregateIDBytes int
	// MaxLabelBytes bounds type (ReasonInvalidType), source
	// (ReasonInvalidSource), data.action and data.resource
	// (ReasonInvalidData).
	MaxLabelBytes int
}

// DefaultLimits returns the default bounds.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:            DefaultMaxBytes,
		MaxIDBytes:          DefaultMaxIDBytes,
		MaxAggregateIDBytes: DefaultMaxAggregateIDBytes,
		MaxLabelBytes:       DefaultMaxLabelBytes,
	}
}

// Validate reports the first bound below 1, naming its field.
func (l Limits) Validate() error {
	for _, f := range [...]struct {
		name string
		v    int
	}{
		{"MaxBytes", l.MaxBytes},
		{"MaxIDBytes", l.MaxIDBytes},
		{"MaxAggregateIDBytes", l.MaxAggregateIDBytes},
		{"MaxLabelBytes", l.MaxLabelBytes},
	} {
		if f.v < 1 {
			return fmt.Errorf("topics: limits: %s must be at least 1, got %d", f.name, f.v)
		}
	}
	return nil
}

// NewDecoder returns a Decoder that enforces l, or Validate's error.
func NewDecoder(l Limits) (*Decoder, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &Decoder{MaxBytes: l.MaxBytes, limits: l, limited: true}, nil
}

// Limits returns the bounds d enforces.
func (d *Decoder) Limits() Limits {
	if d.limited {
		return d.limits
	}
	l := DefaultLimits()
	if d.MaxBytes > 0 {
		l.MaxBytes = d.MaxBytes
	}
	return l
}

// tooLong returns a ValidationError when s is longer than max bytes.
func tooLong(field string, reason Reason, s string, max int) *ValidationError {
	if len(s) <= max {
		return nil
	}
	return invalid(field, reason, fmt.Sprintf("%d bytes, limit %d", len(s), max))
}

// checkSequence rejects n outside 1..MaxSequence.
func checkSequence(field string, n int64) *ValidationError {
	switch {
	case n < 1:
		return invalid(field, ReasonInvalidSequence, fmt.Sprintf("%d is below 1", n))
	case n > MaxSequence:
		return invalid(field, ReasonInvalidSequence, fmt.Sprintf("%d is above the maximum %d", n, int64(MaxSequence)))
	}
	return nil
}

// checkLengths applies l to a decoded event. Fields are checked in the
// Decoder's order of checks.
func checkLengths(e *Event, l *Limits, ce bool) *ValidationError {
	name := func(json, header string) string {
		if ce {
			return header
		}
		return json
	}
	checks := [...]struct {
		field  string
		reason Reason
		s      string
		max    int
	}{
		{name("id", "ce_id"), ReasonInvalidID, e.ID, l.MaxIDBytes},
		{name("type", "ce_type"), ReasonInvalidType, e.Type, l.MaxLabelBytes},
		{name("source", "ce_source"), ReasonInvalidSource, e.Source, l.MaxLabelBytes},
		{name("aggregateId", "ce_aggregateid"), ReasonInvalidAggregateID, e.AggregateID, l.MaxAggregateIDBytes},
		{"data.userId", ReasonInvalidData, e.Data.UserID, l.MaxAggregateIDBytes},
		{"data.action", ReasonInvalidData, e.Data.Action, l.MaxLabelBytes},
		{"data.resource", ReasonInvalidData, e.Data.Resource, l.MaxLabelBytes},
		{name("metadata.correlationId", "ce_correlationid"), ReasonInvalidMetadata, e.Metadata.CorrelationID, l.MaxIDBytes},
		{name("metadata.causationId", "ce_causationid"), ReasonInvalidMetadata, e.Metadata.CausationID, l.MaxIDBytes},
		{name("metadata.traceId", "ce_traceid"), ReasonInvalidMetadata, e.Metadata.TraceID, l.MaxIDBytes},
		{name("metadata.userId", "ce_userid"), ReasonInvalidMetadata, e.Metadata.UserID, l.MaxAggregateIDBytes},
	}
	for _, c := range checks {
		if err := tooLong(c.field, c.reason, c.s, c.max); err != nil {
			return err
		}
	}
	return nil
}
