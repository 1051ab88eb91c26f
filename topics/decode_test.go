package topics_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/streamworker/streamworker/topics"
)

var recordTime = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

const fullJSON = `{
  "id": "evt-8f14e45f",
  "type": "user.activity",
  "version": 1,
  "source": "web",
  "aggregateId": "u-42",
  "sequence": 17,
  "timestamp": "2026-11-22T10:00:00.123Z",
  "data": {"userId": "u-42", "action": "click", "resource": "/home", "extra": [1, {"a": "}"}]},
  "metadata": {"correlationId": "corr-1", "causationId": "cause-1", "traceId": "trace-1", "userId": "admin"},
  "unknown": {"nested": ["x", "y"]}
}`

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func fullEvent() topics.Event {
	return topics.Event{
		ID:          "evt-8f14e45f",
		Type:        topics.TypeUserActivity,
		Version:     topics.CurrentVersion,
		Source:      "web",
		AggregateID: "u-42",
		Sequence:    17,
		Time:        time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC),
		Data:        topics.Activity{UserID: "u-42", Action: "click", Resource: "/home"},
		Metadata:    topics.Metadata{CorrelationID: "corr-1", CausationID: "cause-1", TraceID: "trace-1", UserID: "admin"},
		TraceParent: traceParent,
		Format:      topics.FormatJSON,
	}
}

func jsonRecord(value string) *topics.Record {
	return &topics.Record{Key: []byte("u-42"), Value: []byte(value), Timestamp: recordTime}
}

func decode(t *testing.T, r *topics.Record) topics.Event {
	t.Helper()
	var d topics.Decoder
	e, err := d.Decode(r)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return e
}

