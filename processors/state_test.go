package processors

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// sampleState returns a state with maps, buckets and a fired anomaly.
func sampleState(t testing.TB) State {
	t.Helper()
	p := newProcessor(t, nil)
	var s State
	for i := range 40 {
		e := event(i, t0+int64(i%3)*1000)
		e.Sequence = int64(i + 1)
		e.Data.Resource = []string{"/a", "/b", ""}[i%3]
		p.Apply(&s, e)
	}
	if !s.anomalyFired || s.BucketCount() != 3 {
		t.Fatalf("sample state lacks an anomaly or buckets: %+v", s)
	}
	return s
}

func roundTrip(t testing.TB, s *State) State {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var d State
	if err := d.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	b2, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
	}
	return d
}

// sameState reports whether a and b hold the same aggregate and anomaly
// history (the buckets' spare capacity and offset aside).
func sameState(a, b *State) bool {
	return a.TotalActivity == b.TotalActivity &&
		slices.Equal(a.Actions(), b.Actions()) && slices.Equal(a.Resources(), b.Resources()) &&
		a.FirstActivityMillis == b.FirstActivityMillis && a.LastActivityMillis == b.LastActivityMillis &&
		a.LastSequence == b.LastSequence &&
		reflect.DeepEqual(a.buckets.counts(), b.buckets.counts()) &&
		a.anomalyFired == b.anomalyFired && a.lastAnomalyMillis == b.lastAnomalyMillis
}

// checkCounts fails t unless counts are sorted by key, each key once and
// non-empty, each count positive.
func checkCounts(t testing.TB, counts []topics.Count) {
	t.Helper()
	for i, c := range counts {
		if c.Key == "" || c.N <= 0 || (i > 0 && counts[i-1].Key >= c.Key) {
			t.Fatalf("counts not sorted, unique and positive at %d: %v", i, counts)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	for name, s := range map[string]State{
		"empty":         {},
		"sequence only": {LastSequence: 9},
		"with history":  sampleState(t),
		"negative times": func() State {
			var s State
			newProcessor(t, nil).Apply(&s, event(0, -1_500))
			return s
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			d := roundTrip(t, &s)
			if !sameState(&s, &d) {
				t.Errorf("round trip changed the state:\n%+v\n%+v", s, d)
			}
		})
	}
}

func TestStateMarshalIsDeterministic(t *testing.T) {
	s := sampleState(t)
	first, _ := s.MarshalBinary()
	for range 20 { // map iteration order varies from call to call
		b, _ := s.MarshalBinary()
		if !bytes.Equal(b, first) {
			t.Fatal("two encodings of one state differ")
		}
	}
	if first[0] != stateVersion {
		t.Errorf("first byte %d, want the version %d", first[0], stateVersion)
	}
}

func TestStateUnmarshalRejects(t *testing.T) {
	s := sampleState(t)
	good, _ := s.MarshalBinary()
	// encode builds a state's bytes by hand: header, actions, resources,
	// buckets.
	encode := func(total int64, actions [][2]any, buckets [][2]int64) []byte {
		b := []byte{stateVersion}
		b = binary.AppendVarint(b, total)
		b = binary.AppendVarint(b, t0)
		b = binary.AppendVarint(b, t0)
		b = binary.AppendVarint(b, 0)
		b = append(b, 0)
		b = binary.AppendUvarint(b, uint64(len(actions)))
		for _, a := range actions {
			b = binary.AppendUvarint(b, uint64(len(a[0].(string))))
			b = append(b, a[0].(string)...)
			b = binary.AppendUvarint(b, uint64(a[1].(int)))
		}
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, uint64(len(buckets)))
		for _, k := range buckets {
			b = binary.AppendVarint(b, k[0])
			b = binary.AppendUvarint(b, uint64(k[1]))
		}
		return b
	}
	if err := new(State).UnmarshalBinary(encode(3, [][2]any{{"a", 1}, {"b", 2}}, [][2]int64{{t0 / 1000, 3}})); err != nil {
		t.Fatalf("the hand encoder is wrong: %v", err)
	}
	tests := map[string][]byte{
		"empty":               nil,
		"unknown version":     append([]byte{2}, good[1:]...),
		"truncated":           good[:len(good)-1],
		"trailing bytes":      append(append([]byte{}, good...), 0),
		"keys not ascending":  encode(3, [][2]any{{"b", 1}, {"a", 2}}, nil),
		"duplicate keys":      encode(3, [][2]any{{"a", 1}, {"a", 2}}, nil),
		"empty key":           encode(3, [][2]any{{"", 1}}, nil),
		"zero count":          encode(3, [][2]any{{"a", 0}}, nil),
		"counts above total":  encode(2, [][2]any{{"a", 1}, {"b", 2}}, nil),
		"buckets above total": encode(2, nil, [][2]int64{{t0 / 1000, 3}}),
		"zero bucket":         encode(2, nil, [][2]int64{{t0 / 1000, 0}}),
		// the three 0 lengths at the end replaced by a huge actions length
		"huge length":             binary.AppendUvarint(bytes.Clone(encode(1, nil, nil)[:len(encode(1, nil, nil))-3]), 1<<40),
		"activity without events": encode(0, nil, nil),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			s := sampleState(t)
			before, _ := s.MarshalBinary()
			err := s.UnmarshalBinary(data)
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("UnmarshalBinary error = %v, want ErrCorruptState", err)
			}
			after, _ := s.MarshalBinary()
			if !bytes.Equal(before, after) {
				t.Error("a failed UnmarshalBinary changed the state")
			}
		})
	}
}

