package topics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/streamworker/streamworker/topics"
)

// FuzzDecode checks the decoder's invariants on arbitrary records, and, for
// the JSON form, that it agrees with reference, a slow decoder built on
// encoding/json that states the validation rules directly.
//
// headers is "key=value" lines; a ce_specversion line switches the record to
// CloudEvents binary mode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("u-42"), []byte(fullJSON), "traceparent="+traceParent)
	f.Add([]byte(""), []byte(`{"id":"e","type":"t","aggregateId":"a","sequence":1}`), "")
	f.Add([]byte("k"), []byte(`{"id":"e","type":"t","version":2,"data":{"userId":"u"}}`), "")
	f.Add([]byte("k"), []byte(`{"id":"e","type":"t","sequence":-1}`), "")
	f.Add([]byte("k"), []byte(`{"id":"e","type":"t","sequence":1.0}`), "")
	f.Add([]byte("k"), []byte(`{"id":"\u0065","type":"t","timestamp":"2026-11-22T10:00:00+01:00"}`), "")
	f.Add([]byte("k"), []byte(`{"id":"e","id":null,"type":"t"}`), "")
	f.Add([]byte("k"), []byte(`[{"id":"e"}]`), "")
	f.Add([]byte("k"), []byte(`{"userId":"u-42","action":"click"}`),
		"ce_specversion=1.0\nce_id=e\nce_type=user.activity\nce_sequence=3\nce_time=2026-11-22T10:00:00Z\nce_schemaversion=2")
	f.Add([]byte(""), []byte(``), "ce_specversion=1.0\nce_id=e\nce_type=t\nce_aggregateid=a")

	d := topics.Decoder{MaxBytes: 4096} // small, so that huge inputs minimize fast
	f.Fuzz(func(t *testing.T, key, value []byte, headers string) {
		r := &topics.Record{Key: key, Value: value, Timestamp: recordTime}
		for line := range strings.SplitSeq(headers, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				r.Headers = append(r.Headers, topics.Header{Key: k, Value: []byte(v)})
			}
		}
		e, err := d.Decode(r)
		if err != nil {
			var verr *topics.ValidationError
			if !errors.As(err, &verr) || verr.Field == "" || verr.Reason == "" {
				t.Fatalf("error %#v is not a complete *ValidationError", err)
			}
		} else {
			if e.ID == "" || e.Type == "" || e.AggregateID == "" || e.Sequence < 0 ||
				e.Version != topics.CurrentVersion || e.Data.UserID == "" || e.Time.Location() != time.UTC {
				t.Fatalf("invalid event decoded: %+v", e)
			}
		}
		if e.Format == topics.FormatCloudEvents || strings.Contains(headers, "ce_specversion=") {
			return
		}
		want, wantErr := reference(r, d.MaxBytes)
		var verr *topics.ValidationError
		errors.As(err, &verr)
		switch {
		case wantErr == nil && err != nil:
			t.Fatalf("Decode failed (%v), reference accepted: %+v", err, want)
		case wantErr != nil && err == nil:
			t.Fatalf("Decode accepted %+v, reference failed: %v", e, wantErr)
		case wantErr != nil && (!sameField(verr.Field, wantErr.Field) || verr.Reason != wantErr.Reason):
			t.Fatalf("Decode: %v; reference: %v", err, wantErr)
		case wantErr == nil && !reflect.DeepEqual(e, want):
			t.Fatalf("Decode:    %+v\nreference: %+v", e, want)
		}
	})
}