func TestDecodeJSON(t *testing.T) {
	r := jsonRecord(fullJSON)
	r.Headers = []topics.Header{{Key: "traceparent", Value: []byte(traceParent)}}
	got := decode(t, r)
	if want := fullEvent(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// withField returns fullJSON's envelope with field set to raw JSON value, or
// removed when raw is "".
func withField(t *testing.T, field, raw string) string {
	t.Helper()
	fields := map[string]string{
		"id":          `"evt-1"`,
		"type":        `"user.activity"`,
		"version":     `1`,
		"aggregateId": `"u-42"`,
		"sequence":    `17`,
		"timestamp":   `"2026-11-22T10:00:00.123Z"`,
		"data":        `{"userId":"u-42","action":"click","resource":"/home"}`,
		"metadata":    `{"correlationId":"c-1"}`,
	}
	if _, ok := fields[field]; !ok && !strings.Contains(field, ".") {
		fields[field] = ""
	}
	var b strings.Builder
	b.WriteString("{")
	first := true
	for _, k := range []string{"id", "type", "version", "source", "aggregateId", "sequence", "timestamp", "data", "metadata"} {
		v := fields[k]
		if k == field {
			v = raw
		}
		if v == "" {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString(`"` + k + `":` + v)
	}
	b.WriteString("}")
	return b.String()
}

func TestDecodeValidation(t *testing.T) {
	data := func(inner string) string { return `{"id":"e","type":"t","data":{` + inner + `}}` }
	meta := func(inner string) string { return `{"id":"e","type":"t","metadata":{` + inner + `}}` }
	tests := []struct {
		name   string
		value  string
		noKey  bool
		field  string
		reason topics.Reason
	}{
		{"malformed", `{"id":`, false, "value", topics.ReasonMalformed},
		{"trailing garbage", `{"id":"e","type":"t"} x`, false, "value", topics.ReasonMalformed},
		{"empty value", ``, false, "value", topics.ReasonMalformed},
		{"not UTF-8", "{\"id\":\"e\xff\",\"type\":\"t\"}", false, "value", topics.ReasonMalformed},
		{"array", `[1,2]`, false, "value", topics.ReasonMalformed},
		{"string", `"hello"`, false, "value", topics.ReasonMalformed},
		{"null", `null`, false, "value", topics.ReasonMalformed},
		{"id missing", withField(t, "id", ""), false, "id", topics.ReasonInvalidID},
		{"id empty", withField(t, "id", `""`), false, "id", topics.ReasonInvalidID},
		{"id null", withField(t, "id", `null`), false, "id", topics.ReasonInvalidID},
		{"id number", withField(t, "id", `42`), false, "id", topics.ReasonInvalidID},
		{"id object", withField(t, "id", `{"a":"b"}`), false, "id", topics.ReasonInvalidID},
		{"type missing", withField(t, "type", ""), false, "type", topics.ReasonInvalidType},
		{"type number", withField(t, "type", `1`), false, "type", topics.ReasonInvalidType},
		{"type empty", withField(t, "type", `""`), false, "type", topics.ReasonInvalidType},
		{"CloudEvents structured mode", `{"specversion":"1.0","id":"e","type":"user.activity","source":"/s","time":"2020-01-01T00:00:00Z","data":{}}`,
			false, "specversion", topics.ReasonInvalidSpecVersion},
		{"specversion first", `{"specversion":"1.0","id":7}`, false, "specversion", topics.ReasonInvalidSpecVersion},
		{"version string", withField(t, "version", `"1"`), false, "version", topics.ReasonInvalidVersion},
		{"version fraction", withField(t, "version", `1.5`), false, "version", topics.ReasonInvalidVersion},
		{"version 1.0", withField(t, "version", `1.0`), false, "version", topics.ReasonInvalidVersion},
		{"version exponent", withField(t, "version", `1e0`), false, "version", topics.ReasonInvalidVersion},
		{"version bool", withField(t, "version", `true`), false, "version", topics.ReasonInvalidVersion},
		{"version 0", withField(t, "version", `0`), false, "version", topics.ReasonUnknownVersion},
		{"version 3", withField(t, "version", `3`), false, "version", topics.ReasonUnknownVersion},
		{"version 99", withField(t, "version", `99`), false, "version", topics.ReasonUnknownVersion},
		{"version negative", withField(t, "version", `-1`), false, "version", topics.ReasonUnknownVersion},
		{"version huge", withField(t, "version", `123456789012345678901234567890`), false, "version", topics.ReasonUnknownVersion},
		{"source number", withField(t, "source", `7`), false, "source", topics.ReasonInvalidSource},
		{"aggregateId number", withField(t, "aggregateId", `42`), false, "aggregateId", topics.ReasonInvalidAggregateID},
		{"no aggregate no key", withField(t, "aggregateId", ""), true, "aggregateId", topics.ReasonMissingAggregateID},
		{"empty aggregate no key", withField(t, "aggregateId", `""`), true, "aggregateId", topics.ReasonMissingAggregateID},
		{"sequence 0", withField(t, "sequence", `0`), false, "sequence", topics.ReasonInvalidSequence},
		{"sequence -0", withField(t, "sequence", `-0`), false, "sequence", topics.ReasonInvalidSequence},
		{"sequence negative", withField(t, "sequence", `-5`), false, "sequence", topics.ReasonInvalidSequence},
		{"sequence fraction", withField(t, "sequence", `17.5`), false, "sequence", topics.ReasonInvalidSequence},
		{"sequence 17.0", withField(t, "sequence", `17.0`), false, "sequence", topics.ReasonInvalidSequence},
		{"sequence string", withField(t, "sequence", `"17"`), false, "sequence", topics.ReasonInvalidSequence},
		{"sequence 1e400", withField(t, "sequence", `1e400`), false, "sequence", topics.ReasonInvalidSequence},
		{"sequence overflow", withField(t, "sequence", `9223372036854775808`), false, "sequence", topics.ReasonInvalidSequence},
		{"timestamp number", withField(t, "timestamp", `1732269600`), false, "timestamp", topics.ReasonInvalidTimestamp},
		{"timestamp not RFC 3339", withField(t, "timestamp", `"22/11/2026 10:00"`), false, "timestamp", topics.ReasonInvalidTimestamp},
		{"timestamp no zone", withField(t, "timestamp", `"2026-11-22T10:00:00"`), false, "timestamp", topics.ReasonInvalidTimestamp},
		{"timestamp empty", withField(t, "timestamp", `""`), false, "timestamp", topics.ReasonInvalidTimestamp},
		{"timestamp in 9999", withField(t, "timestamp", `"9999-12-31T23:59:59Z"`), false, "timestamp", topics.ReasonInvalidTimestamp},
		{"data string", withField(t, "data", `"click"`), false, "data", topics.ReasonInvalidData},
		{"data array", withField(t, "data", `[]`), false, "data", topics.ReasonInvalidData},
		{"data.userId number", data(`"userId":42`), false, "data.userId", topics.ReasonInvalidData},
		{"data.action number", data(`"action":1`), false, "data.action", topics.ReasonInvalidData},
		{"data.resource object", data(`"resource":{}`), false, "data.resource", topics.ReasonInvalidData},
		{"metadata string", withField(t, "metadata", `"x"`), false, "metadata", topics.ReasonInvalidMetadata},
		{"metadata.correlationId number", meta(`"correlationId":1`), false, "metadata.correlationId", topics.ReasonInvalidMetadata},
		{"metadata.traceId bool", meta(`"traceId":false`), false, "metadata.traceId", topics.ReasonInvalidMetadata},
		{"v2 without data.userId", `{"id":"e","type":"t","version":2,"data":{"action":"a"}}`, false, "data.userId", topics.ReasonInvalidData},
		{"last duplicate wins", `{"id":"e","type":"t","sequence":3,"sequence":0}`, false, "sequence", topics.ReasonInvalidSequence},
		{"version checked first", `{"id":1,"version":7}`, false, "version", topics.ReasonUnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := jsonRecord(tt.value)
			if tt.noKey {
				r.Key = nil
			}
			assertInvalid(t, r, tt.field, tt.reason)
		})
	}
}

func assertInvalid(t *testing.T, r *topics.Record, field string, reason topics.Reason) {
	t.Helper()
	d := topics.Decoder{MaxBytes: 4096}
	e, err := d.Decode(r)
	var verr *topics.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Decode(%q) = %+v, %v; want a *ValidationError", r.Value, e, err)
	}
	if verr.Field != field || verr.Reason != reason {
		t.Fatalf("Decode(%q) error field %q reason %q, want %q %q (%v)", r.Value, verr.Field, verr.Reason, field, reason, err)
	}
	if msg := err.Error(); !strings.Contains(msg, field) || !strings.Contains(msg, string(reason)) {
		t.Fatalf("Error() = %q does not name the field and the reason", msg)
	}
	if !reflect.DeepEqual(e, topics.Event{}) {
		t.Fatalf("Decode returned a non-zero event with an error: %+v", e)
	}
}

func TestDecodeTooLarge(t *testing.T) {
	d := topics.Decoder{MaxBytes: 16}
	// Not even JSON: the size is checked before parsing.
	_, err := d.Decode(&topics.Record{Value: []byte(strings.Repeat("x", 17))})
	var verr *topics.ValidationError
	if !errors.As(err, &verr) || verr.Reason != topics.ReasonTooLarge || verr.Field != "value" {
		t.Fatalf("got %v, want too_large", err)
	}
	if _, err := d.Decode(jsonRecord(`{"id":"e","type":"t"}`)); err == nil {
		t.Fatalf("a 21-byte value passed a 16-byte limit")
	}
	// The zero Decoder's limit is 1 MiB.
	var zero topics.Decoder
	big := `{"id":"e","type":"t","pad":"` + strings.Repeat("a", topics.DefaultMaxBytes) + `"}`
	if _, err := zero.Decode(jsonRecord(big)); !errors.As(err, &verr) || verr.Reason != topics.ReasonTooLarge {
		t.Fatalf("a value over 1 MiB: got %v, want too_large", err)
	}
	fits := `{"id":"e","type":"t","pad":"` + strings.Repeat("a", topics.DefaultMaxBytes-40) + `"}`
	if _, err := zero.Decode(jsonRecord(fits)); err != nil {
		t.Fatalf("a value under 1 MiB: %v", err)
	}
}

func TestDecodeRules(t *testing.T) {
	tests := []struct {
		name  string
		rec   *topics.Record
		check func(t *testing.T, e topics.Event)
	}{
		{"aggregate from the key", jsonRecord(withField(t, "aggregateId", "")), func(t *testing.T, e topics.Event) {
			if e.AggregateID != "u-42" || e.KeyMismatch {
				t.Fatalf("AggregateID %q KeyMismatch %v", e.AggregateID, e.KeyMismatch)
			}
		}},
		{"aggregateId null falls back to the key", jsonRecord(withField(t, "aggregateId", "null")), func(t *testing.T, e topics.Event) {
			if e.AggregateID != "u-42" {
				t.Fatalf("AggregateID %q", e.AggregateID)
			}
		}},
		{"aggregateId wins over the key", &topics.Record{Key: []byte("u-other"), Value: []byte(withField(t, "id", `"e"`))}, func(t *testing.T, e topics.Event) {
			if e.AggregateID != "u-42" || !e.KeyMismatch {
				t.Fatalf("AggregateID %q KeyMismatch %v", e.AggregateID, e.KeyMismatch)
			}
		}},
		{"aggregateId without a key", &topics.Record{Value: []byte(withField(t, "id", `"e"`))}, func(t *testing.T, e topics.Event) {
			if e.AggregateID != "u-42" || e.KeyMismatch {
				t.Fatalf("AggregateID %q KeyMismatch %v", e.AggregateID, e.KeyMismatch)
			}
		}},
		{"timestamp absent is the record time", jsonRecord(withField(t, "timestamp", "")), func(t *testing.T, e topics.Event) {
			if !e.Time.Equal(recordTime) || e.Time.Location() != time.UTC {
				t.Fatalf("Time %v", e.Time)
			}
		}},
		{"timestamp with an offset is stored in UTC", jsonRecord(withField(t, "timestamp", `"2026-11-22T12:00:00.5+02:00"`)), func(t *testing.T, e topics.Event) {
			if want := time.Date(2026, 11, 22, 10, 0, 0, 5e8, time.UTC); e.Time != want {
				t.Fatalf("Time %v, want %v", e.Time, want)
			}
		}},
		{"sequence absent is 0", jsonRecord(withField(t, "sequence", "")), func(t *testing.T, e topics.Event) {
			if e.Sequence != 0 {
				t.Fatalf("Sequence %d", e.Sequence)
			}
		}},
		{"sequence max", jsonRecord(withField(t, "sequence", "9007199254740991")), func(t *testing.T, e topics.Event) {
			if e.Sequence != topics.MaxSequence {
				t.Fatalf("Sequence %d", e.Sequence)
			}
		}},
		{"version absent is 1, upcast", jsonRecord(`{"id":"e","type":"t","data":{"action":"a"}}`), func(t *testing.T, e topics.Event) {
			if e.Version != topics.CurrentVersion || e.Data.UserID != "u-42" {
				t.Fatalf("Version %d Data.UserID %q", e.Version, e.Data.UserID)
			}
		}},
		{"version 2 keeps its userId", jsonRecord(`{"id":"e","type":"t","version":2,"data":{"userId":"u-9"}}`), func(t *testing.T, e topics.Event) {
			if e.Version != 2 || e.Data.UserID != "u-9" {
				t.Fatalf("Version %d Data.UserID %q", e.Version, e.Data.UserID)
			}
		}},
		{"null optional fields are absent", jsonRecord(`{"id":"e","type":"t","version":null,"source":null,"sequence":null,"timestamp":null,"data":null,"metadata":null}`), func(t *testing.T, e topics.Event) {
			want := topics.Event{ID: "e", Type: "t", Version: topics.CurrentVersion, AggregateID: "u-42", Time: recordTime, Data: topics.Activity{UserID: "u-42"}}
			if !reflect.DeepEqual(e, want) {
				t.Fatalf("got %+v", e)
			}
		}},
		{"null inner fields are absent", jsonRecord(`{"id":"e","type":"t","data":{"action":"a","action":null},"metadata":{"traceId":null}}`), func(t *testing.T, e topics.Event) {
			if e.Data.Action != "" || e.Metadata.TraceID != "" {
				t.Fatalf("got %+v", e)
			}
		}},
		{"escapes are decoded", jsonRecord(`{"\u0069d":"e\"1\u00e9\n","type":"t","data":{"action":"cl\u0069ck","resource":"\/home\ud83d\ude00"}}`), func(t *testing.T, e topics.Event) {
			if e.ID != "e\"1é\n" || e.Data.Action != "click" || e.Data.Resource != "/home😀" {
				t.Fatalf("got %+v", e)
			}
		}},
		{"escaped timestamp", jsonRecord(`{"id":"e","type":"t","timestamp":"2026-11-22T10:00:00\u002e123Z"}`), func(t *testing.T, e topics.Event) {
			if e.Time != time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC) {
				t.Fatalf("Time %v", e.Time)
			}
		}},
		{"keys are case-sensitive", jsonRecord(`{"id":"e","ID":5,"type":"t","Sequence":"x"}`), func(t *testing.T, e topics.Event) {
			if e.ID != "e" || e.Sequence != 0 {
				t.Fatalf("got %+v", e)
			}
		}},
		{"unknown type is not an error", jsonRecord(`{"id":"e","type":"user.deleted"}`), func(t *testing.T, e topics.Event) {
			if e.Type != "user.deleted" {
				t.Fatalf("Type %q", e.Type)
			}
		}},
		{"whitespace around the envelope", jsonRecord(" \n\t{ \"id\" : \"e\" , \"type\" : \"t\" } \r\n"), func(t *testing.T, e topics.Event) {
			if e.ID != "e" || e.Type != "t" {
				t.Fatalf("got %+v", e)
			}
		}},
		{"invalid traceparent is ignored", &topics.Record{Key: []byte("k"), Value: []byte(`{"id":"e","type":"t"}`), Headers: []topics.Header{{Key: "traceparent", Value: []byte("00-zz-00-01")}}}, func(t *testing.T, e topics.Event) {
			if e.TraceParent != "" {
				t.Fatalf("TraceParent %q", e.TraceParent)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, decode(t, tt.rec))
		})
	}
}

