package topics

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// DefaultMaxBytes is the largest record value a zero Decoder accepts: 1 MiB.
const DefaultMaxBytes = 1 << 20

// Decoder decodes and validates input records into Events. The zero value is
// ready to use. A Decoder is safe for concurrent use.
//
// A record is in the CloudEvents Kafka binding's binary mode when it has a
// ce_specversion header; otherwise its value is the JSON envelope. Either
// way the event is validated and upcast to CurrentVersion, and a W3C
// traceparent header is copied into Event.TraceParent.
//
// Checks run in a fixed order and the first failure is returned: size, JSON
// syntax, then version, id, type, source, aggregateId (and the record key),
// sequence, timestamp, data, metadata. The version goes first because it
// decides how the rest is read. For CloudEvents the order is size,
// ce_specversion, ce_schemaversion, ce_id, ce_type, ce_source,
// ce_aggregateid (and the key), ce_sequence, ce_time, the value (data), then
// the metadata headers.
//
// Integers are strict: 17 is an integer, while 17.0, 1.7e1, "17" and 1e400
// are not (a JSON number with a fraction or an exponent is never an
// integer, whatever its value). A JSON null counts as absent. When a key
// appears twice in an object the last one wins, as in encoding/json. Unknown
// fields are ignored, and an unknown event type is not an error: the caller
// decides what to do with it.
type Decoder struct {
	// MaxBytes is the largest record value accepted; 0 or less means
	// DefaultMaxBytes.
	MaxBytes int
}

// Decode decodes, validates and upcasts r. Every error it returns is a
// *ValidationError. The Event's strings do not alias r's buffers.
func (d *Decoder) Decode(r *Record) (Event, error) {
	maxBytes := d.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if len(r.Value) > maxBytes {
		return Event{}, invalid("value", ReasonTooLarge,
			fmt.Sprintf("%d bytes, limit %d", len(r.Value), maxBytes))
	}
	var h headerIndex
	h.scan(r.Headers)
	var e Event
	var verr *ValidationError
	if h[hSpecVersion] != 0 {
		e.Format = FormatCloudEvents
		verr = decodeCloudEvents(&e, r, &h)
	} else {
		e.Format = FormatJSON
		verr = decodeJSON(&e, r)
	}
	if verr != nil {
		return Event{}, verr
	}
	if i := h[hTraceParent]; i != 0 {
		if v := r.Headers[i-1].Value; validTraceParent(v) {
			e.TraceParent = string(v)
		}
	}
	return e, nil
}

// Headers the decoder reads.
const (
	hSpecVersion = iota
	hID
	hType
	hSource
	hTime
	hAggregateID
	hSequence
	hSchemaVersion
	hCorrelationID
	hCausationID
	hTraceID
	hUserID
	hTraceParent
	numHeaders
)

// headerNames maps each header the decoder reads to its name.
var headerNames = [numHeaders]string{
	hSpecVersion:   "ce_specversion",
	hID:            "ce_id",
	hType:          "ce_type",
	hSource:        "ce_source",
	hTime:          "ce_time",
	hAggregateID:   "ce_aggregateid",
	hSequence:      "ce_sequence",
	hSchemaVersion: "ce_schemaversion",
	hCorrelationID: "ce_correlationid",
	hCausationID:   "ce_causationid",
	hTraceID:       "ce_traceid",
	hUserID:        "ce_userid",
	hTraceParent:   "traceparent",
}

// headerIndex holds, per header the decoder reads, 1 + the index of its last
// occurrence in the record's headers, or 0 when it is absent.
type headerIndex [numHeaders]int

func (h *headerIndex) scan(hs []Header) {
	for i := range hs {
		k := hs[i].Key
		if len(k) < 3 || (k[0] != 'c' && k[0] != 't') {
			continue
		}
		for j := range headerNames {
			if k == headerNames[j] {
				h[j] = i + 1
				break
			}
		}
	}
}

