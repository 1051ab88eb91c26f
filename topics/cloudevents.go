// Decoding a CloudEvents record in binary mode: the attributes in ce_*
// headers, the data in the value.

package topics

import (
	"fmt"
	"unicode/utf8"
)

// decodeCloudEvents decodes a CloudEvents binary-mode record into e.
func (d *Decoder) decodeCloudEvents(e *Event, r *Record, h *headerIndex) *ValidationError {
	get := func(k int) ([]byte, bool) {
		if i := h[k]; i != 0 {
			return r.Headers[i-1].Value, true
		}
		return nil, false
	}
	// text returns header k, nil when absent; a header that is not UTF-8
	// is rejected with reason.
	text := func(k int, reason Reason) ([]byte, *ValidationError) {
		v, _ := get(k)
		if !utf8.Valid(v) {
			return nil, invalid(headerNames[k], reason, "not UTF-8")
		}
		return v, nil
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
	if v, _ := get(hID); len(v) == 0 {
		return invalid(headerNames[hID], ReasonInvalidID, "missing or empty")
	}
	v, err := text(hID, ReasonInvalidID)
	if err != nil {
		return err
	}
	e.ID = string(v)
	if v, _ := get(hType); len(v) == 0 {
		return invalid(headerNames[hType], ReasonInvalidType, "missing or empty")
	} else if string(v) == TypeUserActivity {
		e.Type = TypeUserActivity
	} else if v, err = text(hType, ReasonInvalidType); err != nil {
		return err
	} else {
		e.Type = d.names.get(v)
	}
	if v, err = text(hSource, ReasonInvalidSource); err != nil {
		return err
	}
	e.Source = d.names.get(v)
	if v, err = text(hAggregateID, ReasonInvalidAggregateID); err != nil {
		return err
	}
	e.AggregateID = d.users.get(v)
	if err := d.resolveAggregate(e, r.Key, headerNames[hAggregateID]); err != nil {
		return err
	}
	if v, ok := get(hSequence); ok {
		n, isInt, fits := intValue(v)
		if !isInt || !fits {
			return invalid(headerNames[hSequence], ReasonInvalidSequence, fmt.Sprintf("not an integer: %q", clip(v)))
		}
		if err := checkSequence(headerNames[hSequence], n); err != nil {
			return err
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
	if err := d.decodeCloudEventsData(e, r.Value); err != nil {
		return err
	}
	meta := [...]struct {
		k   int
		dst *string
	}{
		{hCorrelationID, &e.Metadata.CorrelationID},
		{hCausationID, &e.Metadata.CausationID},
		{hTraceID, &e.Metadata.TraceID},
	}
	for _, m := range meta {
		if v, err = text(m.k, ReasonInvalidMetadata); err != nil {
			return err
		}
		*m.dst = string(v)
	}
	if v, err = text(hUserID, ReasonInvalidMetadata); err != nil {
		return err
	}
	e.Metadata.UserID = d.users.get(v)
	return finish(e, version, headerNames[hSchemaVersion])
}

// decodeCloudEventsData decodes the value of a binary-mode record, the data
// object, into e.Data. An empty value or JSON null means no data.
func (d *Decoder) decodeCloudEventsData(e *Event, v []byte) *ValidationError {
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
	return d.decodeData(e, obj)
}
