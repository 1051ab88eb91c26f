package topics

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// DefaultMaxBytes is the largest record value a zero Decoder accepts: 1 MiB.
const DefaultMaxBytes = 1 << 20

// Decoder decodes and validates input records into Events. The zero value is
// ready to use. A Decoder is not safe for concurrent use, and a copy of a
// used Decoder shares its tables: give each goroutine its own (the runtime
// has one per partition).
//
// A Decoder keeps small tables of strings it has decoded, so that the
// values that recur from event to event (type, source, data.action,
// data.resource, the aggregate and user IDs) are not allocated again for
// every event: the events of one Decoder share those strings. The tables
// change what is allocated, never a decoded value. They are bounded in
// entries and in string length, so a Decoder holds at most about 1 MB
// however many distinct values it sees.
//
// A record is in the CloudEvents Kafka binding's binary mode when it has a
// ce_specversion header; otherwise its value is the JSON envelope. Either
// way the event is validated and upcast to CurrentVersion, and a W3C
// traceparent header is copied into Event.TraceParent.
//
// Checks run in a fixed order and the first failure is returned: size, JSON
// syntax, then specversion (a JSON value with a specversion member is a
// CloudEvents event in structured mode, which is refused rather than
// misread), version, id, type, source, aggregateId (and the record key),
// sequence, timestamp, data, metadata. The version goes first because it
// decides how the rest is read. For CloudEvents the order is size,
// ce_specversion, ce_schemaversion, ce_id, ce_type, ce_source,
// ce_aggregateid (and the key), ce_sequence, ce_time, the value (data), then
// the metadata headers. The length bounds (Limits) come last, in the same
// order of fields, and the sequence must be at most MaxSequence.
//
// Integers are strict: 17 is an integer, while 17.0, 1.7e1, "17" and 1e400
// are not (a JSON number with a fraction or an exponent is never an
// integer, whatever its value). A JSON null counts as absent. When a key
// appears twice in an object the last one wins, as in encoding/json. Unknown
// fields are ignored, and an unknown event type is not an error: the caller
// decides what to do with it.
type Decoder struct {
	// MaxBytes is the largest record value accepted; 0 or less means
	// DefaultMaxBytes. NewDecoder sets it from Limits.MaxBytes.
	MaxBytes int

	// limits holds the bounds NewDecoder was given; without limited,
	// the zero Decoder enforces DefaultLimits (and MaxBytes).
	limits  Limits
	limited bool

	// names holds type, source and data.action values; resources holds
	// data.resource values, apart so that a producer that puts an ID in
	// every resource cannot crowd the few names out.
	names, resources stringTable
	// users holds recent aggregate and user IDs.
	users recentStrings
}

// Decode decodes, validates and upcasts r. Every error it returns is a
// *ValidationError. The Event's strings do not alias r's buffers.
func (d *Decoder) Decode(r *Record) (Event, error) {
	lim := d.Limits()
	maxBytes := lim.MaxBytes
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
		verr = d.decodeCloudEvents(&e, r, &h)
	} else {
		e.Format = FormatJSON
		verr = d.decodeJSON(&e, r)
	}
	if verr == nil {
		verr = checkLengths(&e, &lim, e.Format == FormatCloudEvents)
	}
	if verr == nil {
		verr = checkTimeAhead(&e, r.Timestamp, &lim, e.Format == FormatCloudEvents)
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
func (d *Decoder) decodeJSON(e *Event, r *Record) *ValidationError {
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
		id, typ, version, source, aggregateID, sequence, timestamp, data, metadata, specVersion []byte
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
		case "specversion":
			env.specVersion = val
		}
	}
	if m.bad || skipWS(v, m.i) != len(v) {
		return invalid("value", ReasonMalformed, syntaxDetail(v))
	}

	if !isNull(env.specVersion) {
		// Read as the envelope, its time, aggregateid and extensions
		// would be dropped without a word.
		return invalid("specversion", ReasonInvalidSpecVersion,
			"a CloudEvents event in structured mode is not read: send it in binary mode (ce_* headers, the data object as the value)")
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
	} else if e.Type, ok = d.names.value(env.typ); !ok || e.Type == "" {
		return invalid("type", ReasonInvalidType, "must be a non-empty string")
	}
	if !isNull(env.source) {
		if e.Source, ok = d.names.value(env.source); !ok {
			return invalid("source", ReasonInvalidSource, "must be a string")
		}
	}
	if !isNull(env.aggregateID) {
		if e.AggregateID, ok = d.users.value(env.aggregateID); !ok {
			return invalid("aggregateId", ReasonInvalidAggregateID, "must be a string")
		}
	}
	if err := d.resolveAggregate(e, r.Key, "aggregateId"); err != nil {
		return err
	}
	if !isNull(env.sequence) {
		n, isInt, fits := intValue(env.sequence)
		if !isInt {
			return invalid("sequence", ReasonInvalidSequence, "not an integer: "+clip(env.sequence))
		}
		if !fits {
			return invalid("sequence", ReasonInvalidSequence, "out of range: "+clip(env.sequence))
		}
		if err := checkSequence("sequence", n); err != nil {
			return err
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
		if err := d.decodeData(e, env.data); err != nil {
			return err
		}
	}
	if !isNull(env.metadata) {
		if env.metadata[0] != '{' {
			return invalid("metadata", ReasonInvalidMetadata, "must be an object")
		}
		if err := d.decodeMetadata(e, env.metadata); err != nil {
			return err
		}
	}
	return finish(e, version, "version")
}