// decodeJSON decodes the JSON envelope in r.Value into e.
func decodeJSON(e *Event, r *Record) *ValidationError {
	v := r.Value
	if !utf8.Valid(v) {
		return invalid("value", ReasonMalformed, "not UTF-8")
	}
	start := skipWS(v, 0)
	if start == len(v) || v[start] != '{' {
		if end, ok := scanValue(v, start, 0); ok && skipWS(v, end) == len(v) {
			return invalid("value", ReasonMalformed, "not a JSON object")
		}
		return invalid("value", ReasonMalformed, syntaxDetail(v))
	}
	var env struct {
		id, typ, version, source, aggregateID, sequence, timestamp, data, metadata []byte
	}
	// The syntax is checked on the way: every member is read before any
	// field is, so a syntax error still comes before every other check.
	m := members{b: v, i: start}
	for {
		k, val, ok := m.next()
		if !ok {
			break
		}
		switch string(k) {
		case "id":
			env.id = val
		case "type":
			env.typ = val
		case "version":
			env.version = val
		case "source":
			env.source = val
		case "aggregateId":
			env.aggregateID = val
		case "sequence":
			env.sequence = val
		case "timestamp":
			env.timestamp = val
		case "data":
			env.data = val
		case "metadata":
			env.metadata = val
		}
	}
	if m.bad || skipWS(v, m.i) != len(v) {
		return invalid("value", ReasonMalformed, syntaxDetail(v))
	}

	version := 1
	if !isNull(env.version) {
		n, isInt, fits := intValue(env.version)
		if !isInt {
			return invalid("version", ReasonInvalidVersion, "not an integer: "+clip(env.version))
		}
		if !fits || !knownVersion(n) {
			return invalid("version", ReasonUnknownVersion, unknownVersionDetail(clip(env.version)))
		}
		version = int(n)
	}

	var ok bool
	if e.ID, ok = stringValue(env.id); !ok || e.ID == "" {
		return invalid("id", ReasonInvalidID, "must be a non-empty string")
	}
	if body, escaped, isStr := stringBytes(env.typ); isStr && !escaped && string(body) == TypeUserActivity {
		e.Type = TypeUserActivity // the common case, without an allocation
	} else if e.Type, ok = stringValue(env.typ); !ok || e.Type == "" {
		return invalid("type", ReasonInvalidType, "must be a non-empty string")
	}
	if !isNull(env.source) {
		if e.Source, ok = stringValue(env.source); !ok {
			return invalid("source", ReasonInvalidSource, "must be a string")
		}
	}
	if !isNull(env.aggregateID) {
		if e.AggregateID, ok = stringValue(env.aggregateID); !ok {
			return invalid("aggregateId", ReasonInvalidAggregateID, "must be a string")
		}
	}
	if err := resolveAggregate(e, r.Key, "aggregateId"); err != nil {
		return err
	}
	if !isNull(env.sequence) {
		n, isInt, fits := intValue(env.sequence)
		if !isInt || !fits {
			return invalid("sequence", ReasonInvalidSequence, "not an integer: "+clip(env.sequence))
		}
		if n < 1 {
			return invalid("sequence", ReasonInvalidSequence, strconv.FormatInt(n, 10)+" is below 1")
		}
		e.Sequence = n
	}
	if isNull(env.timestamp) {
		e.Time = r.Timestamp.UTC()
	} else {
		body, escaped, isStr := stringBytes(env.timestamp)
		if !isStr {
			return invalid("timestamp", ReasonInvalidTimestamp, "must be an RFC 3339 string")
		}
		if escaped { // rare: unescape first
			s, _ := stringValue(env.timestamp)
			body = []byte(s)
		}
		t, err := parseTime(body)
		if err != nil {
			return invalid("timestamp", ReasonInvalidTimestamp, err.Error())
		}
		e.Time = t
	}
	if !isNull(env.data) {
		if env.data[0] != '{' {
			return invalid("data", ReasonInvalidData, "must be an object")
		}
		if err := decodeData(e, env.data); err != nil {
			return err
		}
	}
	if !isNull(env.metadata) {
		if env.metadata[0] != '{' {
			return invalid("metadata", ReasonInvalidMetadata, "must be an object")
		}
		if err := decodeMetadata(e, env.metadata); err != nil {
			return err
		}
	}
	return finish(e, version, "version")
}

// decodeData decodes the data object obj, valid JSON, into e.Data.
// e.AggregateID must be set: a userId equal to it shares its string.
func decodeData(e *Event, obj []byte) *ValidationError {
	m := members{b: obj}
	for {
		k, val, ok := m.next()
		if !ok {
			return nil
		}
		var dst *string
		var field string
		switch string(k) {
		case "userId":
			if body, escaped, isStr := stringBytes(val); isStr && !escaped && string(body) == e.AggregateID {
				e.Data.UserID = e.AggregateID
				continue
			}
			dst, field = &e.Data.UserID, "data.userId"
		case "action":
			dst, field = &e.Data.Action, "data.action"
		case "resource":
			dst, field = &e.Data.Resource, "data.resource"
		default:
			continue
		}
		if isNull(val) {
			*dst = ""
			continue
		}
		s, ok := stringValue(val)
		if !ok {
			return invalid(field, ReasonInvalidData, "must be a string")
		}
		*dst = s
	}
}

