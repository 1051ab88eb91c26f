package topics

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// OutputMeta is the envelope part of an output record: everything but the
// data.
type OutputMeta struct {
	// ID is the output's deterministic ID (see AggregateID, MilestoneID,
	// AnomalyID and GapID).
	ID string
	// AggregateID is the user ID; it is also the output record's key.
	AggregateID string
	// Time is the output's event time: the time of the input that caused it.
	Time time.Time
	// CorrelationID is the input's correlation ID, or the input's ID.
	CorrelationID string
	// CausationID is the input's ID.
	CausationID string
	// TraceID is the input's metadata.traceId; omitted when empty.
	TraceID string
}

// MetaFor returns the OutputMeta of an output with the given ID caused by e.
func MetaFor(e *Event, id string) OutputMeta {
	return OutputMeta{
		ID:            id,
		AggregateID:   e.AggregateID,
		Time:          e.Time,
		CorrelationID: e.CorrelationID(),
		CausationID:   e.ID,
		TraceID:       e.Metadata.TraceID,
	}
}

// Output is an output envelope as downstream consumers read it, for decoding
// with encoding/json (tests, tools). The Append functions write this shape.
type Output struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Version     int             `json:"version"`
	Source      string          `json:"source"`
	AggregateID string          `json:"aggregateId"`
	Timestamp   string          `json:"timestamp"`
	Data        json.RawMessage `json:"data"`
	Metadata    Metadata        `json:"metadata"`
}

// Deterministic output IDs: a replay of the same input produces the same IDs,
// so downstream consumers can drop repeats by ID.

// AggregateID returns the ID of the user.activity.aggregated output written
// after the event eventID was applied to user userID:
// "aggregate:<userId>:<eventId>".
func AggregateID(userID, eventID string) string {
	return "aggregate:" + userID + ":" + eventID
}

// MilestoneID returns the ID of the milestone output for user userID reaching
// count: "milestone:<userId>:<count>".
func MilestoneID(userID string, count int64) string {
	return "milestone:" + userID + ":" + strconv.FormatInt(count, 10)
}

// AnomalyID returns the ID of the anomaly output fired by the event eventID
// of user userID: "anomaly:<userId>:<eventId>".
func AnomalyID(userID, eventID string) string {
	return "anomaly:" + userID + ":" + eventID
}

// GapID returns the ID of the gap record for aggregate agg giving up on
// sequences expected..resumedAt-1: "gap:<agg>:<expected>:<resumedAt>".
func GapID(agg string, expected, resumedAt int64) string {
	return "gap:" + agg + ":" + strconv.FormatInt(expected, 10) + ":" + strconv.FormatInt(resumedAt, 10)
}

// timeLayout is RFC 3339 in UTC with exactly three fractional digits.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatTime formats t as the outputs do: RFC 3339 in UTC with exactly three
// fractional digits (milliseconds, truncated), e.g. 2026-11-22T10:00:00.123Z.
func FormatTime(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

// AppendTime appends FormatTime(t) to dst.
func AppendTime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, timeLayout)
}

// AppendAggregated appends the JSON user.activity.aggregated envelope of d to
// dst. Map keys are sorted, so the output is byte-deterministic.
func AppendAggregated(dst []byte, m OutputMeta, d *AggregatedData) []byte {
	dst = appendHead(dst, TypeAggregated, &m)
	dst = append(dst, `{"userId":`...)
	dst = appendString(dst, d.UserID)
	dst = append(dst, `,"totalActivity":`...)
	dst = strconv.AppendInt(dst, d.TotalActivity, 10)
	dst = append(dst, `,"actions":`...)
	dst = appendCounts(dst, d.Actions)
	dst = append(dst, `,"resources":`...)
	dst = appendCounts(dst, d.Resources)
	dst = append(dst, `,"firstActivityAt":`...)
	dst = appendString(dst, d.FirstActivityAt)
	dst = append(dst, `,"lastActivityAt":`...)
	dst = appendString(dst, d.LastActivityAt)
	dst = append(dst, `,"lastSequence":`...)
	dst = strconv.AppendInt(dst, d.LastSequence, 10)
	dst = append(dst, '}')
	return appendTail(dst, &m)
}