// ceRecord is fullJSON in CloudEvents binary mode.
func ceRecord() *topics.Record {
	h := func(k, v string) topics.Header { return topics.Header{Key: k, Value: []byte(v)} }
	return &topics.Record{
		Key:   []byte("u-42"),
		Value: []byte(`{"userId": "u-42", "action": "click", "resource": "/home"}`),
		Headers: []topics.Header{
			h("ce_specversion", "1.0"),
			h("ce_id", "evt-8f14e45f"),
			h("ce_type", "user.activity"),
			h("ce_source", "web"),
			h("ce_time", "2026-11-22T10:00:00.123Z"),
			h("ce_aggregateid", "u-42"),
			h("ce_sequence", "17"),
			h("ce_schemaversion", "1"),
			h("ce_correlationid", "corr-1"),
			h("ce_causationid", "cause-1"),
			h("ce_traceid", "trace-1"),
			h("ce_userid", "admin"),
			h("content-type", "application/json"),
			h("traceparent", traceParent),
		},
		Timestamp: recordTime,
	}
}

func TestDecodeCloudEventsEqualsJSON(t *testing.T) {
	ce := decode(t, ceRecord())
	if ce.Format != topics.FormatCloudEvents {
		t.Fatalf("Format %v, want FormatCloudEvents", ce.Format)
	}
	want := fullEvent()
	want.Format = topics.FormatCloudEvents
	if !reflect.DeepEqual(ce, want) {
		t.Fatalf("CloudEvents %+v\nJSON        %+v", ce, want)
	}
}

