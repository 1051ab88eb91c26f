package topics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// envelope is the output envelope as encoding/json writes it: the reference
// the Append functions must match byte for byte.
type envelope[T any] struct {
	ID          string  `json:"id"`
	Type        string  `json:"type"`
	Version     int     `json:"version"`
	Source      string  `json:"source"`
	AggregateID string  `json:"aggregateId"`
	Timestamp   string  `json:"timestamp"`
	Data        T       `json:"data"`
	Metadata    outMeta `json:"metadata"`
}

type outMeta struct {
	CorrelationID string `json:"correlationId"`
	CausationID   string `json:"causationId"`
	TraceID       string `json:"traceId,omitempty"`
}

func encodingJSON[T any](t *testing.T, typ string, m topics.OutputMeta, data T) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(envelope[T]{
		ID: m.ID, Type: typ, Version: topics.OutputVersion, Source: topics.OutputSource,
		AggregateID: m.AggregateID, Timestamp: topics.FormatTime(m.Time), Data: data,
		Metadata: outMeta{m.CorrelationID, m.CausationID, m.TraceID},
	})
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// nasty holds strings that need escaping or replacing in JSON.
var nasty = []string{
	"plain",
	"",
	`quote " and backslash \ and slash /`,
	"control \x00\x01\x07\b\f\n\r\t\x1f\x7f",
	"html <script>&amp;</script>",
	"unicode é ü 日本 😀",
	"separators \u2028 \u2029",
	"invalid UTF-8 \xff\xfe and truncated \xe6\x97",
}

func TestAppendMatchesEncodingJSON(t *testing.T) {
	for _, s := range nasty {
		m := topics.OutputMeta{
			ID: topics.AggregateID(s, "evt-1"), AggregateID: s,
			Time:          time.Date(2026, 11, 22, 11, 0, 0, 123456789, time.FixedZone("CET", 3600)),
			CorrelationID: "corr " + s, CausationID: "evt-1", TraceID: s,
		}
		agg := topics.AggregatedData{
			UserID: s, TotalActivity: 3,
			Actions:         map[string]int64{s: 1, "click": 2, "a": 0},
			Resources:       map[string]int64{"/home": 2, s + "/x": 1, "_other": 9},
			FirstActivityAt: "2026-11-22T10:00:00.000Z", LastActivityAt: "2026-11-22T10:00:00.123Z", LastSequence: 17,
		}
		mil := topics.MilestoneData{UserID: s, Milestone: "activity", Count: 100}
		ano := topics.AnomalyData{UserID: s, AnomalyType: "high-activity", CurrentRate: 12.4, AverageRate: 1.0 / 3, WindowCount: 62, Severity: "critical"}
		gap := topics.GapData{AggregateID: s, Expected: 5, ResumedAt: 9, Skipped: 4}
		checks := []struct {
			name      string
			got, want []byte
		}{
			{"aggregated", topics.AppendAggregated(nil, m, &agg), encodingJSON(t, topics.TypeAggregated, m, agg)},
			{"milestone", topics.AppendMilestone(nil, m, &mil), encodingJSON(t, topics.TypeMilestone, m, mil)},
			{"anomaly", topics.AppendAnomaly(nil, m, &ano), encodingJSON(t, topics.TypeAnomaly, m, ano)},
			{"gap", topics.AppendGap(nil, m, &gap), encodingJSON(t, topics.TypeGap, m, gap)},
		}
		for _, c := range checks {
			if !bytes.Equal(c.got, c.want) {
				t.Errorf("%s with %q:\ngot  %s\nwant %s", c.name, s, c.got, c.want)
			}
			if !json.Valid(c.got) {
				t.Errorf("%s with %q: invalid JSON %s", c.name, s, c.got)
			}
		}
	}
}

