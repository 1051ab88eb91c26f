package topics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/topics/schema"
)

// This file checks the JSON Schemas in topics/schema against the code: the
// outputs the Append functions write validate against their schema, and
// the envelope schema agrees with the Decoder wherever a schema can express
// a rule. It carries a small validator for exactly the keywords the schemas
// use; a schema that uses any other keyword fails the test, so the two stay
// in step.

const draft202012 = "https://json-schema.org/draft/2020-12/schema"

func loadSchema(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := schema.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("%s is not valid JSON: %v", name, err)
	}
	if s["$schema"] != draft202012 {
		t.Fatalf("%s: $schema %v", name, s["$schema"])
	}
	if id, _ := s["$id"].(string); !strings.HasSuffix(id, "/"+name) {
		t.Fatalf("%s: $id %q does not end with its name", name, id)
	}
	return s
}

func TestSchemaFilesLoad(t *testing.T) {
	entries, err := schema.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	names := schema.Names()
	slices.Sort(names)
	if !slices.Equal(files, names) {
		t.Fatalf("embedded files %v, Names() %v", files, names)
	}
	for _, n := range names {
		checkKeywords(t, n, loadSchema(t, n))
	}
}

// keywords are the keywords validate implements.
var keywords = []string{
	"$schema", "$id", "$defs", "$ref", "title", "description", "default", "examples", "format",
	"type", "const", "enum", "minLength", "pattern", "minimum", "exclusiveMinimum", "maximum",
	"required", "properties", "additionalProperties", "allOf", "if", "then", "else",
}

// checkKeywords fails if any schema node under s uses a keyword validate
// does not implement.
func checkKeywords(t *testing.T, file string, s map[string]any) {
	t.Helper()
	for k, v := range s {
		if !slices.Contains(keywords, k) {
			t.Errorf("%s: keyword %q is not implemented by the test validator", file, k)
		}
		switch k {
		case "properties", "$defs":
			for _, sub := range v.(map[string]any) {
				checkKeywords(t, file, sub.(map[string]any))
			}
		case "additionalProperties", "if", "then", "else":
			if sub, ok := v.(map[string]any); ok {
				checkKeywords(t, file, sub)
			}
		case "allOf":
			for _, sub := range v.([]any) {
				checkKeywords(t, file, sub.(map[string]any))
			}
		}
	}
}