func TestDecodeCloudEventsRules(t *testing.T) {
	t.Run("minimal", func(t *testing.T) {
		r := &topics.Record{Key: []byte("u-1"), Timestamp: recordTime, Headers: []topics.Header{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte("e")},
			{Key: "ce_type", Value: []byte("t")},
		}}
		e := decode(t, r)
		want := topics.Event{ID: "e", Type: "t", Version: topics.CurrentVersion, AggregateID: "u-1", Time: recordTime,
			Data: topics.Activity{UserID: "u-1"}, Format: topics.FormatCloudEvents}
		if !reflect.DeepEqual(e, want) {
			t.Fatalf("got  %+v\nwant %+v", e, want)
		}
	})
	t.Run("key mismatch", func(t *testing.T) {
		r := ceRecord()
		r.Key = []byte("u-other")
		if e := decode(t, r); e.AggregateID != "u-42" || !e.KeyMismatch {
			t.Fatalf("AggregateID %q KeyMismatch %v", e.AggregateID, e.KeyMismatch)
		}
	})
	t.Run("null data", func(t *testing.T) {
		r := ceRecord()
		r.Value = []byte(" null ")
		if e := decode(t, r); e.Data != (topics.Activity{UserID: "u-42"}) {
			t.Fatalf("Data %+v", e.Data)
		}
	})
}

