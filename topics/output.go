package topics

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
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
// "aggregate:<userId>:<eventId>", the user ID written as idUser does.
func AggregateID(userID, eventID string) string {
	return "aggregate:" + idUser(userID) + ":" + eventID
}

// idUser returns userID as the output IDs that end with an arbitrary event
// ID write it, so that such an ID is one-to-one with (userID, eventID): the
// user part never holds ':', and ends at the first one. An ordinary user ID
// (no ':', not starting with '~') is written as it is, as in earlier
// releases; any other is written as '~' followed by the ID with '%' and ':'
// percent-encoded (%25, %3A), which the leading '~' keeps apart from the
// ordinary ones. Without it, user "u:x" with event "e" and user "u" with
// event "x:e" shared an ID, and consumers, which drop repeats by ID,
// dropped one. Milestone and gap IDs end with numbers, which hold no ':',
// and keep the user ID as it is.
func idUser(userID string) string {
	if !strings.HasPrefix(userID, "~") && !strings.Contains(userID, ":") {
		return userID
	}
	var b strings.Builder
	b.Grow(1 + len(userID) + 8)
	b.WriteByte('~')
	for i := 0; i < len(userID); i++ {
		switch c := userID[i]; c {
		case '%':
			b.WriteString("%25")
		case ':':
			b.WriteString("%3A")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// MilestoneID returns the ID of the milestone output for user userID reaching
// count: "milestone:<userId>:<count>".
func MilestoneID(userID string, count int64) string {
	return "milestone:" + userID + ":" + strconv.FormatInt(count, 10)
}

// AnomalyID returns the ID of the anomaly output fired by the event eventID
// of user userID: "anomaly:<userId>:<eventId>", the user ID written as
// idUser does.
func AnomalyID(userID, eventID string) string {
	return "anomaly:" + idUser(userID) + ":" + eventID
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
	var buf [len(timeLayout) + 8]byte
	return string(AppendTime(buf[:0], t))
}

// AppendTime appends FormatTime(t) to dst.
func AppendTime(dst []byte, t time.Time) []byte {
	if sec := t.Unix(); sec >= minFastMillis/1000 && sec <= maxFastMillis/1000 {
		return appendMillis(dst, sec*1000+int64(t.Nanosecond()/1e6))
	}
	return t.UTC().AppendFormat(dst, timeLayout)
}

// The times of years 0000 to 9999, in Unix milliseconds, which appendMillis
// formats itself; time.Format takes several times longer, and every output
// writes at least one time.
const (
	minFastMillis = -62_167_219_200_000 // 0000-01-01T00:00:00.000Z
	maxFastMillis = 253_402_300_799_999 // 9999-12-31T23:59:59.999Z
)

// appendMillis appends FormatTime(time.UnixMilli(ms)) to dst.
func appendMillis(dst []byte, ms int64) []byte {
	if ms < minFastMillis || ms > maxFastMillis {
		return time.UnixMilli(ms).UTC().AppendFormat(dst, timeLayout)
	}
	const msPerDay = 86_400_000
	days := ms / msPerDay
	if ms%msPerDay < 0 {
		days--
	}
	msOfDay := ms - days*msPerDay
	year, month, day := civil(days)
	b := [24]byte{4: '-', 7: '-', 10: 'T', 13: ':', 16: ':', 19: '.', 23: 'Z'}
	put := func(i, v, width int) {
		for j := i + width - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	put(5, month, 2)
	put(8, day, 2)
	put(11, int(msOfDay/3_600_000), 2)
	put(14, int(msOfDay/60_000%60), 2)
	put(17, int(msOfDay/1000%60), 2)
	put(20, int(msOfDay%1000), 3)
	return append(dst, b[:]...)
}

// civil returns the proleptic Gregorian date of the day days after
// 1970-01-01, for days in years 0 to 9999 (H. Hinnant's civil_from_days,
// with eras of 400 years starting on March 1st).
func civil(days int64) (year, month, day int) {
	z := int(days) + 719_468 // days since 0000-03-01
	era := z / 146_097
	if z < 0 {
		era = (z - 146_096) / 146_097
	}
	doe := z - era*146_097                                   // [0, 146096]
	yoe := (doe - doe/1460 + doe/36_524 - doe/146_096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)                 // [0, 365], from March 1st
	mp := (5*doy + 2) / 153                                  // [0, 11], from March
	day = doy - (153*mp+2)/5 + 1
	month = mp + 3
	if month > 12 {
		month -= 12
	}
	year = yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

// Count is one key of a counts object (actions, resources) and its count.
type Count struct {
	Key string
	N   int64
}

// AggregatedView is the data of a user.activity.aggregated output in the
// form a user's state keeps it, which AppendAggregatedView encodes without
// copying or sorting anything.
type AggregatedView struct {
	UserID        string
	TotalActivity int64
	// Actions and Resources are sorted by Key, each key once.
	Actions, Resources []Count
	// FirstActivityMillis and LastActivityMillis are Unix milliseconds,
	// written as FormatTime does, or as "" while TotalActivity is 0 (a user
	// that so far only advanced its sequence).
	FirstActivityMillis, LastActivityMillis int64
	LastSequence                            int64
}

// AppendAggregated appends the JSON user.activity.aggregated envelope of d to
// dst. Map keys are sorted, so the output is byte-deterministic.
func AppendAggregated(dst []byte, m OutputMeta, d *AggregatedData) []byte {
	var buf [32]Count
	counts := buf[:0]
	if n := len(d.Actions) + len(d.Resources); n > len(buf) {
		counts = make([]Count, 0, n)
	}
	counts = appendSortedCounts(counts, d.Actions)
	na := len(counts)
	counts = appendSortedCounts(counts, d.Resources)
	actions, resources := counts[:na], counts[na:]
	dst = appendAggregatedHead(dst, &m, d.UserID, d.TotalActivity, actions, resources)
	dst = appendString(dst, d.FirstActivityAt)
	dst = append(dst, `,"lastActivityAt":`...)
	dst = appendString(dst, d.LastActivityAt)
	return appendAggregatedTail(dst, &m, d.LastSequence)
}

// AppendAggregatedView appends the JSON user.activity.aggregated envelope of
// v to dst: the bytes AppendAggregated writes for the same data. It
// allocates nothing when dst has room for the output and the little slack
// its size estimate adds, which a buffer reused from earlier outputs has.
func AppendAggregatedView(dst []byte, m OutputMeta, v *AggregatedView) []byte {
	dst = appendAggregatedHead(dst, &m, v.UserID, v.TotalActivity, v.Actions, v.Resources)
	dst = appendActivityTime(dst, v.FirstActivityMillis, v.TotalActivity > 0)
	dst = append(dst, `,"lastActivityAt":`...)
	dst = appendActivityTime(dst, v.LastActivityMillis, v.TotalActivity > 0)
	return appendAggregatedTail(dst, &m, v.LastSequence)
}

// appendSortedCounts appends the entries of counts to dst, sorted by key.
func appendSortedCounts(dst []Count, counts map[string]int64) []Count {
	n := len(dst)
	for k, c := range counts {
		dst = append(dst, Count{k, c})
	}
	slices.SortFunc(dst[n:], func(a, b Count) int { return strings.Compare(a.Key, b.Key) })
	return dst
}

// aggregatedFixedSize bounds the bytes of an aggregated output besides its
// strings and counts: 309 of names, punctuation and the timestamp, two
// activity times of 24, two int64 numbers of up to 20 and the traceId name.
const aggregatedFixedSize = 309 + 2*24 + 2*20 + len(`,"traceId":""`)

// appendAggregatedHead reserves room for the whole aggregated output, so that
// a fresh or short dst grows once rather than at every append, then appends
// it up to and including `"firstActivityAt":`. The estimate counts strings
// unescaped and counts of up to 4 digits: a rarer output may grow once more.
func appendAggregatedHead(dst []byte, m *OutputMeta, userID string, total int64, actions, resources []Count) []byte {
	n := aggregatedFixedSize + len(m.ID) + len(m.AggregateID) + len(m.CorrelationID) + len(m.CausationID) +
		len(m.TraceID) + len(userID)
	for _, c := range actions {
		n += len(c.Key) + len(`"":9999,`)
	}
	for _, c := range resources {
		n += len(c.Key) + len(`"":9999,`)
	}
	dst = slices.Grow(dst, n)
	dst = appendHead(dst, TypeAggregated, m)
	dst = append(dst, `{"userId":`...)
	dst = appendString(dst, userID)
	dst = append(dst, `,"totalActivity":`...)
	dst = strconv.AppendInt(dst, total, 10)
	dst = append(dst, `,"actions":`...)
	dst = appendCounts(dst, actions)
	dst = append(dst, `,"resources":`...)
	dst = appendCounts(dst, resources)
	return append(dst, `,"firstActivityAt":`...)
}

// appendAggregatedTail appends the rest of an aggregated output after the
// lastActivityAt value.
func appendAggregatedTail(dst []byte, m *OutputMeta, lastSequence int64) []byte {
	dst = append(dst, `,"lastSequence":`...)
	dst = strconv.AppendInt(dst, lastSequence, 10)
	dst = append(dst, '}')
	return appendTail(dst, m)
}

// appendActivityTime appends the time ms as a JSON string when valid, else
// "".
func appendActivityTime(dst []byte, ms int64, valid bool) []byte {
	dst = append(dst, '"')
	if valid {
		dst = appendMillis(dst, ms)
	}
	return append(dst, '"')
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

// appendCounts appends counts, in their order, as a JSON object.
func appendCounts(dst []byte, counts []Count) []byte {
	dst = append(dst, '{')
	for i, c := range counts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, c.Key)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, c.N, 10)
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