var integerLiteral = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// reference decodes the JSON form with encoding/json, following the rules of
// DESIGN section 2 in the order the Decoder documents.
func reference(r *topics.Record, maxBytes int) (topics.Event, *topics.ValidationError) {
	bad := func(field string, reason topics.Reason) (topics.Event, *topics.ValidationError) {
		return topics.Event{}, &topics.ValidationError{Field: field, Reason: reason}
	}
	if len(r.Value) > maxBytes {
		return bad("value", topics.ReasonTooLarge)
	}
	if !utf8.Valid(r.Value) || !json.Valid(r.Value) {
		return bad("value", topics.ReasonMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(r.Value))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		panic(err) // json.Valid said it was valid
	}
	env, ok := x.(map[string]any)
	if !ok {
		return bad("value", topics.ReasonMalformed)
	}
	e := topics.Event{Format: topics.FormatJSON, TraceParent: ""}
	for _, h := range r.Headers {
		if h.Key == "traceparent" {
			e.TraceParent = string(h.Value) // checked below
		}
	}

	version := int64(1)
	if v := env["version"]; v != nil {
		n, isNum := v.(json.Number)
		if !isNum || !integerLiteral.MatchString(string(n)) {
			return bad("version", topics.ReasonInvalidVersion)
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i < topics.MinVersion || i > topics.CurrentVersion {
			return bad("version", topics.ReasonUnknownVersion)
		}
		version = i
	}
	if e.ID, ok = env["id"].(string); !ok || e.ID == "" {
		return bad("id", topics.ReasonInvalidID)
	}
	if e.Type, ok = env["type"].(string); !ok || e.Type == "" {
		return bad("type", topics.ReasonInvalidType)
	}
	if v := env["source"]; v != nil {
		if e.Source, ok = v.(string); !ok {
			return bad("source", topics.ReasonInvalidSource)
		}
	}
	if v := env["aggregateId"]; v != nil {
		if e.AggregateID, ok = v.(string); !ok {
			return bad("aggregateId", topics.ReasonInvalidAggregateID)
		}
	}
	switch {
	case e.AggregateID != "":
		e.KeyMismatch = len(r.Key) > 0 && string(r.Key) != e.AggregateID
	case len(r.Key) == 0:
		return bad("aggregateId", topics.ReasonMissingAggregateID)
	case !utf8.Valid(r.Key):
		return bad("key", topics.ReasonInvalidAggregateID)
	default:
		e.AggregateID = string(r.Key)
	}
	if v := env["sequence"]; v != nil {
		n, isNum := v.(json.Number)
		if !isNum || !integerLiteral.MatchString(string(n)) {
			return bad("sequence", topics.ReasonInvalidSequence)
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i < 1 {
			return bad("sequence", topics.ReasonInvalidSequence)
		}
		e.Sequence = i
	}
	e.Time = r.Timestamp.UTC()
	if v := env["timestamp"]; v != nil {
		s, isStr := v.(string)
		if !isStr {
			return bad("timestamp", topics.ReasonInvalidTimestamp)
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return bad("timestamp", topics.ReasonInvalidTimestamp)
		}
		e.Time = ts.UTC()
	}
	if v := env["data"]; v != nil {
		data, isObj := v.(map[string]any)
		if !isObj {
			return bad("data", topics.ReasonInvalidData)
		}
		if field, ok := stringFields(data, map[string]*string{
			"userId": &e.Data.UserID, "action": &e.Data.Action, "resource": &e.Data.Resource,
		}); !ok {
			return bad("data."+field, topics.ReasonInvalidData)
		}
	}
	if v := env["metadata"]; v != nil {
		meta, isObj := v.(map[string]any)
		if !isObj {
			return bad("metadata", topics.ReasonInvalidMetadata)
		}
		if field, ok := stringFields(meta, map[string]*string{
			"correlationId": &e.Metadata.CorrelationID, "causationId": &e.Metadata.CausationID,
			"traceId": &e.Metadata.TraceID, "userId": &e.Metadata.UserID,
		}); !ok {
			return bad("metadata."+field, topics.ReasonInvalidMetadata)
		}
	}
	if version >= 2 && e.Data.UserID == "" {
		return bad("data.userId", topics.ReasonInvalidData)
	}
	if e.Data.UserID == "" {
		e.Data.UserID = e.AggregateID
	}
	e.Version = topics.CurrentVersion
	if !validTraceParentRef(e.TraceParent) {
		e.TraceParent = ""
	}
	return e, nil
}

// stringFields copies obj's fields named in dst, which must be strings or
// null. A map has lost the document order, so when several fields are bad the
// one reported is "*" (any field matches it).
func stringFields(obj map[string]any, dst map[string]*string) (string, bool) {
	var badFields []string
	for name, p := range dst {
		switch v := obj[name].(type) {
		case nil:
		case string:
			*p = v
		default:
			badFields = append(badFields, name)
		}
	}
	if len(badFields) == 0 {
		return "", true
	}
	if len(badFields) == 1 {
		return badFields[0], false
	}
	return "*", false
}

var traceParentLiteral = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$`)

func validTraceParentRef(s string) bool {
	return traceParentLiteral.MatchString(s) &&
		!strings.HasPrefix(s, "ff") &&
		(len(s) == 55 || !strings.HasPrefix(s, "00")) &&
		s[3:35] != strings.Repeat("0", 32) && s[36:52] != strings.Repeat("0", 16)
}

// sameField reports whether field matches want, where want "data.*" matches
// any field of data.
func sameField(field, want string) bool {
	if prefix, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(field, prefix)
	}
	return field == want
}