func TestDecodeCloudEventsValidation(t *testing.T) {
	set := func(k, v string) func(r *topics.Record) {
		return func(r *topics.Record) {
			for i := range r.Headers {
				if r.Headers[i].Key == k {
					r.Headers[i].Value = []byte(v)
					return
				}
			}
			r.Headers = append(r.Headers, topics.Header{Key: k, Value: []byte(v)})
		}
	}
	del := func(k string) func(r *topics.Record) {
		return func(r *topics.Record) {
			r.Headers = slices.DeleteFunc(r.Headers, func(h topics.Header) bool { return h.Key == k })
		}
	}
	value := func(v string) func(r *topics.Record) { return func(r *topics.Record) { r.Value = []byte(v) } }
	tests := []struct {
		name   string
		mod    []func(*topics.Record)
		field  string
		reason topics.Reason
	}{
		{"specversion 0.3", fn(set("ce_specversion", "0.3")), "ce_specversion", topics.ReasonInvalidSpecVersion},
		{"specversion empty", fn(set("ce_specversion", "")), "ce_specversion", topics.ReasonInvalidSpecVersion},
		{"schemaversion not an integer", fn(set("ce_schemaversion", "1.0")), "ce_schemaversion", topics.ReasonInvalidVersion},
		{"schemaversion empty", fn(set("ce_schemaversion", "")), "ce_schemaversion", topics.ReasonInvalidVersion},
		{"schemaversion 3", fn(set("ce_schemaversion", "3")), "ce_schemaversion", topics.ReasonUnknownVersion},
		{"schemaversion 0", fn(set("ce_schemaversion", "0")), "ce_schemaversion", topics.ReasonUnknownVersion},
		{"id missing", fn(del("ce_id")), "ce_id", topics.ReasonInvalidID},
		{"id empty", fn(set("ce_id", "")), "ce_id", topics.ReasonInvalidID},
		{"id not UTF-8", fn(set("ce_id", "e\xff")), "ce_id", topics.ReasonInvalidID},
		{"type missing", fn(del("ce_type")), "ce_type", topics.ReasonInvalidType},
		{"source not UTF-8", fn(set("ce_source", "\xc3")), "ce_source", topics.ReasonInvalidSource},
		{"no aggregate no key", fn(del("ce_aggregateid"), func(r *topics.Record) { r.Key = nil }), "ce_aggregateid", topics.ReasonMissingAggregateID},
		{"key not UTF-8", fn(del("ce_aggregateid"), func(r *topics.Record) { r.Key = []byte{0xff} }), "key", topics.ReasonInvalidAggregateID},
		{"sequence 0", fn(set("ce_sequence", "0")), "ce_sequence", topics.ReasonInvalidSequence},
		{"sequence negative", fn(set("ce_sequence", "-3")), "ce_sequence", topics.ReasonInvalidSequence},
		{"sequence not decimal", fn(set("ce_sequence", "0x11")), "ce_sequence", topics.ReasonInvalidSequence},
		{"sequence plus", fn(set("ce_sequence", "+17")), "ce_sequence", topics.ReasonInvalidSequence},
		{"sequence empty", fn(set("ce_sequence", "")), "ce_sequence", topics.ReasonInvalidSequence},
		{"time invalid", fn(set("ce_time", "yesterday")), "ce_time", topics.ReasonInvalidTimestamp},
		{"time a year ahead of the record", fn(set("ce_time", "2027-11-22T10:00:00Z")), "ce_time", topics.ReasonInvalidTimestamp},
		{"data malformed", fn(value(`{"action":`)), "value", topics.ReasonMalformed},
		{"data array", fn(value(`["click"]`)), "data", topics.ReasonInvalidData},
		{"data.action number", fn(value(`{"action":5}`)), "data.action", topics.ReasonInvalidData},
		{"correlationid not UTF-8", fn(set("ce_correlationid", "\xff")), "ce_correlationid", topics.ReasonInvalidMetadata},
		{"v2 without userId", fn(set("ce_schemaversion", "2"), value(`{"action":"a"}`)), "data.userId", topics.ReasonInvalidData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ceRecord()
			for _, m := range tt.mod {
				m(r)
			}
			assertInvalid(t, r, tt.field, tt.reason)
		})
	}
}