// AppendMilestone appends the JSON user.milestone.reached envelope of d to dst.
func AppendMilestone(dst []byte, m OutputMeta, d *MilestoneData) []byte {
	dst = appendHead(dst, TypeMilestone, &m)
	dst = append(dst, `{"userId":`...)
	dst = appendString(dst, d.UserID)
	dst = append(dst, `,"milestone":`...)
	dst = appendString(dst, d.Milestone)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, d.Count, 10)
	dst = append(dst, '}')
	return appendTail(dst, &m)
}

// AppendAnomaly appends the JSON anomaly.detected envelope of d to dst.
// Rates are JSON numbers formatted as encoding/json does; a non-finite rate,
// which the processors never produce, is written as null so that the output
// stays valid JSON.
func AppendAnomaly(dst []byte, m OutputMeta, d *AnomalyData) []byte {
	dst = appendHead(dst, TypeAnomaly, &m)
	dst = append(dst, `{"userId":`...)
	dst = appendString(dst, d.UserID)
	dst = append(dst, `,"anomalyType":`...)
	dst = appendString(dst, d.AnomalyType)
	dst = append(dst, `,"currentRate":`...)
	dst = appendFloat(dst, d.CurrentRate)
	dst = append(dst, `,"averageRate":`...)
	dst = appendFloat(dst, d.AverageRate)
	dst = append(dst, `,"windowCount":`...)
	dst = strconv.AppendInt(dst, d.WindowCount, 10)
	dst = append(dst, `,"severity":`...)
	dst = appendString(dst, d.Severity)
	dst = append(dst, '}')
	return appendTail(dst, &m)
}

// AppendGap appends the JSON user.activity.gap envelope of d to dst.
func AppendGap(dst []byte, m OutputMeta, d *GapData) []byte {
	dst = appendHead(dst, TypeGap, &m)
	dst = append(dst, `{"aggregateId":`...)
	dst = appendString(dst, d.AggregateID)
	dst = append(dst, `,"expected":`...)
	dst = strconv.AppendInt(dst, d.Expected, 10)
	dst = append(dst, `,"resumedAt":`...)
	dst = strconv.AppendInt(dst, d.ResumedAt, 10)
	dst = append(dst, `,"skipped":`...)
	dst = strconv.AppendInt(dst, d.Skipped, 10)
	dst = append(dst, '}')
	return appendTail(dst, &m)
}

// appendHead appends the envelope up to and including `"data":`.
func appendHead(dst []byte, typ string, m *OutputMeta) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, typ)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, OutputVersion, 10)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, OutputSource)
	dst = append(dst, `,"aggregateId":`...)
	dst = appendString(dst, m.AggregateID)
	dst = append(dst, `,"timestamp":"`...)
	dst = AppendTime(dst, m.Time)
	return append(dst, `","data":`...)
}

// appendTail appends the metadata and closes the envelope.
func appendTail(dst []byte, m *OutputMeta) []byte {
	dst = append(dst, `,"metadata":{"correlationId":`...)
	dst = appendString(dst, m.CorrelationID)
	dst = append(dst, `,"causationId":`...)
	dst = appendString(dst, m.CausationID)
	if m.TraceID != "" {
		dst = append(dst, `,"traceId":`...)
		dst = appendString(dst, m.TraceID)
	}
	return append(dst, "}}"...)
}

// appendCounts appends counts as a JSON object with sorted keys.
func appendCounts(dst []byte, counts map[string]int64) []byte {
	if len(counts) == 0 {
		return append(dst, "{}"...)
	}
	var buf [32]string
	keys := buf[:0]
	if len(counts) > len(buf) {
		keys = make([]string, 0, len(counts))
	}
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, counts[k], 10)
	}
	return append(dst, '}')
}

// appendFloat appends f as encoding/json does (ES6 number formatting), or
// null when f is not finite.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// without HTML escaping: invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029
// are escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
