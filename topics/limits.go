// Bounds on what one input record can make big: the value's size, the
// length of its IDs and labels, its sequence number and how far its time runs ahead. The Decoder
// rejects a record past any of them before an output is built, so that
// every output and every stored state stays within sizes known in advance.
package topics

import (
	"fmt"
	"time"
)

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
	// DefaultMaxTimeAhead bounds how far an event's time may run ahead of
	// its record's timestamp. An event dated years ahead would otherwise
	// stay the newest of its user for good: every later event would fall
	// out of the anomaly window behind it and lastActivityAt would stop.
	DefaultMaxTimeAhead = 24 * time.Hour
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
	// MaxTimeAhead bounds how far timestamp (or ce_time) may be after the
	// record's timestamp (ReasonInvalidTimestamp). A record without a
	// timestamp (before 1970) is not checked.
	MaxTimeAhead time.Duration
}

// DefaultLimits returns the default bounds.
func DefaultLimits() Limits { return defaultLimits }

var defaultLimits = Limits{
	MaxBytes:            DefaultMaxBytes,
	MaxIDBytes:          DefaultMaxIDBytes,
	MaxAggregateIDBytes: DefaultMaxAggregateIDBytes,
	MaxLabelBytes:       DefaultMaxLabelBytes,
	MaxTimeAhead:        DefaultMaxTimeAhead,
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
	if l.MaxTimeAhead < time.Second {
		return fmt.Errorf("topics: limits: MaxTimeAhead must be at least 1s, got %v", l.MaxTimeAhead)
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

// checkTimeAhead rejects an event time more than l.MaxTimeAhead after the
// record's timestamp.
func checkTimeAhead(e *Event, recordTime time.Time, l *Limits, ce bool) *ValidationError {
	if recordTime.UnixMilli() <= 0 || !e.Time.After(recordTime.Add(l.MaxTimeAhead)) {
		return nil
	}
	field := "timestamp"
	if ce {
		field = headerNames[hTime]
	}
	return invalid(field, ReasonInvalidTimestamp, fmt.Sprintf("%s is more than %v after the record timestamp %s",
		e.Time.Format(time.RFC3339Nano), l.MaxTimeAhead, recordTime.UTC().Format(time.RFC3339Nano)))
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

// maxEscape is the most bytes appendString writes for one byte of a
// string: a control character becomes \u00XX.
const maxEscape = 6

// maxTimeBytes is the longest timestamp an output writes: the 24 bytes of
// years 0000-9999, plus room for the sign and digits of a record timestamp
// as far as int64 milliseconds reach.
const maxTimeBytes = 24 + 8

// aggregatedSkeleton is the length of an aggregated output whose strings
// are empty (but for a one-byte traceId), its counts objects empty, its
// numbers one digit long and its times 24 bytes: the bytes every
// aggregated output writes whatever its content.
var aggregatedSkeleton = len(AppendAggregatedView(nil, OutputMeta{TraceID: "t"},
	&AggregatedView{TotalActivity: 1})) - len("t")

// MaxAggregatedBytes returns the largest user.activity.aggregated output
// value, in bytes, that events decoded under l can make when a user's
// state holds at most actionKeys action keys and resourceKeys resource
// keys (processors.Config.MaxAggregatedBytes passes its caps plus the
// "_other" keys). Every string is counted at its worst JSON escaping, six
// bytes per byte, so the bound holds for any input, not only for plain
// ASCII; the record adds its key (the aggregate ID) and headers. Use it to
// check a configuration against the producer's maximum record size before
// anything runs.
func MaxAggregatedBytes(l Limits, actionKeys, resourceKeys int) int {
	id, agg := l.MaxIDBytes, l.MaxAggregateIDBytes
	label := max(l.MaxLabelBytes, len("_other"))
	n := aggregatedSkeleton
	// Numbers: totalActivity and lastSequence up to 19 digits (the
	// skeleton wrote one each); times up to maxTimeBytes (it wrote 24).
	n += 2*18 + 3*(maxTimeBytes-24)
	// The output id "aggregate:<userId>:<eventId>", aggregateId, userId,
	// correlationId (the input's or its id), causationId, traceId.
	strs := len("aggregate::") + agg + id + // the output id
		agg + agg + // aggregateId, data.userId
		3*id // correlationId, causationId, traceId
	n += maxEscape * strs
	// Each count: "key":n, with a comma, n up to 19 digits.
	perKey := len(`,"":`) + maxEscape*label + 19
	n += (actionKeys + resourceKeys) * perKey
	return n
}

// Skeletons of the other outputs, as aggregatedSkeleton: empty strings
// (but for a one-byte traceId and the constant values), one-digit numbers.
var (
	milestoneSkeleton = len(AppendMilestone(nil, OutputMeta{TraceID: "t"},
		&MilestoneData{Milestone: "activity"})) - len("t")
	anomalySkeleton = len(AppendAnomaly(nil, OutputMeta{TraceID: "t"},
		&AnomalyData{AnomalyType: "high-activity", Severity: "critical"})) - len("t")
	gapSkeleton = len(AppendGap(nil, OutputMeta{TraceID: "t"}, &GapData{})) - len("t")
)

// MaxOutputBytes returns the largest output value of any kind (aggregated,
// milestone, anomaly, gap) that events decoded under l can make, with the
// aggregated output's keys bounded as for MaxAggregatedBytes. Dead-letter
// copies are not outputs: they carry the input's value and headers.
func MaxOutputBytes(l Limits, actionKeys, resourceKeys int) int {
	id, agg := l.MaxIDBytes, l.MaxAggregateIDBytes
	// The envelope's strings: aggregateId, correlationId, causationId,
	// traceId, and the head timestamp beyond its skeleton's 24 bytes.
	meta := maxEscape*(agg+3*id) + maxTimeBytes - 24
	const num = 19   // int64 digits beyond the skeleton's one, rounded up
	const float = 32 // an ES6-formatted float64, rounded up
	milestone := milestoneSkeleton + meta +
		maxEscape*(len("milestone::")+agg+20) + // the output id
		maxEscape*agg + num // userId, count
	anomaly := anomalySkeleton + meta +
		maxEscape*(len("anomaly::")+agg+id) + // the output id
		maxEscape*agg + 2*float + num // userId, rates, windowCount
	gap := gapSkeleton + meta +
		maxEscape*(len("gap:::")+agg+2*20) + // the output id
		maxEscape*agg + 3*num // aggregateId, expected, resumedAt, skipped
	return max(MaxAggregatedBytes(l, actionKeys, resourceKeys), milestone, anomaly, gap)
}