func fn(fs ...func(*topics.Record)) []func(*topics.Record) { return fs }

func TestTraceParent(t *testing.T) {
	tests := []struct {
		value string
		valid bool
	}{
		{traceParent, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", false}, // only the exact 55-byte form is copied
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + strings.Repeat("a", 1<<20), false}, // issue 12, finding 3: a 1 MB tail
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false},
		{"", false},
	}
	for _, tt := range tests {
		r := jsonRecord(`{"id":"e","type":"t"}`)
		r.Headers = []topics.Header{{Key: "traceparent", Value: []byte(tt.value)}}
		got := decode(t, r).TraceParent
		if (got != "") != tt.valid || (tt.valid && got != tt.value) {
			t.Errorf("traceparent %q: got %q, valid %v", tt.value, got, tt.valid)
		}
	}
}

func TestUpcast(t *testing.T) {
	e := topics.Event{ID: "e", Type: topics.TypeUserActivity, Version: 1, AggregateID: "u-7", Data: topics.Activity{Action: "a"}}
	if err := topics.Upcast(&e); err != nil {
		t.Fatal(err)
	}
	if e.Version != topics.CurrentVersion || e.Data.UserID != "u-7" {
		t.Fatalf("after Upcast: Version %d, Data.UserID %q", e.Version, e.Data.UserID)
	}
	// An explicit data.userId is kept.
	e = topics.Event{Version: 1, AggregateID: "u-7", Data: topics.Activity{UserID: "u-8"}}
	if err := topics.Upcast(&e); err != nil || e.Data.UserID != "u-8" {
		t.Fatalf("Upcast: %v, Data.UserID %q", err, e.Data.UserID)
	}
	for _, v := range []int{0, -1, topics.CurrentVersion + 1, 99} {
		e := topics.Event{Version: v}
		var verr *topics.ValidationError
		if err := topics.Upcast(&e); !errors.As(err, &verr) || verr.Reason != topics.ReasonUnknownVersion {
			t.Errorf("Upcast version %d: %v, want unknown_version", v, err)
		}
	}
	// The chain covers every known version, in order.
	chain := topics.Upcasters()
	if len(chain) != topics.CurrentVersion-topics.MinVersion {
		t.Fatalf("%d upcasters for versions %d..%d", len(chain), topics.MinVersion, topics.CurrentVersion)
	}
	for i, u := range chain {
		if u.From != topics.MinVersion+i || u.Apply == nil {
			t.Fatalf("upcaster %d: From %d", i, u.From)
		}
	}
}

func TestReasonsAreDistinctSnakeCase(t *testing.T) {
	seen := map[topics.Reason]bool{}
	for _, r := range topics.Reasons() {
		if seen[r] {
			t.Fatalf("duplicate reason %q", r)
		}
		seen[r] = true
		for _, c := range string(r) {
			if !(c >= 'a' && c <= 'z' || c == '_') {
				t.Fatalf("reason %q is not snake_case", r)
			}
		}
	}
}

