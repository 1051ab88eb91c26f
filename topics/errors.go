package topics

import "fmt"

// Reason says why an input record was rejected. Its values are stable
// snake_case strings: they are written to the DLQ header dlq.reason and used
// as a metric label.
type Reason string

// Rejection reasons.
const (
	// ReasonTooLarge: the record value is larger than Decoder.MaxBytes. It
	// is checked before anything is parsed.
	ReasonTooLarge Reason = "too_large"
	// ReasonMalformed: the value (or, for CloudEvents, the data) is not
	// UTF-8 JSON, or the JSON envelope is not an object.
	ReasonMalformed Reason = "malformed"
	// ReasonInvalidSpecVersion: a CloudEvents record whose ce_specversion
	// is not "1.0", or one in structured mode (a JSON value with a
	// specversion member), which is not read.
	ReasonInvalidSpecVersion Reason = "invalid_specversion"
	// ReasonInvalidID: id missing, empty, not a string, or longer than
	// Limits.MaxIDBytes.
	ReasonInvalidID Reason = "invalid_id"
	// ReasonInvalidType: type missing, empty, not a string, or longer
	// than Limits.MaxLabelBytes.
	ReasonInvalidType Reason = "invalid_type"
	// ReasonInvalidVersion: version not an integer.
	ReasonInvalidVersion Reason = "invalid_version"
	// ReasonUnknownVersion: version is an integer this build does not know.
	ReasonUnknownVersion Reason = "unknown_version"
	// ReasonInvalidSource: source present but not a string, or longer
	// than Limits.MaxLabelBytes.
	ReasonInvalidSource Reason = "invalid_source"
	// ReasonInvalidAggregateID: aggregateId present but not a string, a
	// record key used as the aggregate ID that is not UTF-8, or an
	// aggregate ID longer than Limits.MaxAggregateIDBytes.
	ReasonInvalidAggregateID Reason = "invalid_aggregate_id"
	// ReasonMissingAggregateID: no aggregateId and no record key.
	ReasonMissingAggregateID Reason = "missing_aggregate_id"
	// ReasonInvalidSequence: sequence not an integer, below 1, or above
	// MaxSequence.
	ReasonInvalidSequence Reason = "invalid_sequence"
	// ReasonInvalidTimestamp: timestamp not an RFC 3339 string, or more than
	// Limits.MaxTimeAhead after the record's timestamp.
	ReasonInvalidTimestamp Reason = "invalid_timestamp"
	// ReasonInvalidData: data not an object, or one of its known fields
	// (userId, action, resource) not a string or longer than its bound
	// (Limits.MaxAggregateIDBytes, MaxLabelBytes), or a version 2 event
	// without data.userId.
	ReasonInvalidData Reason = "invalid_data"
	// ReasonInvalidMetadata: metadata not an object, or one of its known
	// fields not a string or longer than its bound (Limits.MaxIDBytes,
	// MaxAggregateIDBytes for userId).
	ReasonInvalidMetadata Reason = "invalid_metadata"
)

// Reasons returns every Reason, for instance to initialise a metric's label
// values. The slice is new on every call.
func Reasons() []Reason {
	return []Reason{
		ReasonTooLarge, ReasonMalformed, ReasonInvalidSpecVersion,
		ReasonInvalidID, ReasonInvalidType, ReasonInvalidVersion,
		ReasonUnknownVersion, ReasonInvalidSource, ReasonInvalidAggregateID,
		ReasonMissingAggregateID, ReasonInvalidSequence,
		ReasonInvalidTimestamp, ReasonInvalidData, ReasonInvalidMetadata,
	}
}

// ValidationError is the error Decode returns for a record that is not a
// valid event. Such a record goes to the DLQ with Reason as its reason.
type ValidationError struct {
	// Field names what was wrong: an envelope field ("id", "data.action"),
	// a CloudEvents header ("ce_id"), "value", or "key".
	Field string
	// Reason is the stable reason code.
	Reason Reason
	// Detail is a human-readable explanation.
	Detail string
}

// Error implements error.
func (e *ValidationError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("invalid event: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("invalid event: %s: %s: %s", e.Field, e.Reason, e.Detail)
}

func invalid(field string, reason Reason, detail string) *ValidationError {
	return &ValidationError{Field: field, Reason: reason, Detail: detail}
}