func TestAppendRoundTrip(t *testing.T) {
	s := "u \"42\"\n\u00e9"
	m := topics.OutputMeta{ID: topics.AnomalyID(s, "e-9"), AggregateID: s,
		Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC), CorrelationID: "c-1", CausationID: "e-9"}
	d := topics.AnomalyData{UserID: s, AnomalyType: "high-activity", CurrentRate: 2.6, AverageRate: 0.1, WindowCount: 13, Severity: "high"}
	var out topics.Output
	if err := json.Unmarshal(topics.AppendAnomaly([]byte("prefix"), m, &d)[len("prefix"):], &out); err != nil {
		t.Fatal(err)
	}
	want := topics.Output{ID: "anomaly:" + s + ":e-9", Type: topics.TypeAnomaly, Version: 1, Source: "streamworker",
		AggregateID: s, Timestamp: "2026-11-22T10:00:00.123Z", Metadata: topics.Metadata{CorrelationID: "c-1", CausationID: "e-9"}}
	data := out.Data
	out.Data = nil
	if out.ID != want.ID || out.Type != want.Type || out.Version != want.Version || out.Source != want.Source ||
		out.AggregateID != want.AggregateID || out.Timestamp != want.Timestamp || out.Metadata != want.Metadata {
		t.Fatalf("got  %+v\nwant %+v", out, want)
	}
	var gotData topics.AnomalyData
	if err := json.Unmarshal(data, &gotData); err != nil || gotData != d {
		t.Fatalf("data %s: %+v, %v", data, gotData, err)
	}
	if strings.Contains(string(data), "traceId") || bytes.Contains(topics.AppendAnomaly(nil, m, &d), []byte("traceId")) {
		t.Fatal("traceId written although empty")
	}
}

func TestAppendAggregatedDeterministic(t *testing.T) {
	m := topics.OutputMeta{ID: "aggregate:u:e", AggregateID: "u", CorrelationID: "c", CausationID: "e"}
	build := func(order []string) *topics.AggregatedData {
		d := &topics.AggregatedData{UserID: "u", Actions: map[string]int64{}, Resources: map[string]int64{}}
		for i, k := range order {
			d.Actions[k] = int64(i)
			d.Resources[k] = 1
		}
		return d
	}
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = string(rune('a'+i%26)) + strings.Repeat("x", i)
	}
	first := topics.AppendAggregated(nil, m, build(keys))
	for range 5 {
		if got := topics.AppendAggregated(nil, m, build(keys)); !bytes.Equal(got, first) {
			t.Fatalf("output differs between runs:\n%s\n%s", got, first)
		}
	}
	// Nil maps are written as empty objects, not null.
	got := topics.AppendAggregated(nil, m, &topics.AggregatedData{UserID: "u"})
	if !bytes.Contains(got, []byte(`"actions":{},"resources":{}`)) {
		t.Fatalf("nil maps: %s", got)
	}
}

func TestAppendFloats(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 1.0 / 3, 12.4, 1e-6, 1e-7, 123456789e-15, 1e20, 1e21, 1.5e300, math.SmallestNonzeroFloat64, math.MaxFloat64} {
		d := topics.AnomalyData{CurrentRate: f, AverageRate: -f}
		got := topics.AppendAnomaly(nil, topics.OutputMeta{}, &d)
		want := encodingJSON(t, topics.TypeAnomaly, topics.OutputMeta{}, d)
		if !bytes.Equal(got, want) {
			t.Errorf("%g:\ngot  %s\nwant %s", f, got, want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		got := topics.AppendAnomaly(nil, topics.OutputMeta{}, &topics.AnomalyData{CurrentRate: f})
		if !json.Valid(got) || !bytes.Contains(got, []byte(`"currentRate":null`)) {
			t.Errorf("%g: %s", f, got)
		}
	}
}

func TestFormatTime(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC), "2026-11-22T10:00:00.123Z"},
		{time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), "2026-11-22T10:00:00.000Z"},
		{time.Date(2026, 11, 22, 10, 0, 0, 999999999, time.UTC), "2026-11-22T10:00:00.999Z"}, // truncated, not rounded
		{time.Date(2026, 11, 22, 11, 0, 0, 5e6, time.FixedZone("CET", 3600)), "2026-11-22T10:00:00.005Z"},
		{time.Time{}, "0001-01-01T00:00:00.000Z"},
	}
	for _, tt := range tests {
		if got := topics.FormatTime(tt.t); got != tt.want {
			t.Errorf("FormatTime(%v) = %s, want %s", tt.t, got, tt.want)
		}
		if got := string(topics.AppendTime([]byte("x"), tt.t)); got != "x"+tt.want {
			t.Errorf("AppendTime(%v) = %s", tt.t, got)
		}
	}
}