// fuzzStream turns fuzz bytes into a configuration and an event stream: 3
// bytes per event (time step, action, resource).
func fuzzStream(data []byte) (Config, []*topics.Event) {
	cfg := DefaultConfig()
	cfg.MaxResources = 3
	cfg.MaxActions = 2
	cfg.Milestones = MilestoneConfig{Every: 5, Thresholds: []int64{3, 7}}
	if len(data) > 0 {
		cfg.Anomaly.Window = []time.Duration{time.Second, 1500 * time.Millisecond, 4 * time.Second, 5 * time.Minute}[data[0]%4]
		cfg.Anomaly.MinEvents = int(data[0]/4) % 4
		data = data[1:]
	}
	wMs := cfg.Anomaly.Window.Milliseconds()
	cur := t0
	var events []*topics.Event
	for i := 0; i+2 < len(data); i += 3 {
		step := int64(int8(data[i]))
		switch {
		case step > 100: // jump forward a window or more
			cur += wMs * (step - 100)
		case step < -100: // jump back a window or more
			cur -= wMs * (-100 - step)
		default:
			cur += step * 97 // sub-second steps that cross seconds
		}
		events = append(events, &topics.Event{
			ID: "e", AggregateID: "u", Time: time.UnixMilli(cur),
			Sequence: int64(i/3) * int64(data[i+1]&1),
			Data: topics.Activity{
				Action:   []string{"", "a", "b\x01", "\"c\"", "d\u2028", OtherAction}[data[i+1]%6],
				Resource: []string{"", "/1", "/2", "/3", "/4", "/5", "/6", OtherResource}[data[i+2]%8],
			},
		})
	}
	return cfg, events
}

// FuzzApply checks the state's invariants after every event of random
// streams, compares with the reference model, and round-trips the state.
func FuzzApply(f *testing.F) {
	f.Add([]byte{0, 1, 1, 1, 0, 2, 2, 0, 3, 3})
	f.Add(bytes.Repeat([]byte{5, 0, 1, 2}, 40))
	f.Add(append([]byte{3}, bytes.Repeat([]byte{0, 1, 1, 0x90, 2, 2, 101, 3, 4}, 30)...))
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b := make([]byte, 1+3*r.IntN(100))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, events := fuzzStream(data)
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &refModel{cfg: cfg, actions: map[string]int64{}, resources: map[string]int64{}}
		maxBuckets := 2 * p.c.windowSecs
		var s State
		for i, e := range events {
			got := p.Apply(&s, e)
			if want := m.apply(e); !reflect.DeepEqual(got, want) {
				t.Fatalf("event %d: got %s, want %s", i, fxString(got), fxString(want))
			}
			if s.TotalActivity != int64(i+1) {
				t.Fatalf("TotalActivity %d after %d events", s.TotalActivity, i+1)
			}
			var sum int64
			for _, c := range s.Actions() {
				sum += c.N
			}
			if sum > s.TotalActivity {
				t.Fatalf("actions sum %d > total %d", sum, s.TotalActivity)
			}
			if len(s.Resources()) > cfg.MaxResources+1 {
				t.Fatalf("%d resource keys, cap %d", len(s.Resources()), cfg.MaxResources)
			}
			if len(s.Actions()) > cfg.MaxActions+1 {
				t.Fatalf("%d action keys, cap %d", len(s.Actions()), cfg.MaxActions)
			}
			if b, _ := s.MarshalBinary(); len(b) > cfg.MaxStateBytes(fuzzLabelBytes) {
				t.Fatalf("state of %d bytes, bound %d", len(b), cfg.MaxStateBytes(fuzzLabelBytes))
			}
			out := s.AppendAggregated(nil, topics.MetaFor(e, topics.AggregateID(e.AggregateID, e.ID)), e.AggregateID)
			if max := cfg.MaxAggregatedBytes(fuzzLimits); len(out) > max {
				t.Fatalf("aggregated output of %d bytes, bound %d", len(out), max)
			}
			checkCounts(t, s.Actions())
			checkCounts(t, s.Resources())
			if n := s.BucketCount(); int64(n) > maxBuckets {
				t.Fatalf("%d buckets, bound %d", n, maxBuckets)
			}
			if s.FirstActivityMillis > s.LastActivityMillis {
				t.Fatal("first activity after last")
			}
			d := roundTrip(t, &s)
			if !sameState(&s, &d) {
				t.Fatalf("round trip changed the state")
			}
		}
	})
}