// decodeData decodes the data object obj, valid JSON, into e.Data.
// e.AggregateID must be set: a userId equal to it shares its string.
func (d *Decoder) decodeData(e *Event, obj []byte) *ValidationError {
	m := members{b: obj}
	for {
		k, val, ok := m.next()
		if !ok {
			return nil
		}
		var dst *string
		var field, s string
		switch string(k) {
		case "userId":
			if body, ok := plainString(val); ok && string(body) == e.AggregateID {
				e.Data.UserID = e.AggregateID
				continue
			}
			dst, field = &e.Data.UserID, "data.userId"
			s, ok = d.users.value(val)
		case "action":
			dst, field = &e.Data.Action, "data.action"
			s, ok = d.names.value(val)
		case "resource":
			dst, field = &e.Data.Resource, "data.resource"
			s, ok = d.resources.value(val)
		default:
			continue
		}
		if !ok && !isNull(val) { // null is absent: s is ""
			return invalid(field, ReasonInvalidData, "must be a string")
		}
		*dst = s
	}
}

// decodeMetadata decodes the metadata object obj, valid JSON, into
// e.Metadata. Correlation, causation and trace IDs are as many as events,
// or nearly, so only userId goes through a table.
func (d *Decoder) decodeMetadata(e *Event, obj []byte) *ValidationError {
	m := members{b: obj}
	for {
		k, val, ok := m.next()
		if !ok {
			return nil
		}
		var dst *string
		var field, s string
		switch string(k) {
		case "correlationId":
			dst, field = &e.Metadata.CorrelationID, "metadata.correlationId"
			s, ok = stringValue(val)
		case "causationId":
			dst, field = &e.Metadata.CausationID, "metadata.causationId"
			s, ok = stringValue(val)
		case "traceId":
			dst, field = &e.Metadata.TraceID, "metadata.traceId"
			s, ok = stringValue(val)
		case "userId":
			dst, field = &e.Metadata.UserID, "metadata.userId"
			s, ok = d.users.value(val)
		default:
			continue
		}
		if !ok && !isNull(val) { // null is absent: s is ""
			return invalid(field, ReasonInvalidMetadata, "must be a string")
		}
		*dst = s
	}
}

// resolveAggregate applies the record key to e: the aggregate ID when e has
// none, else a KeyMismatch check. An empty aggregate ID counts as absent.
func (d *Decoder) resolveAggregate(e *Event, key []byte, field string) *ValidationError {
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
	e.AggregateID = d.users.get(key)
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

// validTraceParent reports whether v is a W3C traceparent header in its
// exact version 00 form: 55 bytes, version-traceid-parentid-flags in
// lower-case hex (2-32-16-2 digits), neither ID all zeros. Anything else,
// including a later version's longer form, is dropped rather than copied
// to every output: the header is producer data, and only this form has a
// known size.
func validTraceParent(v []byte) bool {
	const n = 55 // len("00-" + 32 + "-" + 16 + "-" + "01")
	if len(v) != n || string(v[:2]) != "00" {
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