func TestOutputIDs(t *testing.T) {
	tests := []struct{ got, want string }{
		{topics.AggregateID("u-42", "evt-1"), "aggregate:u-42:evt-1"},
		{topics.MilestoneID("u-42", 100), "milestone:u-42:100"},
		{topics.AnomalyID("u-42", "evt-1"), "anomaly:u-42:evt-1"},
		{topics.GapID("u-42", 5, 9), "gap:u-42:5:9"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestOutputIDsInjective: two different (user, event) pairs never share an
// output ID, whatever bytes the IDs hold; consumers drop repeats by ID, so
// a shared ID would hide one of the two outputs. Before, user "u:x" with
// event "e" and user "u" with event "x:e" both made "aggregate:u:x:e"
// (and a producer that knew an event ID with a colon could shadow it).
// Checked over every pair of strings of up to three bytes of an alphabet
// with the separator, the escape and the marker.
func TestOutputIDsInjective(t *testing.T) {
	strs := []string{""}
	for n, frontier := 0, []string{""}; n < 3; n++ {
		var next []string
		for _, s := range frontier {
			for _, c := range []string{"a", ":", "%", "~", "3"} {
				next = append(next, s+c)
			}
		}
		strs, frontier = append(strs, next...), next
	}
	for _, f := range []struct {
		name string
		id   func(u, e string) string
	}{{"AggregateID", topics.AggregateID}, {"AnomalyID", topics.AnomalyID}} {
		seen := map[string][2]string{}
		for _, u := range strs[1:] { // an aggregate ID is never empty
			for _, e := range strs[1:] { // nor is an event ID
				id := f.id(u, e)
				if prev, ok := seen[id]; ok {
					t.Fatalf("%s(%q, %q) = %s(%q, %q) = %q", f.name, u, e, f.name, prev[0], prev[1], id)
				}
				seen[id] = [2]string{u, e}
			}
		}
	}
	// An ordinary user ID is written as it is: the IDs of earlier releases.
	if got := topics.AggregateID("u-42", "e:1"); got != "aggregate:u-42:e:1" {
		t.Errorf("AggregateID(u-42, e:1) = %q", got)
	}
	if got := topics.AnomalyID("t:u%1", "e"); got != "anomaly:~t%3Au%251:e" {
		t.Errorf("AnomalyID(t:u%%1, e) = %q", got)
	}
}

func TestMetaFor(t *testing.T) {
	e := fullEvent()
	m := topics.MetaFor(&e, "x")
	want := topics.OutputMeta{ID: "x", AggregateID: "u-42", Time: e.Time, CorrelationID: "corr-1", CausationID: "evt-8f14e45f", TraceID: "trace-1"}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	e.Metadata.CorrelationID = ""
	if m := topics.MetaFor(&e, "x"); m.CorrelationID != e.ID {
		t.Fatalf("without a correlation ID: CorrelationID %q, want the event ID", m.CorrelationID)
	}
}

// refFormatTime is FormatTime as time.Format writes it: the reference for the
// hand-written formatter.
func refFormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func TestFormatTimeMatchesTimeFormat(t *testing.T) {
	const clamp = 1 << 50 // the processors' bound on event times, in ms
	msOf := func(y int, mo time.Month, d, h, mi, s, ms int) int64 {
		return time.Date(y, mo, d, h, mi, s, ms*1e6, time.UTC).UnixMilli()
	}
	edges := []int64{
		0, -1, 1, 999, -999, -1000, -1001, clamp, -clamp, clamp - 1, -clamp + 1,
		msOf(0, 1, 1, 0, 0, 0, 0), msOf(0, 1, 1, 0, 0, 0, 0) - 1, msOf(-1, 12, 31, 23, 59, 59, 999),
		msOf(9999, 12, 31, 23, 59, 59, 999), msOf(9999, 12, 31, 23, 59, 59, 999) + 1,
		msOf(0, 2, 29, 12, 0, 0, 1), msOf(0, 3, 1, 0, 0, 0, 0), msOf(1900, 2, 28, 23, 59, 59, 999), msOf(1900, 3, 1, 0, 0, 0, 0),
		msOf(2000, 2, 29, 0, 0, 0, 0), msOf(2400, 2, 29, 0, 0, 0, 0), msOf(1969, 12, 31, 23, 59, 59, 999),
		msOf(1, 1, 1, 0, 0, 0, 0), msOf(-400, 3, 1, 0, 0, 0, 0), msOf(10000, 1, 1, 0, 0, 0, 0), msOf(-35000, 6, 1, 0, 0, 0, 0),
	}
	check := func(ms int64) {
		t.Helper()
		want := refFormatTime(time.UnixMilli(ms))
		if got := topics.FormatTime(time.UnixMilli(ms)); got != want {
			t.Fatalf("FormatTime(UnixMilli(%d)) = %s, want %s", ms, got, want)
		}
	}
	for _, ms := range edges {
		check(ms)
	}
	// The days around the end of February of every year 0 to 9999, about
	// every other day of those years, all at random times of day; then
	// random times over the whole clamp.
	r := rand.New(rand.NewPCG(5, 6))
	timeOfDay := func() int64 { return r.Int64N(86_400_000) }
	for y := range 10_000 {
		for _, d := range []int{28, 29, 30} { // February 30 is March 1 or 2
			check(msOf(y, 2, d, 0, 0, 0, 0) + timeOfDay())
		}
	}
	for day := int64(-719_528); day <= 2_932_896; day += 1 + r.Int64N(3) {
		check(day*86_400_000 + timeOfDay())
	}
	for range 100_000 {
		check(r.Int64N(2*clamp+1) - clamp)
	}
	// Times with nanoseconds and zones, and ones beyond the millisecond
	// range of int64.
	for _, tt := range []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 999_999, time.FixedZone("x", -3600)),
		time.Date(-3, 2, 28, 23, 0, 0, 1, time.FixedZone("y", 7200)),
		time.Date(2026, 11, 22, 10, 0, 0, 999_999_999, time.FixedZone("z", 3600*14)),
		time.Date(300_000_000, 1, 1, 0, 0, 0, 5e6, time.UTC),
		time.Date(-300_000_000, 1, 1, 0, 0, 0, 5e6, time.UTC),
	} {
		if got, want := topics.FormatTime(tt), refFormatTime(tt); got != want {
			t.Errorf("FormatTime(%v) = %s, want %s", tt, got, want)
		}
	}
}

// randomView returns a random aggregated view and the AggregatedData that
// Snapshot would make of the same user: nasty strings as keys and IDs, empty
// and large count sets, TotalActivity 0, times anywhere in the processors'
// clamp.
func randomView(r *rand.Rand) (topics.OutputMeta, topics.AggregatedView, topics.AggregatedData) {
	pick := func() string {
		if r.IntN(3) == 0 {
			return nasty[r.IntN(len(nasty))]
		}
		return "/k/" + strconv.Itoa(r.IntN(100))
	}
	counts := func() ([]topics.Count, map[string]int64) {
		m := map[string]int64{}
		for range []int{0, 1, 3, 40}[r.IntN(4)] {
			m[pick()] = []int64{1, r.Int64N(1000), math.MaxInt64}[r.IntN(3)]
		}
		return appendSorted(m), m
	}
	ms := func() int64 {
		if r.IntN(4) == 0 {
			return []int64{0, -1, 1 << 50, -(1 << 50), -62_167_219_200_001, 253_402_300_800_000}[r.IntN(6)]
		}
		return r.Int64N(1<<51+1) - 1<<50
	}
	m := topics.OutputMeta{
		ID: topics.AggregateID(pick(), pick()), AggregateID: pick(), Time: time.UnixMilli(ms()).Add(time.Duration(r.IntN(1e6))),
		CorrelationID: pick(), CausationID: pick(),
	}
	if r.IntN(2) == 0 {
		m.TraceID = pick()
	}
	v := topics.AggregatedView{UserID: pick(), TotalActivity: []int64{0, 1, r.Int64N(1 << 40)}[r.IntN(3)],
		FirstActivityMillis: ms(), LastActivityMillis: ms(), LastSequence: r.Int64N(1 << 62)}
	var d topics.AggregatedData
	v.Actions, d.Actions = counts()
	v.Resources, d.Resources = counts()
	d.UserID, d.TotalActivity, d.LastSequence = v.UserID, v.TotalActivity, v.LastSequence
	if v.TotalActivity == 0 {
		v.Actions, d.Actions, v.Resources, d.Resources = nil, map[string]int64{}, nil, map[string]int64{}
	} else {
		d.FirstActivityAt = topics.FormatTime(time.UnixMilli(v.FirstActivityMillis))
		d.LastActivityAt = topics.FormatTime(time.UnixMilli(v.LastActivityMillis))
	}
	return m, v, d
}

// appendSorted returns the entries of m sorted by key.
func appendSorted(m map[string]int64) []topics.Count {
	var out []topics.Count
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, topics.Count{Key: k, N: m[k]})
	}
	return out
}

