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

	f.Add([]byte("k"), []byte(`{"id":"e","type":"t","sequence":9007199254740992}`), "")
	f.Add([]byte("k"), []byte(`{"id":"0123456789abcdefX","type":"t"}`), "")
	f.Add([]byte("k"), []byte(`{"id":"e","type":"t","data":{"action":"0123456789abcdefX"}}`), "")
	f.Add([]byte("0123456789abcdefX"), []byte(`{"id":"e","type":"t"}`), "")
	f.Add([]byte("k"), []byte(`{"id":"e","type":"t"}`), "traceparent="+traceParent+"-"+strings.Repeat("x", 64))
	f.Add([]byte("k"), []byte(`{"id":"e","type":"t"}`),
		"ce_specversion=1.0\nce_id=e\nce_type=t\nce_sequence=9007199254740992")
	f.Add([]byte("k"), []byte(`{}`), "ce_specversion=1.0\nce_id=e\nce_type=t\nce_correlationid=0123456789abcdefX")

	// Small bounds, so that huge inputs minimize fast and the length
	// checks are reached.
	lim := topics.Limits{MaxBytes: 4096, MaxIDBytes: 16, MaxAggregateIDBytes: 12, MaxLabelBytes: 14, MaxTimeAhead: topics.DefaultMaxTimeAhead}
	d, err := topics.NewDecoder(lim)
	if err != nil {
		f.Fatal(err)
	}
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
			checkBounds(t, e, lim)
		}
		if e.Format == topics.FormatCloudEvents || strings.Contains(headers, "ce_specversion=") {
			return
		}
		want, wantErr := reference(r, lim)
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
// docs/contract.md ("Event format") in the order the Decoder documents.
func reference(r *topics.Record, lim topics.Limits) (topics.Event, *topics.ValidationError) {
	bad := func(field string, reason topics.Reason) (topics.Event, *topics.ValidationError) {
		return topics.Event{}, &topics.ValidationError{Field: field, Reason: reason}
	}
	if len(r.Value) > lim.MaxBytes {
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
		if err != nil || i < 1 || i > topics.MaxSequence {
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
	for _, c := range []struct {
		field  string
		reason topics.Reason
		s      string
		max    int
	}{
		{"id", topics.ReasonInvalidID, e.ID, lim.MaxIDBytes},
		{"type", topics.ReasonInvalidType, e.Type, lim.MaxLabelBytes},
		{"source", topics.ReasonInvalidSource, e.Source, lim.MaxLabelBytes},
		{"aggregateId", topics.ReasonInvalidAggregateID, e.AggregateID, lim.MaxAggregateIDBytes},
		{"data.userId", topics.ReasonInvalidData, e.Data.UserID, lim.MaxAggregateIDBytes},
		{"data.action", topics.ReasonInvalidData, e.Data.Action, lim.MaxLabelBytes},
		{"data.resource", topics.ReasonInvalidData, e.Data.Resource, lim.MaxLabelBytes},
		{"metadata.correlationId", topics.ReasonInvalidMetadata, e.Metadata.CorrelationID, lim.MaxIDBytes},
		{"metadata.causationId", topics.ReasonInvalidMetadata, e.Metadata.CausationID, lim.MaxIDBytes},
		{"metadata.traceId", topics.ReasonInvalidMetadata, e.Metadata.TraceID, lim.MaxIDBytes},
		{"metadata.userId", topics.ReasonInvalidMetadata, e.Metadata.UserID, lim.MaxAggregateIDBytes},
	} {
		if len(c.s) > c.max {
			return bad(c.field, c.reason)
		}
	}
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

var traceParentLiteral = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

func validTraceParentRef(s string) bool {
	return traceParentLiteral.MatchString(s) &&
		s[3:35] != strings.Repeat("0", 32) && s[36:52] != strings.Repeat("0", 16)
}

// checkBounds fails unless every string of e, and so every output built
// from it, is within lim, the sequence within 1..MaxSequence and a
// traceparent in its exact 55-byte form.
func checkBounds(t *testing.T, e topics.Event, lim topics.Limits) {
	t.Helper()
	ids := []string{e.ID, e.Metadata.CorrelationID, e.Metadata.CausationID, e.Metadata.TraceID}
	users := []string{e.AggregateID, e.Data.UserID, e.Metadata.UserID}
	labels := []string{e.Type, e.Source, e.Data.Action, e.Data.Resource}
	for _, g := range []struct {
		ss  []string
		max int
	}{{ids, lim.MaxIDBytes}, {users, lim.MaxAggregateIDBytes}, {labels, lim.MaxLabelBytes}} {
		for _, s := range g.ss {
			if len(s) > g.max {
				t.Fatalf("decoded %q longer than %d bytes: %+v", s, g.max, e)
			}
		}
	}
	if e.Sequence < 0 || e.Sequence > topics.MaxSequence {
		t.Fatalf("sequence %d out of range", e.Sequence)
	}
	if e.TraceParent != "" && !validTraceParentRef(e.TraceParent) {
		t.Fatalf("traceparent %q copied", e.TraceParent)
	}
	// Every output the event can cause, with the largest numbers, is
	// within MaxOutputBytes (one action and one resource key).
	const big = 1<<63 - 1
	var counts []topics.Count
	for _, k := range []string{e.Data.Action, e.Data.Resource} {
		if k != "" {
			counts = append(counts, topics.Count{Key: k, N: big})
		}
	}
	agg := e.AggregateID
	outs := [][]byte{
		topics.AppendAggregatedView(nil, topics.MetaFor(&e, topics.AggregateID(agg, e.ID)), &topics.AggregatedView{
			UserID: agg, TotalActivity: big, Actions: counts[:min(1, len(counts))], Resources: counts[min(1, len(counts)):],
			LastSequence: e.Sequence}),
		topics.AppendMilestone(nil, topics.MetaFor(&e, topics.MilestoneID(agg, big)),
			&topics.MilestoneData{UserID: agg, Milestone: "activity", Count: big}),
		topics.AppendAnomaly(nil, topics.MetaFor(&e, topics.AnomalyID(agg, e.ID)), &topics.AnomalyData{UserID: agg,
			AnomalyType: "high-activity", CurrentRate: 1e300 / 3, AverageRate: 1.0 / 3, WindowCount: big, Severity: "critical"}),
		topics.AppendGap(nil, topics.MetaFor(&e, topics.GapID(agg, e.Sequence, topics.MaxSequence)),
			&topics.GapData{AggregateID: agg, Expected: e.Sequence, ResumedAt: topics.MaxSequence, Skipped: topics.MaxSequence}),
	}
	for i, out := range outs {
		if max := topics.MaxOutputBytes(lim, 1, 1); len(out) > max {
			t.Fatalf("output %d of %d bytes, bound %d", i, len(out), max)
		}
	}
}

// sameField reports whether field matches want, where want "data.*" matches
// any field of data.
func sameField(field, want string) bool {
	if prefix, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(field, prefix)
	}
	return field == want
}

// syntaxSeeds are JSON texts, valid and not, that exercise every rule of
// the syntax: numbers, literals, escapes, nesting, whitespace, separators.
var syntaxSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":}`, `{"a":1 "b":2}`, `{1:2}`, `{"a":1}}`, `{"a":1`,
	`{"a":[]}`, `{"a":[1,2,[3,{"b":[]}]]}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`, `{"a":[}`, `{"a":{]}`, `{"a":[1}]}`,
	`{"a":-0}`, `{"a":0.5e-3}`, `{"a":1E+9}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":-}`, `{"a":+1}`,
	`{"a":-01}`, `{"a":0x1}`, `{"a":1.5.2}`, `{"a":123456789012345678901234567890}`, `{"a":NaN}`, `{"a":Infinity}`,
	`{"a":true}`, `{"a":false}`, `{"a":null}`, `{"a":tru}`, `{"a":nul}`, `{"a":falsey}`, `{"a":True}`, `{"a":truefalse}`,
	`{"a":"\"\\\/\b\f\n\r\t"}`, `{"a":"\u00e9\uD83D\uDE00"}`, `{"a":"\u12G4"}`, `{"a":"\u12"}`, `{"a":"\x41"}`, `{"a":"\'"}`,
	"{\"a\":\"tab\there\"}", "{\"a\":\"nl\nhere\"}", "{\"a\":\"del\x7fhere\"}", "{\"a\":\"caf\xc3\xa9\"}", `{"a":"unterminated}`,
	`{"\u0061":1}`, `{"a\"b":1}`, `{"a":"b\\"}`, `{"a":"b\\\"}`, `{"a":"12345678\"9"}`, `{"a":"1234567\\"}`,
	"{\"a\":\"\x1f\"}", "{\"a\":\"\x00 long enough for a word\"}", "{\"a\":\"a long string, then \x1f\"}",
	`{"a":"\`, `{"a":"\u12`, `{"a":"\u123`, `{"a":"\u`, `{"a":"`, `{"a`, `{"a":-`, `{"a":1.`, `{"a":1e`, `{"a":t`,
	"{\"a\":1}\x00", "\t\r\n{\"a\":1}\t\r\n", "\v{\"a\":1}", "{\"a\":1}\f", "\xef\xbb\xbf{\"a\":1}",
	`[]`, `[1]`, `"s"`, `1`, `-1.5e3`, `true`, `null`, ``, ` `, `nul`, `[1,2`, `{"a":1} {"b":2}`, `{"a":1}]`,
	`{"id":"e","type":"t","data":{"action":"click","extra":[1,{"x":"}"}]}}`,
}

// FuzzDecodeSyntax checks that Decode accepts exactly the syntax that
// encoding/json.Valid accepts (plus UTF-8), with the same error text, for
// the JSON envelope and for a CloudEvents record's data.
func FuzzDecodeSyntax(f *testing.F) {
	for _, s := range syntaxSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":` + strings.Repeat(`[{"b":`, 40) + `1` + strings.Repeat(`}]`, 40) + `}`))
	var d topics.Decoder
	f.Fuzz(func(t *testing.T, value []byte) {
		checkSyntax(t, &d, value)
	})
}

// checkSyntax decodes value as a JSON envelope and as CloudEvents data, and
// checks what Decode says of its syntax against encoding/json.
func checkSyntax(t *testing.T, d *topics.Decoder, value []byte) {
	t.Helper()
	var want string // the Detail of a malformed value, "" if the syntax is fine
	switch {
	case !utf8.Valid(value):
		want = "not UTF-8"
	case !json.Valid(value):
		err := json.Unmarshal(value, &struct{}{})
		if err == nil {
			t.Fatalf("json.Valid(%q) is false but json.Unmarshal accepts it", value)
		}
		want = err.Error()
	}
	trimmed := bytes.TrimLeft(value, " \t\r\n")

	_, err := d.Decode(&topics.Record{Key: []byte("k"), Value: value, Timestamp: recordTime})
	var verr *topics.ValidationError
	malformed := errors.As(err, &verr) && verr.Field == "value" && verr.Reason == topics.ReasonMalformed
	switch {
	case want != "":
		if !malformed || verr.Detail != want {
			t.Fatalf("JSON %q: got %v, want malformed: %s", value, err, want)
		}
	case len(trimmed) == 0 || trimmed[0] != '{':
		if !malformed || verr.Detail != "not a JSON object" {
			t.Fatalf("JSON %q: got %v, want malformed: not a JSON object", value, err)
		}
	case malformed:
		t.Fatalf("JSON %q is a valid object, got %v", value, err)
	}

	ce := ceRecord()
	ce.Value = value
	_, err = d.Decode(ce)
	verr = nil
	malformed = errors.As(err, &verr) && verr.Field == "value" && verr.Reason == topics.ReasonMalformed
	switch {
	case len(trimmed) == 0: // no data
		if err != nil {
			t.Fatalf("CloudEvents data %q: %v", value, err)
		}
	case want != "":
		if !malformed || verr.Detail != want {
			t.Fatalf("CloudEvents data %q: got %v, want malformed: %s", value, err, want)
		}
	case malformed:
		t.Fatalf("CloudEvents data %q is valid JSON, got %v", value, err)
	}
}