// decodeMetadata decodes the metadata object obj, valid JSON, into
// e.Metadata.
func decodeMetadata(e *Event, obj []byte) *ValidationError {
	m := members{b: obj}
	for {
		k, val, ok := m.next()
		if !ok {
			return nil
		}
		var dst *string
		var field string
		switch string(k) {
		case "correlationId":
			dst, field = &e.Metadata.CorrelationID, "metadata.correlationId"
		case "causationId":
			dst, field = &e.Metadata.CausationID, "metadata.causationId"
		case "traceId":
			dst, field = &e.Metadata.TraceID, "metadata.traceId"
		case "userId":
			dst, field = &e.Metadata.UserID, "metadata.userId"
		default:
			continue
		}
		if isNull(val) {
			*dst = ""
			continue
		}
		s, ok := stringValue(val)
		if !ok {
			return invalid(field, ReasonInvalidMetadata, "must be a string")
		}
		*dst = s
	}
}

// decodeCloudEvents decodes a CloudEvents binary-mode record into e.
func decodeCloudEvents(e *Event, r *Record, h *headerIndex) *ValidationError {
	get := func(k int) ([]byte, bool) {
		if i := h[k]; i != 0 {
			return r.Headers[i-1].Value, true
		}
		return nil, false
	}
	// str returns header k as a string; a header that is not UTF-8 is
	// rejected with reason.
	str := func(k int, reason Reason) (string, bool, *ValidationError) {
		v, ok := get(k)
		if !ok {
			return "", false, nil
		}
		if !utf8.Valid(v) {
			return "", true, invalid(headerNames[k], reason, "not UTF-8")
		}
		return string(v), true, nil
	}

	if v, _ := get(hSpecVersion); string(v) != "1.0" {
		return invalid(headerNames[hSpecVersion], ReasonInvalidSpecVersion,
			fmt.Sprintf("%q is not 1.0", clip(v)))
	}
	version := 1
	if v, ok := get(hSchemaVersion); ok {
		n, isInt, fits := intValue(v)
		if !isInt {
			return invalid(headerNames[hSchemaVersion], ReasonInvalidVersion, fmt.Sprintf("not an integer: %q", clip(v)))
		}
		if !fits || !knownVersion(n) {
			return invalid(headerNames[hSchemaVersion], ReasonUnknownVersion, unknownVersionDetail(clip(v)))
		}
		version = int(n)
	}
	var err *ValidationError
	if v, _ := get(hID); len(v) == 0 {
		return invalid(headerNames[hID], ReasonInvalidID, "missing or empty")
	}
	if e.ID, _, err = str(hID, ReasonInvalidID); err != nil {
		return err
	}
	if v, _ := get(hType); len(v) == 0 {
		return invalid(headerNames[hType], ReasonInvalidType, "missing or empty")
	} else if string(v) == TypeUserActivity {
		e.Type = TypeUserActivity
	} else if e.Type, _, err = str(hType, ReasonInvalidType); err != nil {
		return err
	}
	if e.Source, _, err = str(hSource, ReasonInvalidSource); err != nil {
		return err
	}
	if e.AggregateID, _, err = str(hAggregateID, ReasonInvalidAggregateID); err != nil {
		return err
	}
	if err := resolveAggregate(e, r.Key, headerNames[hAggregateID]); err != nil {
		return err
	}
	if v, ok := get(hSequence); ok {
		n, isInt, fits := intValue(v)
		if !isInt || !fits {
			return invalid(headerNames[hSequence], ReasonInvalidSequence, fmt.Sprintf("not an integer: %q", clip(v)))
		}
		if n < 1 {
			return invalid(headerNames[hSequence], ReasonInvalidSequence, strconv.FormatInt(n, 10)+" is below 1")
		}
		e.Sequence = n
	}
	if v, ok := get(hTime); ok {
		t, err := parseTime(v)
		if err != nil {
			return invalid(headerNames[hTime], ReasonInvalidTimestamp, err.Error())
		}
		e.Time = t
	} else {
		e.Time = r.Timestamp.UTC()
	}
	if err := decodeCloudEventsData(e, r.Value); err != nil {
		return err
	}
	meta := [...]struct {
		k   int
		dst *string
	}{
		{hCorrelationID, &e.Metadata.CorrelationID},
		{hCausationID, &e.Metadata.CausationID},
		{hTraceID, &e.Metadata.TraceID},
		{hUserID, &e.Metadata.UserID},
	}
	for _, m := range meta {
		if *m.dst, _, err = str(m.k, ReasonInvalidMetadata); err != nil {
			return err
		}
	}
	return finish(e, version, headerNames[hSchemaVersion])
}