// FuzzUnmarshalBinary checks that no input panics and that whatever decodes
// re-encodes to something that decodes to the same state.
func FuzzUnmarshalBinary(f *testing.F) {
	s := sampleState(f)
	good, _ := s.MarshalBinary()
	f.Add(good)
	f.Add([]byte{stateVersion})
	empty, _ := new(State).MarshalBinary()
	f.Add(empty)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s State
		if err := s.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error %v does not wrap ErrCorruptState", err)
			}
			return
		}
		d := roundTrip(t, &s)
		if !sameState(&s, &d) {
			t.Fatal("round trip changed a decoded state")
		}
		p := newProcessor(t, nil)
		p.Apply(&s, event(0, t0)) // a decoded state is usable
	})
}

// goldenState returns a state with escaped keys, the resource cap reached,
// buckets and a fired anomaly.
func goldenState(t testing.TB) State {
	t.Helper()
	p := newProcessor(t, func(c *Config) { c.MaxResources = 3; c.Anomaly.MinEvents = 3 })
	var s State
	actions := []string{"click", "view", "", "buy", "a \"q\"\n"}
	resources := []string{"/b", "/a", OtherResource, "", "/é\u2028", "/c", "/d", "/a"}
	for i := range 60 {
		e := event(i, t0+int64(i*i%7)*400-int64(i%4)*50)
		e.Sequence = int64(i + 1)
		e.Data.Action = actions[i%len(actions)]
		e.Data.Resource = resources[i%len(resources)]
		p.Apply(&s, e)
	}
	return s
}

// TestStateBinaryGolden pins the binary form: states stored by earlier
// versions must stay readable and re-encode to the same bytes.
func TestStateBinaryGolden(t *testing.T) {
	const golden = "0178d49196abc06880ad96abc0687801b8ab96abc068040661202271220a0c036275790c05636c69636b0c04766965770c04022f610f022f6208062fc3a9e280a807065f6f746865721603bef495b00d0601250111"
	s := goldenState(t)
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != golden {
		t.Fatalf("binary form changed:\ngot  %s\nwant %s", got, golden)
	}
	want, _ := hex.DecodeString(golden)
	var d State
	if err := d.UnmarshalBinary(want); err != nil {
		t.Fatal(err)
	}
	if !sameState(&s, &d) {
		t.Fatalf("decoded golden state differs:\n%+v\n%+v", d, s)
	}
	wantActions := []topics.Count{{Key: "a \"q\"\n", N: 12}, {Key: "buy", N: 12}, {Key: "click", N: 12}, {Key: "view", N: 12}}
	wantResources := []topics.Count{{Key: "/a", N: 15}, {Key: "/b", N: 8}, {Key: "/é\u2028", N: 7}, {Key: OtherResource, N: 22}}
	if !slices.Equal(d.Actions(), wantActions) || !slices.Equal(d.Resources(), wantResources) {
		t.Fatalf("decoded counts %v %v, want %v %v", d.Actions(), d.Resources(), wantActions, wantResources)
	}
}

func TestStateUnmarshalCopies(t *testing.T) {
	s := goldenState(t)
	data, _ := s.MarshalBinary()
	var d State
	if err := d.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'x'
	}
	if !sameState(&s, &d) {
		t.Fatal("the decoded state changed with the bytes it was decoded from")
	}
}

func TestApplyAllocatesOnlyForNewKeys(t *testing.T) {
	p := newProcessor(t, nil)
	e := event(0, t0)
	e.Data.Action, e.Data.Resource = "click", "/home"
	// A first action and a first resource: one slice each (the keys are
	// kept, not copied), plus the rate buckets.
	if n := testing.AllocsPerRun(100, func() {
		var s State
		p.Apply(&s, e)
	}); n > 3 {
		t.Errorf("first event of a user: %v allocations, want at most 3", n)
	}
	var s State
	p.Apply(&s, e)
	if n := testing.AllocsPerRun(100, func() { p.Apply(&s, e) }); n != 0 {
		t.Errorf("known action and resource: %v allocations, want 0", n)
	}
	// AllocsPerRun runs the function once more to warm up.
	if s.Action("click") != 102 || s.Resource("/home") != 102 {
		t.Errorf("counts %d, %d; want 102", s.Action("click"), s.Resource("/home"))
	}
}