// validate returns the violations of v against the schema s; root resolves
// $ref. It panics on a keyword it does not implement.
func validate(root, s map[string]any, v any, path string) []string {
	var errs []string
	fail := func(format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	for k, kv := range s {
		switch k {
		case "$schema", "$id", "$defs", "title", "description", "default", "examples", "format",
			"properties", "additionalProperties", "then", "else":
			// Annotations, or handled with their object / if.
		case "$ref":
			ref := kv.(string)
			name, ok := strings.CutPrefix(ref, "#/$defs/")
			if !ok {
				panic("unsupported $ref " + ref)
			}
			errs = append(errs, validate(root, root["$defs"].(map[string]any)[name].(map[string]any), v, path)...)
		case "type":
			types, ok := kv.([]any)
			if !ok {
				types = []any{kv}
			}
			if !slices.ContainsFunc(types, func(t any) bool { return hasType(v, t.(string)) }) {
				fail("%v is not of type %v", v, kv)
			}
		case "const":
			if !jsonEqual(v, kv) {
				fail("%v is not %v", v, kv)
			}
		case "enum":
			if !slices.ContainsFunc(kv.([]any), func(e any) bool { return jsonEqual(v, e) }) {
				fail("%v is not one of %v", v, kv)
			}
		case "minLength":
			if str, ok := v.(string); ok && int64(utf8.RuneCountInString(str)) < mustInt(kv) {
				fail("%q is shorter than %v", str, kv)
			}
		case "pattern":
			if str, ok := v.(string); ok && !regexp.MustCompile(kv.(string)).MatchString(str) {
				fail("%q does not match %v", str, kv)
			}
		case "minimum", "exclusiveMinimum":
			if n, ok := v.(json.Number); ok {
				c := number(n).Cmp(number(kv.(json.Number)))
				if c < 0 || (c == 0 && k == "exclusiveMinimum") {
					fail("%v is below the %s %v", n, k, kv)
				}
			}
		case "maximum":
			if n, ok := v.(json.Number); ok && number(n).Cmp(number(kv.(json.Number))) > 0 {
				fail("%v is above the maximum %v", n, kv)
			}
		case "required":
			if obj, ok := v.(map[string]any); ok {
				for _, r := range kv.([]any) {
					if _, ok := obj[r.(string)]; !ok {
						fail("missing required %v", r)
					}
				}
			}
		case "allOf":
			for _, sub := range kv.([]any) {
				errs = append(errs, validate(root, sub.(map[string]any), v, path)...)
			}
		case "if":
			branch := "else"
			if len(validate(root, kv.(map[string]any), v, path)) == 0 {
				branch = "then"
			}
			if sub, ok := s[branch].(map[string]any); ok {
				errs = append(errs, validate(root, sub, v, path)...)
			}
		default:
			panic("the test validator does not implement keyword " + k)
		}
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return errs
	}
	props, _ := s["properties"].(map[string]any)
	for name, pv := range obj {
		if ps, ok := props[name]; ok {
			errs = append(errs, validate(root, ps.(map[string]any), pv, path+"."+name)...)
			continue
		}
		switch ap := s["additionalProperties"].(type) {
		case bool:
			if !ap {
				fail("unexpected property %s", name)
			}
		case map[string]any:
			errs = append(errs, validate(root, ap, pv, path+"."+name)...)
		}
	}
	return errs
}

func hasType(v any, typ string) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer": // JSON Schema: any number with a zero fractional part
		n, ok := v.(json.Number)
		return ok && number(n).IsInt()
	}
	panic("unknown type " + typ)
}

func number(n json.Number) *big.Rat {
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		panic("bad number " + n)
	}
	return r
}

func mustInt(v any) int64 {
	n, err := v.(json.Number).Int64()
	if err != nil {
		panic(err)
	}
	return n
}

func jsonEqual(a, b any) bool {
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		return number(an).Cmp(number(bn)) == 0
	}
	return reflect.DeepEqual(a, b)
}

func parseJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

// sampleOutputs returns one output of each kind, by schema file name.
func sampleOutputs() map[string][]byte {
	m := topics.OutputMeta{ID: "", AggregateID: "u-42", Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC),
		CorrelationID: "corr-1", CausationID: "evt-1", TraceID: "trace-1"}
	with := func(id string) topics.OutputMeta { m := m; m.ID = id; return m }
	return map[string][]byte{
		schema.Aggregated: topics.AppendAggregated(nil, with(topics.AggregateID("u-42", "evt-1")), &topics.AggregatedData{
			UserID: "u-42", TotalActivity: 3, Actions: map[string]int64{"click": 2, "view": 1},
			Resources: map[string]int64{"/home": 3}, FirstActivityAt: topics.FormatTime(m.Time.Add(-time.Hour)),
			LastActivityAt: topics.FormatTime(m.Time), LastSequence: 17}),
		schema.Milestone: topics.AppendMilestone(nil, with(topics.MilestoneID("u-42", 100)), &topics.MilestoneData{
			UserID: "u-42", Milestone: "activity", Count: 100}),
		schema.Anomaly: topics.AppendAnomaly(nil, with(topics.AnomalyID("u-42", "evt-1")), &topics.AnomalyData{
			UserID: "u-42", AnomalyType: "high-activity", CurrentRate: 12.4, AverageRate: 0.1, WindowCount: 62, Severity: "critical"}),
		schema.Gap: topics.AppendGap(nil, with(topics.GapID("u-42", 5, 9)), &topics.GapData{
			AggregateID: "u-42", Expected: 5, ResumedAt: 9, Skipped: 4}),
	}
}

