// Package topics holds the event contract of streamworker: the input envelope,
// its codecs (JSON and CloudEvents binary headers), schema versions and
// upcasters, the output envelopes, and the topic names and specs.
//
// The package has no Kafka client dependency so that the processors can use
// its types and stay pure; topic provisioning lives in topics/admin.
package topics

import "time"

// Event types.
const (
	// TypeUserActivity is the type of the input events the processors handle.
	TypeUserActivity = "user.activity"
	// TypeAggregated is the type of the aggregated-state outputs.
	TypeAggregated = "user.activity.aggregated"
	// TypeMilestone is the type of the milestone outputs.
	TypeMilestone = "user.milestone.reached"
	// TypeAnomaly is the type of the anomaly outputs.
	TypeAnomaly = "anomaly.detected"
	// TypeGap is the type of the gap records.
	TypeGap = "user.activity.gap"
)

// Schema versions of the input envelope.
const (
	// CurrentVersion is the schema version events are upcast to.
	CurrentVersion = 2
	// OutputVersion is the schema version of every output envelope.
	OutputVersion = 1
	// OutputSource is the source of every output envelope.
	OutputSource = "streamworker"
)

// Header is a record header. It has the layout of kgo.RecordHeader so the
// runtime converts between them without copying the bytes.
type Header struct {
	Key   string
	Value []byte
}

// Record is the part of a Kafka record the decoder reads.
type Record struct {
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Metadata is the envelope's metadata object.
type Metadata struct {
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
	TraceID       string `json:"traceId,omitempty"`
	UserID        string `json:"userId,omitempty"`
}

// Activity is the data object of a user.activity event.
type Activity struct {
	UserID   string `json:"userId,omitempty"`
	Action   string `json:"action,omitempty"`
	Resource string `json:"resource,omitempty"`
}

// Event is a decoded, validated and upcast input event.
type Event struct {
	ID          string
	Type        string
	Version     int // after upcasting: always CurrentVersion
	Source      string
	AggregateID string
	// Sequence is the per-aggregate sequence number; 0 means the event
	// carries none.
	Sequence int64
	// Time is the event time in UTC (the record timestamp when the event
	// carries none).
	Time     time.Time
	Data     Activity
	Metadata Metadata
	// TraceParent is the W3C traceparent header of the record, if any.
	TraceParent string
	// KeyMismatch reports that the record key and aggregateId disagreed
	// (aggregateId won).
	KeyMismatch bool
	// Format is how the event was encoded: FormatJSON or FormatCloudEvents.
	Format Format
}

// Format is the wire format of an input event.
type Format uint8

// Wire formats.
const (
	FormatJSON Format = iota
	FormatCloudEvents
)

// CorrelationID is the correlation ID outputs caused by e carry: e's own
// correlation ID, or e's ID when it has none.
func (e *Event) CorrelationID() string {
	if e.Metadata.CorrelationID != "" {
		return e.Metadata.CorrelationID
	}
	return e.ID
}

// AggregatedData is the data of a user.activity.aggregated output.
type AggregatedData struct {
	UserID          string           `json:"userId"`
	TotalActivity   int64            `json:"totalActivity"`
	Actions         map[string]int64 `json:"actions"`
	Resources       map[string]int64 `json:"resources"`
	FirstActivityAt string           `json:"firstActivityAt"`
	LastActivityAt  string           `json:"lastActivityAt"`
	LastSequence    int64            `json:"lastSequence"`
}

// MilestoneData is the data of a user.milestone.reached output.
type MilestoneData struct {
	UserID    string `json:"userId"`
	Milestone string `json:"milestone"` // always "activity"
	Count     int64  `json:"count"`
}

// AnomalyData is the data of an anomaly.detected output. Rates are in
// events per minute.
type AnomalyData struct {
	UserID      string  `json:"userId"`
	AnomalyType string  `json:"anomalyType"` // always "high-activity"
	CurrentRate float64 `json:"currentRate"`
	AverageRate float64 `json:"averageRate"`
	WindowCount int64   `json:"windowCount"`
	Severity    string  `json:"severity"` // "high" or "critical"
}

// GapData is the data of a user.activity.gaps record: the sequences
// expected..resumedAt-1 were given up on.
type GapData struct {
	AggregateID string `json:"aggregateId"`
	Expected    int64  `json:"expected"`
	ResumedAt   int64  `json:"resumedAt"`
	Skipped     int64  `json:"skipped"`
}
