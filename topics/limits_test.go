package topics_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// TestDecodeLimits checks each length bound and the sequence bound, at and
// one past the limit, in both formats. Before the bounds, every "past"
// case was accepted (issue 12, findings 3 and 5).
func TestDecodeLimits(t *testing.T) {
	lim := topics.Limits{MaxBytes: 1 << 20, MaxIDBytes: 20, MaxAggregateIDBytes: 16, MaxLabelBytes: 14, MaxTimeAhead: topics.DefaultMaxTimeAhead}
	// Every field of withField's and ceRecord's events is within these.
	d, err := topics.NewDecoder(lim)
	if err != nil {
		t.Fatal(err)
	}
	q := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }
	jsonCases := []struct {
		field  string
		raw    func(int) string
		max    int
		reason topics.Reason
	}{
		{"id", q, lim.MaxIDBytes, topics.ReasonInvalidID},
		{"type", q, lim.MaxLabelBytes, topics.ReasonInvalidType},
		{"source", q, lim.MaxLabelBytes, topics.ReasonInvalidSource},
		{"aggregateId", q, lim.MaxAggregateIDBytes, topics.ReasonInvalidAggregateID},
		{"data.userId", q, lim.MaxAggregateIDBytes, topics.ReasonInvalidData},
		{"data.action", q, lim.MaxLabelBytes, topics.ReasonInvalidData},
		{"data.resource", q, lim.MaxLabelBytes, topics.ReasonInvalidData},
		{"metadata.correlationId", q, lim.MaxIDBytes, topics.ReasonInvalidMetadata},
		{"metadata.causationId", q, lim.MaxIDBytes, topics.ReasonInvalidMetadata},
		{"metadata.traceId", q, lim.MaxIDBytes, topics.ReasonInvalidMetadata},
		{"metadata.userId", q, lim.MaxAggregateIDBytes, topics.ReasonInvalidMetadata},
	}
	for _, c := range jsonCases {
		t.Run("json "+c.field, func(t *testing.T) {
			// A nested field is appended to its object: the last one wins.
			set := func(raw string) string {
				switch obj, k, _ := strings.Cut(c.field, "."); obj {
				case "data":
					return withField(t, "data", `{"userId":"u-42","action":"click","resource":"/home","`+k+`":`+raw+`}`)
				case "metadata":
					return withField(t, "metadata", `{"correlationId":"c-1","`+k+`":`+raw+`}`)
				}
				return withField(t, c.field, raw)
			}
			if _, err := d.Decode(jsonRecord(set(c.raw(c.max)))); err != nil {
				t.Fatalf("%s of %d bytes (the limit): %v", c.field, c.max, err)
			}
			r := jsonRecord(set(c.raw(c.max + 1)))
			expectReason(t, d, r, c.field, c.reason)
		})
	}
	t.Run("record key as aggregate", func(t *testing.T) {
		r := jsonRecord(`{"id":"e","type":"t"}`)
		r.Key = []byte(strings.Repeat("k", lim.MaxAggregateIDBytes+1))
		expectReason(t, d, r, "aggregateId", topics.ReasonInvalidAggregateID)
	})
	ceCases := []struct {
		header string
		max    int
		reason topics.Reason
	}{
		{"ce_id", lim.MaxIDBytes, topics.ReasonInvalidID},
		{"ce_type", lim.MaxLabelBytes, topics.ReasonInvalidType},
		{"ce_source", lim.MaxLabelBytes, topics.ReasonInvalidSource},
		{"ce_aggregateid", lim.MaxAggregateIDBytes, topics.ReasonInvalidAggregateID},
		{"ce_correlationid", lim.MaxIDBytes, topics.ReasonInvalidMetadata},
		{"ce_userid", lim.MaxAggregateIDBytes, topics.ReasonInvalidMetadata},
	}
	for _, c := range ceCases {
		t.Run("cloudevents "+c.header, func(t *testing.T) {
			for _, n := range []int{c.max, c.max + 1} {
				r := ceRecord()
				for i := range r.Headers {
					if r.Headers[i].Key == c.header {
						r.Headers[i].Value = []byte(strings.Repeat("x", n))
					}
				}
				if !hasHeader(r, c.header) {
					r.Headers = append(r.Headers, topics.Header{Key: c.header, Value: []byte(strings.Repeat("x", n))})
				}
				if n == c.max {
					if _, err := d.Decode(r); err != nil {
						t.Fatalf("%s of %d bytes (the limit): %v", c.header, n, err)
					}
					continue
				}
				expectReason(t, d, r, c.header, c.reason)
			}
		})
	}
	t.Run("sequence", func(t *testing.T) {
		if _, err := d.Decode(jsonRecord(withField(t, "sequence", "9007199254740991"))); err != nil {
			t.Fatalf("MaxSequence: %v", err)
		}
		for _, s := range []string{"9007199254740992", "9223372036854775807", "9223372036854775808"} {
			expectReason(t, d, jsonRecord(withField(t, "sequence", s)), "sequence", topics.ReasonInvalidSequence)
			r := ceRecord()
			for i := range r.Headers {
				if r.Headers[i].Key == "ce_sequence" {
					r.Headers[i].Value = []byte(s)
				}
			}
			expectReason(t, d, r, "ce_sequence", topics.ReasonInvalidSequence)
		}
	})
}