// TestDecodeSyntax checks the syntax rules on the fuzz seeds and on deep
// nesting, where encoding/json stops at 10000 open arrays and objects.
func TestDecodeSyntax(t *testing.T) {
	nest := func(depth int, open, close, inner string) string {
		return strings.Repeat(open, depth) + inner + strings.Repeat(close, depth)
	}
	deep := []string{
		nest(9999, "[", "]", "1"),          // 10000 with the envelope
		nest(10000, "[", "]", "1"),         // 10001
		nest(9999, `{"a":`, "}", `[]`),     // 10001 with the envelope and the array
		nest(9998, `{"a":`, "}", `{}`),     // 10000
		nest(5000, `[{"a":`, "}]", "null"), // 10001
		nest(4999, `[{"a":`, "}]", "[]"),   // 10000
		nest(200, `[{"a":`, "}]", "1"),     // deeper than a word of the scanner's stack
		nest(100, `[`, "]", nest(100, `{"a":`, "}", "1")),
		nest(100, `[`, "]", nest(100, `{"a":`, "]", "1")), // closers swapped past 64 levels
		nest(150, `[{"a":`, "]}", "1"),
		nest(150, `[{"a":`, "}]", "1") + "]",
		nest(100, "[", "]", "1,2"),
		nest(100, `{"a":`, "}", `{"b":1,"c":2}`),
		nest(100, "[", "}", "1"),
		nest(100, "[", "]", `{"a":1},[1,2]`), // an array where an object was
	}
	var d topics.Decoder
	for _, s := range syntaxSeeds {
		checkSyntax(t, &d, []byte(s))
	}
	valid := 0
	for _, inner := range deep {
		v := []byte(`{"id":"e","type":"t","x":` + inner + `}`)
		if json.Valid(v) {
			valid++
		}
		checkSyntax(t, &d, v)
		checkSyntax(t, &d, []byte(inner))
	}
	if valid == 0 || valid == len(deep) {
		t.Fatalf("%d of %d deep cases are valid JSON: the table tests one side only", valid, len(deep))
	}
}

// sameString reports whether a and b share their bytes.
func sameString(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func TestDecodeSharesRecurringStrings(t *testing.T) {
	value := func(id string) string {
		return `{"id":"` + id + `","type":"user.signup","source":"web","aggregateId":"u-42",` +
			`"data":{"action":"click","resource":"/home"},"metadata":{"userId":"u-42","correlationId":"c-1"}}`
	}
	var d topics.Decoder
	r1, r2 := jsonRecord(value("e-1")), jsonRecord(value("e-2"))
	a, err := d.Decode(r1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Decode(r2)
	if err != nil {
		t.Fatal(err)
	}
	ceRec := ceRecord()
	ce, err := d.Decode(ceRec)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name    string
		x, y, z string
	}{
		{"Type", a.Type, b.Type, b.Type},
		{"Source", a.Source, b.Source, ce.Source},
		{"AggregateID", a.AggregateID, b.AggregateID, ce.AggregateID},
		{"Data.UserID", a.Data.UserID, b.Data.UserID, ce.Data.UserID},
		{"Data.Action", a.Data.Action, b.Data.Action, ce.Data.Action},
		{"Data.Resource", a.Data.Resource, b.Data.Resource, ce.Data.Resource},
		{"Metadata.UserID", a.Metadata.UserID, b.Metadata.UserID, a.AggregateID},
	} {
		if !sameString(f.x, f.y) || !sameString(f.y, f.z) {
			t.Errorf("%s: %q, %q and %q do not share one string", f.name, f.x, f.y, f.z)
		}
	}
	// The strings are the Decoder's, not views of the records: overwriting
	// the records changes no event.
	want := []topics.Event{a, b, ce}
	for _, r := range []*topics.Record{r1, r2, ceRec} {
		clear(r.Value)
		clear(r.Key)
		for _, h := range r.Headers {
			clear(h.Value)
		}
	}
	wantA := topics.Event{ID: "e-1", Type: "user.signup", Version: topics.CurrentVersion, Source: "web", AggregateID: "u-42",
		Time: recordTime, Data: topics.Activity{UserID: "u-42", Action: "click", Resource: "/home"},
		Metadata: topics.Metadata{UserID: "u-42", CorrelationID: "c-1"}}
	wantCE := fullEvent()
	wantCE.Format = topics.FormatCloudEvents
	if got := want[0]; !reflect.DeepEqual(got, wantA) {
		t.Errorf("JSON event after its record changed:\n got %+v\nwant %+v", got, wantA)
	}
	if got := want[2]; !reflect.DeepEqual(got, wantCE) {
		t.Errorf("CloudEvents event after its record changed:\n got %+v\nwant %+v", got, wantCE)
	}
}

// TestDecodeAllocs checks that, once a Decoder has seen them, recurring
// values cost no allocation: what is left are the strings unique to the
// event.
func TestDecodeAllocs(t *testing.T) {
	jsonRec := &topics.Record{Key: []byte("u-42"), Value: []byte(benchJSON), Headers: []topics.Header{
		{Key: "traceparent", Value: []byte(traceParent)},
	}}
	for _, tt := range []struct {
		name string
		rec  *topics.Record
		max  float64
	}{
		{"JSON", jsonRec, 3},           // id, metadata.correlationId, traceparent
		{"CloudEvents", ceRecord(), 5}, // ce_id, ce_correlationid, ce_causationid, ce_traceid, traceparent
		{"invalid", jsonRecord(`{"id":"e","type":"t","sequence":0}`), 3}, // the error
	} {
		var d topics.Decoder
		d.Decode(tt.rec)
		if n := testing.AllocsPerRun(100, func() { d.Decode(tt.rec) }); n > tt.max {
			t.Errorf("%s: %v allocations per Decode, want at most %v", tt.name, n, tt.max)
		}
	}
}

// TestDecodeTablesBounded feeds one Decoder many distinct values in every
// field that goes through a table: its tables must stay bounded, and what
// they hold must change no decoded value.
func TestDecodeTablesBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 100,000 records")
	}
	const n = 100_000
	record := func(i int) (*topics.Record, topics.Event) {
		s := strconv.Itoa(i)
		r := jsonRecord(`{"id":"e-` + s + `","type":"type-` + s + `","source":"source-` + s + `","aggregateId":"u-` + s +
			`","data":{"action":"action-` + s + `","resource":"/resource/` + s + `"},"metadata":{"userId":"m-` + s + `"}}`)
		r.Key = []byte("key")
		e := topics.Event{ID: "e-" + s, Type: "type-" + s, Version: topics.CurrentVersion, Source: "source-" + s,
			AggregateID: "u-" + s, KeyMismatch: true, Time: recordTime,
			Data:     topics.Activity{UserID: "u-" + s, Action: "action-" + s, Resource: "/resource/" + s},
			Metadata: topics.Metadata{UserID: "m-" + s}}
		return r, e
	}
	var d topics.Decoder
	r, _ := record(-1)
	first, err := d.Decode(r)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		r, want := record(i)
		if got, err := d.Decode(r); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d: got %+v, %v\nwant %+v", i, got, err, want)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Tables that kept every value would hold 5 strings per record here,
	// well over 10 MB.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2<<20 {
		t.Errorf("the heap grew by %d bytes over %d distinct records", grown, n)
	}
	// A full table keeps what it holds: the first values are still shared.
	again, err := d.Decode(r)
	if err != nil {
		t.Fatal(err)
	}
	if !sameString(again.Type, first.Type) || !sameString(again.Source, first.Source) ||
		!sameString(again.Data.Action, first.Data.Action) || !sameString(again.Data.Resource, first.Data.Resource) {
		t.Errorf("a full table let go of the values it held first")
	}
	// And a new value decodes the same as with a fresh Decoder.
	r, want := record(n)
	var fresh topics.Decoder
	if got, err := fresh.Decode(r); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("fresh Decoder: %+v, %v", got, err)
	}
	if got, err := d.Decode(r); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("full Decoder: %+v, %v\nwant %+v", got, err, want)
	}
	runtime.KeepAlive(&d)
}