func TestStateAllocations(t *testing.T) {
	s := goldenState(t)
	data, _ := s.MarshalBinary()
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf, _ = s.AppendBinary(buf[:0]) }); n != 0 {
		t.Errorf("AppendBinary into a buffer with room: %v allocations, want 0", n)
	}
	m := topics.MetaFor(event(0, t0), topics.AggregateID("u-1", "e-0"))
	if n := testing.AllocsPerRun(100, func() { buf = s.AppendAggregated(buf[:0], m, "u-1") }); n != 0 {
		t.Errorf("AppendAggregated into a buffer with room: %v allocations, want 0", n)
	}
	// The keys (one string), the actions, the resources and the buckets.
	var d State
	if n := testing.AllocsPerRun(100, func() {
		if err := d.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
	}); n != 4 {
		t.Errorf("UnmarshalBinary: %v allocations, want 4", n)
	}
}

// nastyKeys need escaping or replacing in JSON.
var nastyKeys = []string{`"quoted"`, `back\slash`, "ctl\x00\x1f\n", "sep\u2028\u2029", "bad\xff\xfe", "trunc\xe6\x97", "日本 😀", "<html>&"}

// TestAppendAggregatedMatchesSnapshot compares State.AppendAggregated with
// topics.AppendAggregated of Snapshot after every event of random streams,
// some of whose keys need escaping, and after binary round trips.
func TestAppendAggregatedMatchesSnapshot(t *testing.T) {
	streams := 500
	if testing.Short() || raceEnabled {
		streams = 50
	}
	r := rand.New(rand.NewPCG(11, 12))
	buf := []byte("prefix")
	for stream := range streams {
		cfg := randomConfig(r)
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		user := []string{"u-7", nastyKeys[r.IntN(len(nastyKeys))]}[r.IntN(2)]
		var s State
		check := func(i int, e *topics.Event) {
			t.Helper()
			m := topics.MetaFor(e, topics.AggregateID(user, e.ID))
			d := s.Snapshot(user)
			want := topics.AppendAggregated([]byte("prefix"), m, &d)
			buf = s.AppendAggregated(buf[:len("prefix")], m, user)
			if !bytes.Equal(buf, want) {
				t.Fatalf("stream %d, event %d:\ngot  %s\nwant %s", stream, i, buf, want)
			}
		}
		if r.IntN(10) == 0 { // a user that only advanced its sequence
			s.AdvanceSequence(3)
			check(-1, event(0, t0))
		}
		for i, e := range randomStream(r, 1+r.IntN(150), cfg.Anomaly.Window) {
			if k := r.IntN(10); k == 0 {
				e.Data.Action = nastyKeys[r.IntN(len(nastyKeys))]
			} else if k == 1 {
				e.Data.Resource = nastyKeys[r.IntN(len(nastyKeys))]
			}
			p.Apply(&s, e)
			check(i, e)
			if r.IntN(10) == 0 {
				s = roundTrip(t, &s)
				check(i, e)
			}
		}
	}
}

// TestStatePark: a parked state round-trips with its park; an unparked
// state encodes exactly as before parking existed (the flag bit unset), so
// stored states of earlier releases decode unchanged; a bad park is
// rejected.
func TestStatePark(t *testing.T) {
	s := sampleState(t)
	before, _ := s.MarshalBinary()
	s.Park = &Park{Partition: 3, Offset: 41, HeldThrough: 57, Reason: "internal_error"}
	parked := roundTrip(t, &s)
	if parked.Park == nil || *parked.Park != *s.Park || !sameState(&s, &parked) {
		t.Fatalf("round trip: %+v, want %+v", parked.Park, s.Park)
	}
	s.Park = nil
	after, _ := s.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("an unparked state encodes differently once a park was set and cleared")
	}
	var old State
	if err := old.UnmarshalBinary(before); err != nil || old.Park != nil {
		t.Fatalf("an encoding without the park flag: %v, park %+v", err, old.Park)
	}
	newUser := State{Park: &Park{Offset: 0, HeldThrough: 0, Reason: "output_too_large"}}
	if d := roundTrip(t, &newUser); d.Park == nil || d.Park.Reason != "output_too_large" {
		t.Fatalf("a user parked by its first event: %+v", d.Park)
	}
	bad := State{Park: &Park{Offset: 9, HeldThrough: 8}}
	b, _ := bad.MarshalBinary()
	if err := new(State).UnmarshalBinary(b); !errors.Is(err, ErrCorruptState) {
		t.Fatalf("held-through below the park offset decoded: %v", err)
	}
	if err := new(State).UnmarshalBinary(append(b[:len(b)-1:len(b)-1], 0xff)); err == nil {
		t.Fatal("a corrupted tail after a park decoded")
	}
}