func TestAppendAggregatedViewMatchesAppendAggregated(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 3000 {
		m, v, d := randomView(r)
		prefix := []byte("prefix")
		want := topics.AppendAggregated(bytes.Clone(prefix), m, &d)
		got := topics.AppendAggregatedView(bytes.Clone(prefix), m, &v)
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d (%+v):\ngot  %s\nwant %s", i, v, got, want)
		}
		if !json.Valid(got[len(prefix):]) {
			t.Fatalf("case %d: invalid JSON %s", i, got)
		}
		if i%100 == 0 {
			if ref := encodingJSON(t, topics.TypeAggregated, m, d); !bytes.Equal(got[len(prefix):], ref) {
				t.Fatalf("case %d: differs from encoding/json:\ngot  %s\nwant %s", i, got, ref)
			}
		}
	}
}

func TestAppendAggregatedViewAllocations(t *testing.T) {
	m := topics.OutputMeta{ID: topics.AggregateID("u-42", "evt-1"), AggregateID: "u-42", Time: time.UnixMilli(1_795_000_000_123),
		CorrelationID: "corr-1", CausationID: "evt-1", TraceID: "trace-1"}
	v := topics.AggregatedView{UserID: "u-42", TotalActivity: 1234, Actions: []topics.Count{{"click", 1000}, {"view", 234}},
		FirstActivityMillis: 1_795_000_000_000, LastActivityMillis: 1_795_000_000_123, LastSequence: 1234}
	for i := range 1000 {
		v.Resources = append(v.Resources, topics.Count{Key: fmt.Sprintf("/page/%04d", i), N: int64(i + 1)})
	}
	buf := make([]byte, 0, 64<<10)
	if n := testing.AllocsPerRun(100, func() { buf = topics.AppendAggregatedView(buf[:0], m, &v) }); n != 0 {
		t.Errorf("into a buffer with room: %v allocations, want 0", n)
	}
	// Into nil or a short buffer the output is sized up front: one
	// allocation, not one per doubling. The race detector adds one of its
	// own here.
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	for _, res := range [][]topics.Count{nil, v.Resources[:5], v.Resources} {
		v.Resources = res
		if n := testing.AllocsPerRun(100, func() { buf = topics.AppendAggregatedView(make([]byte, 0, 8), m, &v) }); n != 2 {
			t.Errorf("%d resources into a short buffer: %v allocations, want 2 (the buffer and its one growth)", len(res), n)
		}
	}
}