func TestOutputsMatchSchemas(t *testing.T) {
	for name, out := range sampleOutputs() {
		t.Run(name, func(t *testing.T) {
			s := loadSchema(t, name)
			v := parseJSON(t, out)
			if errs := validate(s, s, v, ""); len(errs) > 0 {
				t.Fatalf("%s\n%s", out, strings.Join(errs, "\n"))
			}
			// Every property written is declared, and every required one
			// is written, at each level.
			checkDeclared(t, s, v.(map[string]any), "")
			// The schema can fail: removing any required property does.
			for _, req := range s["required"].([]any) {
				cp := parseJSON(t, out).(map[string]any)
				delete(cp, req.(string))
				if len(validate(s, s, cp, "")) == 0 {
					t.Errorf("still valid without %v", req)
				}
			}
		})
	}
}

// checkDeclared checks that obj's properties are declared in s, recursively.
func checkDeclared(t *testing.T, s map[string]any, obj map[string]any, path string) {
	t.Helper()
	props, _ := s["properties"].(map[string]any)
	if props == nil {
		return
	}
	for k, v := range obj {
		ps, ok := props[k].(map[string]any)
		if !ok {
			t.Errorf("%s.%s is written but not declared", path, k)
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			checkDeclared(t, ps, sub, path+"."+k)
		}
	}
}

func TestEnvelopeSchemaAgreesWithDecoder(t *testing.T) {
	s := loadSchema(t, schema.Envelope)
	// Inputs the Decoder accepts (with a record key) and the schema
	// accepts too.
	valid := []string{
		fullJSON,
		benchJSON,
		`{"id":"e","type":"t"}`,
		`{"id":"e","type":"t","version":null,"source":null,"sequence":null,"timestamp":null,"data":null,"metadata":null,"specversion":null}`,
		`{"id":"e","type":"t","version":2,"data":{"userId":"u"}}`,
		`{"id":"e","type":"t","data":{"action":null,"other":5},"unknown":[1]}`,
		withField(t, "sequence", `9007199254740991`),
	}
	for _, v := range valid {
		if _, err := new(topics.Decoder).Decode(jsonRecord(v)); err != nil {
			t.Fatalf("Decoder rejects %s: %v", v, err)
		}
		if errs := validate(s, s, parseJSON(t, []byte(v)), ""); len(errs) > 0 {
			t.Errorf("schema rejects %s:\n%s", v, strings.Join(errs, "\n"))
		}
	}
	// Inputs both reject. Rules a schema cannot state (17.0 is an
	// integer to JSON Schema, RFC 3339 is only a format annotation, the
	// record key, the size) are left to the Decoder.
	invalid := []string{
		`[]`,
		withField(t, "id", ""),
		withField(t, "id", `""`),
		withField(t, "id", `7`),
		withField(t, "type", ""),
		withField(t, "type", `{}`),
		`{"specversion":"1.0","id":"e","type":"t"}`,
		withField(t, "version", `"1"`),
		withField(t, "version", `0`),
		withField(t, "version", `3`),
		withField(t, "version", `1.5`),
		withField(t, "source", `1`),
		withField(t, "aggregateId", `1`),
		withField(t, "sequence", `0`),
		withField(t, "sequence", `-5`),
		withField(t, "sequence", `"17"`),
		withField(t, "sequence", `17.5`),
		withField(t, "sequence", `9007199254740992`),
		withField(t, "timestamp", `1732269600`),
		withField(t, "data", `"x"`),
		withField(t, "data", `{"action":1}`),
		withField(t, "data", `{"userId":true}`),
		withField(t, "metadata", `[]`),
		withField(t, "metadata", `{"traceId":1}`),
		`{"id":"e","type":"t","version":2}`,
		`{"id":"e","type":"t","version":2,"data":{"action":"a"}}`,
		`{"id":"e","type":"t","version":2,"data":{"userId":""}}`,
	}
	for _, v := range invalid {
		if _, err := new(topics.Decoder).Decode(jsonRecord(v)); err == nil {
			t.Fatalf("Decoder accepts %s", v)
		}
		if len(validate(s, s, parseJSON(t, []byte(v)), "")) == 0 {
			t.Errorf("schema accepts %s", v)
		}
	}
}