// TestDecodeDefaultLimits: the zero Decoder and DefaultLimits bound IDs
// at 256 bytes; the 340 KB id and 520 KB aggregateId are rejected.
func TestDecodeDefaultLimits(t *testing.T) {
	var zero topics.Decoder
	if got := zero.Limits(); got != topics.DefaultLimits() {
		t.Fatalf("zero Decoder limits %+v, want %+v", got, topics.DefaultLimits())
	}
	id := strings.Repeat("i", 340<<10)
	expectReason(t, &zero, jsonRecord(`{"id":"`+id+`","type":"t"}`), "id", topics.ReasonInvalidID)
	agg := strings.Repeat("a", 520<<10)
	expectReason(t, &zero, jsonRecord(`{"id":"e","type":"t","aggregateId":"`+agg+`"}`), "aggregateId", topics.ReasonInvalidAggregateID)
	ok := `{"id":"` + strings.Repeat("i", topics.DefaultMaxIDBytes) + `","type":"t"}`
	if _, err := zero.Decode(jsonRecord(ok)); err != nil {
		t.Fatalf("an id of DefaultMaxIDBytes: %v", err)
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := topics.DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"MaxBytes", "MaxIDBytes", "MaxAggregateIDBytes", "MaxLabelBytes"} {
		l := topics.DefaultLimits()
		switch name {
		case "MaxBytes":
			l.MaxBytes = 0
		case "MaxIDBytes":
			l.MaxIDBytes = 0
		case "MaxAggregateIDBytes":
			l.MaxAggregateIDBytes = -1
		case "MaxLabelBytes":
			l.MaxLabelBytes = 0
		}
		if _, err := topics.NewDecoder(l); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("limits with %s unset: error %v does not name it", name, err)
		}
	}
}

func hasHeader(r *topics.Record, k string) bool {
	for _, h := range r.Headers {
		if h.Key == k {
			return true
		}
	}
	return false
}

func expectReason(t *testing.T, d *topics.Decoder, r *topics.Record, field string, reason topics.Reason) {
	t.Helper()
	_, err := d.Decode(r)
	var verr *topics.ValidationError
	if !errors.As(err, &verr) || verr.Field != field || verr.Reason != reason {
		t.Fatalf("Decode: %v; want %s %s", err, field, reason)
	}
}

// TestMaxOutputBytes writes each kind of output at its worst within the
// bounds (every string of control characters, the longest numbers and
// times) and checks it is within MaxOutputBytes.
func TestMaxOutputBytes(t *testing.T) {
	lim := topics.Limits{MaxBytes: 1 << 20, MaxIDBytes: 40, MaxAggregateIDBytes: 30, MaxLabelBytes: 20, MaxTimeAhead: topics.DefaultMaxTimeAhead}
	agg, id := strings.Repeat("\x01", lim.MaxAggregateIDBytes), strings.Repeat("\x02", lim.MaxIDBytes)
	const maxInt = 1<<63 - 1
	meta := func(outID string) topics.OutputMeta {
		return topics.OutputMeta{ID: outID, AggregateID: agg, Time: time.UnixMilli(-1 << 62),
			CorrelationID: id, CausationID: id, TraceID: id}
	}
	outs := map[string][]byte{
		"milestone": topics.AppendMilestone(nil, meta(topics.MilestoneID(agg, -maxInt)),
			&topics.MilestoneData{UserID: agg, Milestone: "activity", Count: -maxInt}),
		"anomaly": topics.AppendAnomaly(nil, meta(topics.AnomalyID(agg, id)),
			&topics.AnomalyData{UserID: agg, AnomalyType: "high-activity", CurrentRate: -1.2345678901234567e-300,
				AverageRate: -math.MaxFloat64, WindowCount: -maxInt, Severity: "critical"}),
		"gap": topics.AppendGap(nil, meta(topics.GapID(agg, -maxInt, -maxInt)),
			&topics.GapData{AggregateID: agg, Expected: -maxInt, ResumedAt: -maxInt, Skipped: -maxInt}),
	}
	bound := topics.MaxOutputBytes(lim, 0, 0)
	for kind, out := range outs {
		if len(out) > bound {
			t.Errorf("%s output of %d bytes, bound %d", kind, len(out), bound)
		}
	}
	if got := topics.MaxOutputBytes(lim, 50, 50); got != topics.MaxAggregatedBytes(lim, 50, 50) {
		t.Errorf("with 100 keys the aggregated output is the largest: %d, %d", got, topics.MaxAggregatedBytes(lim, 50, 50))
	}
}