// decodeCloudEventsData decodes the value of a binary-mode record, the data
// object, into e.Data. An empty value or JSON null means no data.
func decodeCloudEventsData(e *Event, v []byte) *ValidationError {
	start := skipWS(v, 0)
	if start == len(v) {
		return nil
	}
	if !utf8.Valid(v) {
		return invalid("value", ReasonMalformed, "not UTF-8")
	}
	end, ok := scanValue(v, start, 0)
	if !ok || skipWS(v, end) != len(v) {
		return invalid("value", ReasonMalformed, syntaxDetail(v))
	}
	obj := v[start:end]
	if isNull(obj) {
		return nil
	}
	if obj[0] != '{' {
		return invalid("data", ReasonInvalidData, "must be an object")
	}
	return decodeData(e, obj)
}

// resolveAggregate applies the record key to e: the aggregate ID when e has
// none, else a KeyMismatch check. An empty aggregate ID counts as absent.
func resolveAggregate(e *Event, key []byte, field string) *ValidationError {
	if e.AggregateID != "" {
		e.KeyMismatch = len(key) > 0 && string(key) != e.AggregateID
		return nil
	}
	if len(key) == 0 {
		return invalid(field, ReasonMissingAggregateID, "no aggregate ID and no record key")
	}
	if !utf8.Valid(key) {
		return invalid("key", ReasonInvalidAggregateID, "the record key is not UTF-8")
	}
	e.AggregateID = string(key)
	return nil
}

// finish applies the rules of the event's schema version, then upcasts it.
func finish(e *Event, version int, versionField string) *ValidationError {
	if version >= 2 && e.Data.UserID == "" {
		return invalid("data.userId", ReasonInvalidData,
			fmt.Sprintf("required from version 2 (%s is %d)", versionField, version))
	}
	e.Version = version
	if err := Upcast(e); err != nil {
		var verr *ValidationError
		if errors.As(err, &verr) {
			return verr
		}
		return invalid(versionField, ReasonUnknownVersion, err.Error())
	}
	return nil
}

// parseTime parses an RFC 3339 timestamp and returns it in UTC.
func parseTime(b []byte) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 time: %q", clip(b))
	}
	return t.UTC(), nil
}

// syntaxDetail describes why v is not valid JSON.
func syntaxDetail(v []byte) string {
	// Unmarshal into an empty struct stops at the syntax check.
	err := json.Unmarshal(v, &struct{}{})
	if err == nil {
		return "invalid JSON"
	}
	return err.Error()
}

// clip returns b as a string for an error message, cut to a sane length.
func clip(b []byte) string {
	const maxLen = 64
	if len(b) > maxLen {
		return string(b[:maxLen]) + "..."
	}
	return string(b)
}

// validTraceParent reports whether v looks like a W3C traceparent header:
// version-traceid-parentid-flags in lower-case hex (2-32-16-2 digits), with
// room for more fields after a future version's flags. An invalid one is
// ignored, as the W3C Trace Context specification requires.
func validTraceParent(v []byte) bool {
	const n = 55 // len("00-" + 32 + "-" + 16 + "-" + "01")
	if len(v) < n || (len(v) > n && (v[n] != '-' || string(v[:2]) == "00")) {
		return false
	}
	if string(v[:2]) == "ff" {
		return false
	}
	zeroTrace, zeroParent := true, true
	for i := range n {
		c := v[i]
		switch i {
		case 2, 35, 52:
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
		if c != '0' {
			switch {
			case i >= 3 && i < 35:
				zeroTrace = false
			case i >= 36 && i < 52:
				zeroParent = false
			}
		}
	}
	return !zeroTrace && !zeroParent
}
