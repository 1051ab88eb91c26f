package loadgen

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// mixed is a config with every feature on.
func mixed(events int, seed int64) Config {
	return Config{
		Users: 1000, Events: events, Seed: seed,
		Duplicates: 0.05, OutOfOrder: 0.1, Malformed: 0.02,
		Unsequenced: 0.1, CloudEvents: 0.2, Bursts: 0.01,
	}
}

func generate(t testing.TB, cfg Config) []Record {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var rs []Record
	for {
		r, ok := g.Next()
		if !ok {
			return rs
		}
		rs = append(rs, r)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"zero", Config{}, ""},
		{"full", mixed(10, 1), ""},
		{"all fractions at 1", Config{Duplicates: 0.5, Malformed: 0.5, OutOfOrder: 1, Unsequenced: 1, CloudEvents: 1, Bursts: 1}, ""},
		{"negative users", Config{Users: -1}, "users -1"},
		{"too many users", Config{Users: MaxUsers + 1}, "users"},
		{"negative events", Config{Events: -5}, "events -5"},
		{"negative rate", Config{Rate: -1}, "rate -1"},
		{"NaN rate", Config{Rate: math.NaN()}, "rate NaN"},
		{"fraction above 1", Config{Duplicates: 1.5}, "duplicates 1.5"},
		{"negative fraction", Config{Bursts: -0.1}, "bursts -0.1"},
		{"NaN fraction", Config{CloudEvents: math.NaN()}, "cloudevents NaN"},
		{"duplicates plus malformed above 1", Config{Duplicates: 0.6, Malformed: 0.6}, "duplicates + malformed"},
		{"step below 1ms", Config{Step: time.Microsecond}, "step 1µs"},
		{"step above 1h", Config{Step: 2 * time.Hour}, "step 2h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			_, newErr := New(tc.cfg)
			if tc.want == "" {
				if err != nil || newErr != nil {
					t.Fatalf("Validate = %v, New = %v; want both nil", err, newErr)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want ErrInvalidConfig mentioning %q", err, tc.want)
			}
			if !errors.Is(newErr, ErrInvalidConfig) {
				t.Fatalf("New = %v; want ErrInvalidConfig", newErr)
			}
		})
	}
}