// TestDecodeTimeAhead: an event time up to Limits.MaxTimeAhead after the
// record's timestamp is accepted, a later one is not, and a record without
// a timestamp is not checked.
func TestDecodeTimeAhead(t *testing.T) {
	lim := topics.DefaultLimits()
	lim.MaxTimeAhead = time.Hour
	d, err := topics.NewDecoder(lim)
	if err != nil {
		t.Fatal(err)
	}
	at := func(ts string, rec time.Time) *topics.Record {
		r := jsonRecord(withField(t, "timestamp", `"`+ts+`"`))
		r.Timestamp = rec
		return r
	}
	rec := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ts   string
		rec  time.Time
		want bool
	}{
		{"2026-11-22T11:00:00Z", rec, true},
		{"2026-11-22T11:00:00.001Z", rec, false},
		{"2020-01-01T00:00:00Z", rec, true},
		{"9999-12-31T23:59:59Z", time.Time{}, true},
		{"9999-12-31T23:59:59Z", time.UnixMilli(-1), true},
	} {
		_, err := d.Decode(at(tt.ts, tt.rec))
		var verr *topics.ValidationError
		switch {
		case tt.want && err != nil:
			t.Errorf("%s with record time %v: %v", tt.ts, tt.rec, err)
		case !tt.want && (!errors.As(err, &verr) || verr.Reason != topics.ReasonInvalidTimestamp):
			t.Errorf("%s with record time %v: got %v, want invalid_timestamp", tt.ts, tt.rec, err)
		}
	}
	lim.MaxTimeAhead = 0
	if _, err := topics.NewDecoder(lim); err == nil || !strings.Contains(err.Error(), "MaxTimeAhead") {
		t.Errorf("NewDecoder with MaxTimeAhead 0: %v", err)
	}
}