func TestAppendTime(t *testing.T) {
	for _, start := range []time.Time{
		DefaultStart,
		time.Date(1969, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(2024, 2, 28, 23, 0, 0, 0, time.FixedZone("X", 3600)),
	} {
		g, err := New(Config{Start: start, Users: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, ms := range []int64{0, 1, 999, 1000, 59_999, 3_599_999, 86_399_999, 86_400_000, 3 * 86_400_000, 400*86_400_000 + 12_345_678} {
			want := start.Add(time.Duration(ms) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z07:00")
			if got := string(g.appendTime(nil, ms)); got != want {
				t.Errorf("start %v + %dms = %s, want %s", start, ms, got, want)
			}
		}
	}
}

func TestDeterminism(t *testing.T) {
	a := generate(t, mixed(10000, 7))
	b := generate(t, mixed(10000, 7))
	if len(a) != 10000 || len(b) != 10000 {
		t.Fatalf("got %d and %d records, want 10000", len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("record %d differs with the same seed:\n%+v\n%+v", i, a[i], b[i])
		}
	}
	c := generate(t, mixed(10000, 8))
	same := 0
	for i := range a {
		if reflect.DeepEqual(a[i], c[i]) {
			same++
		}
	}
	if same > len(a)/100 {
		t.Fatalf("%d of %d records equal with another seed", same, len(a))
	}
}

func TestFractions(t *testing.T) {
	cfg := mixed(100000, 1)
	rs := generate(t, cfg)
	var kinds [3]int
	var valid, unsequenced, ce, late, sequenced int
	users := make(map[string]bool)
	maxSeq := make(map[string]int64)
	for _, r := range rs {
		kinds[r.Kind]++
		if r.Kind != Valid {
			continue
		}
		valid++
		users[r.User] = true
		if len(r.Headers) > 0 && r.Headers[0].Key == "ce_specversion" {
			ce++
		}
		if r.Sequence == 0 {
			unsequenced++
			continue
		}
		sequenced++
		if r.Sequence < maxSeq[r.User] {
			late++
		}
		maxSeq[r.User] = max(maxSeq[r.User], r.Sequence)
	}
	n := float64(len(rs))
	for _, f := range []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"duplicates of records", float64(kinds[Duplicate]) / n, cfg.Duplicates, 0.003},
		{"malformed of records", float64(kinds[Malformed]) / n, cfg.Malformed, 0.002},
		{"unsequenced of valid", float64(unsequenced) / float64(valid), cfg.Unsequenced, 0.005},
		{"cloudevents of valid", float64(ce) / float64(valid), cfg.CloudEvents, 0.006},
		{"out of order of sequenced", float64(late) / float64(sequenced), cfg.OutOfOrder, 0.01},
	} {
		t.Logf("%s: %.4f (want %.4f)", f.name, f.got, f.want)
		if math.Abs(f.got-f.want) > f.tol {
			t.Errorf("%s = %.4f, want %.4f ± %.4f", f.name, f.got, f.want, f.tol)
		}
	}
	if len(users) != cfg.Users {
		t.Errorf("%d users got events, want all %d", len(users), cfg.Users)
	}
}

// TestDecoding checks every record against topics.Decoder: malformed ones
// are rejected with their Reason, valid ones decode to what the Record
// says, duplicates repeat their original byte for byte.
func TestDecoding(t *testing.T) {
	cfg := mixed(20000, 3)
	cfg.Users, cfg.Malformed, cfg.Oversized = 50, 0.05, true
	var dec topics.Decoder
	reasons := make(map[topics.Reason]int)
	originals := make(map[string]Record)
	formats := make(map[topics.Format]int)
	for i, r := range generate(t, cfg) {
		tr := r.TopicsRecord()
		e, err := dec.Decode(&tr)
		if r.Kind == Malformed {
			var verr *topics.ValidationError
			if !errors.As(err, &verr) || verr.Reason != r.Reason {
				t.Fatalf("record %d (%s, %.80q): Decode error %v, want reason %s", i, r.ID, r.Value, err, r.Reason)
			}
			reasons[r.Reason]++
			continue
		}
		if err != nil {
			t.Fatalf("record %d (%s %s): %v", i, r.Kind, r.ID, err)
		}
		if e.ID != r.ID || e.AggregateID != r.User || e.Sequence != r.Sequence || string(r.Key) != r.User {
			t.Fatalf("record %d: decoded id %q user %q seq %d, record says %q %q %d", i, e.ID, e.AggregateID, e.Sequence, r.ID, r.User, r.Sequence)
		}
		if e.Type != topics.TypeUserActivity || e.Source != "loadgen" || e.Data.UserID != r.User || e.Data.Action == "" || e.Data.Resource == "" || e.Time.Before(DefaultStart) {
			t.Fatalf("record %d: incomplete event %+v", i, e)
		}
		hasTP := false
		for _, h := range r.Headers {
			hasTP = hasTP || h.Key == "traceparent"
		}
		if hasTP != (e.TraceParent != "") {
			t.Fatalf("record %d: traceparent header %v, decoded %q", i, hasTP, e.TraceParent)
		}
		if r.Kind == Valid {
			if _, dup := originals[r.ID]; dup {
				t.Fatalf("record %d: valid event ID %s emitted twice", i, r.ID)
			}
			originals[r.ID] = r
			formats[e.Format]++
			continue
		}
		o, ok := originals[r.ID]
		o.Kind = Duplicate
		if !ok || !reflect.DeepEqual(o, r) {
			t.Fatalf("record %d: duplicate %s does not repeat an earlier valid record", i, r.ID)
		}
	}
	// 17 defects share 11 reasons.
	if len(reasons) != 11 || reasons[topics.ReasonTooLarge] == 0 {
		t.Errorf("malformed reasons %v: want 11 distinct ones, too_large included", reasons)
	}
	if formats[topics.FormatJSON] == 0 || formats[topics.FormatCloudEvents] == 0 {
		t.Errorf("formats %v: want both", formats)
	}
}

// TestOutOfOrderIsLocal checks that no sequenced event is emitted after
// more than 3 higher sequences of its user, and that each user's sequences
// are 1..n with nothing missing when the stream ends.
func TestOutOfOrderIsLocal(t *testing.T) {
	cfg := mixed(20000, 5)
	cfg.Users, cfg.OutOfOrder = 200, 0.3
	seqs := make(map[string][]int64)
	for _, r := range generate(t, cfg) {
		if r.Kind == Valid && r.Sequence > 0 {
			seqs[r.User] = append(seqs[r.User], r.Sequence)
		}
	}
	moved := 0
	for u, ss := range seqs {
		seen := make(map[int64]bool)
		for i, s := range ss {
			higher := 0
			for _, p := range ss[max(0, i-10):i] {
				if p > s {
					higher++
				}
			}
			if higher > maxReorder {
				t.Fatalf("user %s: sequence %d emitted after %d higher ones: %v", u, s, higher, ss[max(0, i-10):i+1])
			}
			if higher > 0 {
				moved++
			}
			seen[s] = true
		}
		for s := int64(1); s <= int64(len(ss)); s++ {
			if !seen[s] {
				t.Fatalf("user %s: sequence %d missing of %d", u, s, len(ss))
			}
		}
	}
	if moved == 0 {
		t.Fatal("no event was out of order")
	}
}

func TestBurstsFireAnomalies(t *testing.T) {
	cfg := Config{Users: 100, Events: 30000, Bursts: 0.05, Seed: 11, Duplicates: 0.02, OutOfOrder: 0.05}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	burst := g.BurstUsers()
	if len(burst) != 5 {
		t.Fatalf("BurstUsers = %v, want 5 users", burst)
	}
	o := NewOracle()
	for r, ok := g.Next(); ok; r, ok = g.Next() {
		o.Observe(r)
	}
	for _, u := range burst {
		evs := o.Events(u)
		// The burst: 30 events within a few seconds, after a history that
		// spans more than the anomaly window.
		densest := 0
		for i := range evs {
			j := i
			for j < len(evs) && evs[j].Time.Sub(evs[i].Time) <= 5*time.Second {
				j++
			}
			densest = max(densest, j-i)
		}
		if densest < 25 || evs[burstAfter-1].Time.Sub(evs[0].Time) <= 5*time.Minute {
			t.Errorf("user %s: %d events in its densest 5s, history %v; want a burst after > 5m", u, densest, evs[burstAfter-1].Time.Sub(evs[0].Time))
		}
		if n := anomalies(evs); n == 0 {
			t.Errorf("user %s: burst fires no anomaly", u)
		}
	}
}

// anomalies counts the high-activity anomalies the rule of docs/contract.md ("Processors") fires on evs with
// the default parameters (float arithmetic is good enough for a test).
func anomalies(evs []topics.Event) int {
	const w = 5 * time.Minute
	var secs []int64 // rate-counted events' seconds
	var first, maxT, lastFire time.Time
	fired := 0
	for i, e := range evs {
		t := e.Time
		if i == 0 || t.Before(first) {
			first = t
		}
		if i > 0 && !t.After(maxT.Add(-w)) {
			continue
		}
		if t.After(maxT) {
			maxT = t
		}
		s := t.Unix()
		secs = append(secs, s)
		wc := 0
		for _, x := range secs {
			if x > s-300 && x <= s {
				wc++
			}
		}
		current := float64(wc) / 5
		avg := 1.0
		if span := t.Sub(first); span > w {
			avg = float64(i+1-wc) / (span - w).Minutes()
		}
		avg = max(avg, 0.1)
		if current > 5*avg && wc >= 10 && (fired == 0 || t.Sub(lastFire) >= w) {
			fired++
			lastFire = t
		}
	}
	return fired
}

func TestEndOfStreamFillsGaps(t *testing.T) {
	for events := 1; events <= 60; events++ {
		cfg := Config{Users: 3, Events: events, OutOfOrder: 0.33, Duplicates: 0.1, Malformed: 0.1, Seed: int64(events)}
		rs := generate(t, cfg)
		if len(rs) != events {
			t.Fatalf("Events %d: got %d records", events, len(rs))
		}
		o := NewOracle()
		for _, r := range rs {
			o.Observe(r)
		}
		if o.Buffered() != 0 {
			t.Fatalf("Events %d: %d events left behind a gap", events, o.Buffered())
		}
	}
}

func TestUnboundedAndMalformedOnly(t *testing.T) {
	g, err := New(Config{Malformed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		r, ok := g.Next()
		if !ok || r.Kind != Malformed {
			t.Fatalf("record %d: ok %v kind %s, want an endless malformed stream", i, ok, r.Kind)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	g, err := New(Config{
		Users: 10000, Seed: 1, Duplicates: 0.02, OutOfOrder: 0.05, Malformed: 0.01,
		Unsequenced: 0.05, CloudEvents: 0.2, Bursts: 0.01,
	})
	if err != nil {
		b.Fatal(err)
	}
	var bytes int
	for b.Loop() {
		r, _ := g.Next()
		bytes += len(r.Value)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(bytes)/float64(b.N), "value-B/record")
}

func ExampleGenerator() {
	g, _ := New(Config{Users: 3, Events: 4, Seed: 2, Malformed: 0.3})
	for r, ok := g.Next(); ok; r, ok = g.Next() {
		fmt.Printf("%s %s key=%s reason=%q\n%s\n", r.Kind, r.ID, r.Key, r.Reason, r.Value)
	}
	// Output:
	// valid evt-u-1-1 key=u-1 reason=""
	// {"id":"evt-u-1-1","type":"user.activity","version":1,"source":"loadgen","aggregateId":"u-1","sequence":1,"timestamp":"2026-11-22T10:00:01.815Z","data":{"userId":"u-1","action":"view","resource":"/product/43"},"metadata":{"correlationId":"corr-u-1-1"}}
	// valid evt-u-3-1 key=u-3 reason=""
	// {"id":"evt-u-3-1","type":"user.activity","version":1,"source":"loadgen","aggregateId":"u-3","sequence":1,"timestamp":"2026-11-22T10:00:02.189Z","data":{"userId":"u-3","action":"click","resource":"/search"}}
	// valid evt-u-2-1 key=u-2 reason=""
	// {"id":"evt-u-2-1","type":"user.activity","version":1,"source":"loadgen","aggregateId":"u-2","sequence":1,"timestamp":"2026-11-22T10:00:01.419Z","data":{"userId":"u-2","action":"view","resource":"/product/116"},"metadata":{"correlationId":"corr-u-2-1","traceId":"a207c44e379b5b8a6b48874e9446e571"}}
	// malformed bad-1 key=u-1 reason="malformed"
	// {"id":"bad-1","type":"user.activity","version":1,"aggregateId":"u-1","timestamp":"2026-11-22T10:00:01.815Z","da
}
