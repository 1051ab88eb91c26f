package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/topics"
)

// Kind says what a Record is.
type Kind uint8

// Record kinds.
const (
	// Valid is a new valid event, emitted for the first time.
	Valid Kind = iota
	// Duplicate re-emits an earlier Valid record byte for byte.
	Duplicate
	// Malformed is a record that topics.Decoder rejects.
	Malformed
)

// String returns "valid", "duplicate" or "malformed".
func (k Kind) String() string {
	switch k {
	case Valid:
		return "valid"
	case Duplicate:
		return "duplicate"
	case Malformed:
		return "malformed"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Record is one generated Kafka record and what the generator knows of it.
// Its byte slices may be shared with other records (a duplicate shares its
// original's) and must not be modified.
type Record struct {
	Key     []byte
	Value   []byte
	Headers []kgo.RecordHeader
	Kind    Kind
	// ID is the event ID. For a Malformed record it is a label unique in
	// the stream ("bad-<n>") that the value may not carry.
	ID string
	// User is the user (aggregate) ID, also the key; "" for the malformed
	// record that has no key.
	User string
	// Sequence is the event's sequence number; 0 when it has none.
	Sequence int64
	// Reason is, for a Malformed record, the reason topics.Decoder gives.
	Reason topics.Reason
}

// TopicsRecord returns r as the decoder's input. The record timestamp is
// left zero: every valid generated event carries its own time.
func (r *Record) TopicsRecord() topics.Record {
	var hs []topics.Header
	if len(r.Headers) > 0 {
		hs = make([]topics.Header, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = topics.Header(h)
		}
	}
	return topics.Record{Key: r.Key, Value: r.Value, Headers: hs}
}

// Generation constants.
const (
	ringSize     = 1024 // recent valid records a duplicate is drawn from
	burstAfter   = 10   // quiet events of a burst user before its burst
	burstLen     = 30   // events in a burst
	quietFactor  = 120  // a burst user's spacing outside its burst, in Steps
	burstDivisor = 10   // a burst's spacing is Step/burstDivisor
	maxReorder   = 3    // a held event waits for 1..maxReorder newer ones
	slabSize     = 64 << 10
)

type burstState uint8

const (
	noBurst burstState = iota
	burstPending
	burstActive
	burstDone
)

// user is the generation state of one user.
type user struct {
	id         string
	key        []byte
	seq, unseq int64 // last sequence assigned; unsequenced events so far
	clock      int64 // milliseconds after Start of the latest event
	n          int32 // new events so far
	burstLeft  int32
	heldLeft   int32 // newer events to emit before the held one; 0: none held
	burst      burstState
}

// hold records when an event was held back, to release it if its user
// stays quiet.
type hold struct {
	user int32
	seq  int64
	at   int64 // records emitted when it was held
}

// Generator produces the record stream a Config describes. It is not safe
// for concurrent use.
type Generator struct {
	cfg    Config
	rng    *rand.Rand
	stepMs float64
	users  []user
	// cdf is the cumulative Zipf weight of the users, in user order, over
	// a seeded ranking: the skewed half of the picks.
	cdf        []float64
	introduced int     // users given their first event by the introduction
	bursting   []int32 // users in their burst, boosted by pick
	resources  []string

	pending  []Record // ready to emit, FIFO from pendHead
	pendHead int
	held     map[int32]Record // the events held back, by user
	holds    []hold           // FIFO from holdHead; entries of released events are stale
	holdHead int
	numHeld  int
	maxHold  int64
	holdP    float64  // probability of holding an eligible event back
	ring     []Record // recent valid records, for duplicates
	ringLast int

	emitted    int64 // records returned by Next
	newEvents  int64
	malformedN int64
	hostileN   int64

	startMs int64         // Start in Unix milliseconds
	dates   [64]dateCache // formatted dates by day, direct-mapped
	slab    []byte        // backing store of record bytes, handed out in pieces
	buf     []byte        // scratch
	ce      ceConst
}

// dateCache holds the formatted date of one day.
type dateCache struct {
	day  int64 // days since the Unix epoch
	date []byte
}

// ceConst holds the constant CloudEvents header values.
type ceConst struct{ spec, typ, source, schema, contentType []byte }

// New returns a Generator for cfg, with defaults applied to its zero
// fields. It fails with an error wrapping ErrInvalidConfig if cfg is not
// valid.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := cfg.Users
	g := &Generator{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6c6f616467656e)),
		stepMs:  float64(cfg.Step) / 1e6,
		startMs: cfg.Start.UnixMilli(),
		users:   make([]user, n),
		cdf:     make([]float64, n),
		ring:    make([]Record, 0, ringSize),
		held:    make(map[int32]Record),
		buf:     make([]byte, 0, 1024),
		ce: ceConst{
			spec: []byte("1.0"), typ: []byte(topics.TypeUserActivity), source: []byte("loadgen"),
			schema: []byte("1"), contentType: []byte("application/json"),
		},
	}
	for i := range g.users {
		id := cfg.UserPrefix + strconv.Itoa(i+1)
		g.users[i] = user{id: id, key: []byte(id), clock: int64(g.rng.Float64() * g.stepMs)}
	}
	var sum float64
	for i, rank := range g.rng.Perm(n) {
		sum += 1 / float64(rank+1)
		g.cdf[i] = sum
	}
	for _, i := range g.rng.Perm(n)[:int(math.Round(cfg.Bursts*float64(n)))] {
		g.users[i].burst = burstPending
	}
	// A held event makes its user's next 1 to 3 events (2 on average)
	// ineligible, so hold an eligible one with the probability q that makes
	// q(1-2f) = f for the wanted fraction f.
	if f := cfg.OutOfOrder; f > 0 {
		g.holdP = 1
		if f < 1.0/3 {
			g.holdP = f / (1 - 2*f)
		}
	}
	g.maxHold = max(8*int64(n), 64)
	if cfg.Rate > 0 {
		g.maxHold = min(g.maxHold, max(1, int64(cfg.Rate*10)))
	}
	g.resources = []string{"/home", "/search", "/cart", "/checkout", "/account"}
	for i := 1; i <= 200; i++ {
		g.resources = append(g.resources, "/product/"+strconv.Itoa(i))
	}
	for i := 1; i <= 20; i++ {
		g.resources = append(g.resources, "/category/"+strconv.Itoa(i))
	}
	return g, nil
}

// Config returns the generator's config, with defaults applied.
func (g *Generator) Config() Config { return g.cfg }

// Users returns every user ID, in order.
func (g *Generator) Users() []string {
	ids := make([]string, len(g.users))
	for i := range g.users {
		ids[i] = g.users[i].id
	}
	return ids
}

// BurstUsers returns the IDs of the users chosen for an anomaly burst, in
// order.
func (g *Generator) BurstUsers() []string {
	var ids []string
	for i := range g.users {
		if g.users[i].burst != noBurst {
			ids = append(ids, g.users[i].id)
		}
	}
	return ids
}

// Next returns the next record, or false once Config.Events records have
// been returned.
func (g *Generator) Next() (Record, bool) {
	if g.cfg.Events > 0 && g.emitted >= int64(g.cfg.Events) {
		return Record{}, false
	}
	for g.pendHead == len(g.pending) {
		g.pending, g.pendHead = g.pending[:0], 0
		g.step()
	}
	r := g.pending[g.pendHead]
	g.pending[g.pendHead] = Record{}
	g.pendHead++
	g.emitted++
	return r, true
}

// step adds one or two records to pending.
func (g *Generator) step() {
	if g.cfg.Events > 0 && int64(g.cfg.Events)-g.emitted <= int64(g.numHeld) {
		g.releaseOldest(0) // the stream ends: fill every gap
		return
	}
	if g.releaseOldest(g.maxHold) {
		return
	}
	switch x := g.rng.Float64(); {
	case x < g.cfg.Hostile:
		g.hostile()
	case x < g.cfg.Hostile+g.cfg.Malformed:
		g.emit(g.malformed())
	case x < g.cfg.Hostile+g.cfg.Malformed+g.cfg.Duplicates && len(g.ring) > 0:
		r := g.ring[g.ringLast]
		if g.rng.IntN(4) != 0 {
			r = g.ring[g.rng.IntN(len(g.ring))]
		}
		r.Kind = Duplicate
		g.emit(r)
	default:
		g.newEvent()
	}
}

// emit queues r; a Valid one also becomes a duplicate candidate.
func (g *Generator) emit(r Record) {
	g.pending = append(g.pending, r)
	if r.Kind != Valid {
		return
	}
	if len(g.ring) < ringSize {
		g.ring = append(g.ring, r)
		g.ringLast = len(g.ring) - 1
		return
	}
	g.ringLast = (g.ringLast + 1) % ringSize
	g.ring[g.ringLast] = r
}

// newEvent generates a user's next event and emits it, or holds it back.
func (g *Generator) newEvent() {
	ui := g.pick()
	u := &g.users[ui]
	r := g.event(ui)
	g.newEvents++
	if r.Sequence > 0 && u.heldLeft == 0 && g.holdP > 0 && g.rng.Float64() < g.holdP {
		g.held[int32(ui)] = r
		u.heldLeft = 1 + g.rng.Int32N(maxReorder)
		if g.holdHead > 0 && 2*g.holdHead >= len(g.holds) {
			g.holds = g.holds[:copy(g.holds, g.holds[g.holdHead:])]
			g.holdHead = 0
		}
		g.holds = append(g.holds, hold{user: int32(ui), seq: r.Sequence, at: g.emitted})
		g.numHeld++
		return
	}
	g.emit(r)
	if u.heldLeft > 0 {
		if u.heldLeft--; u.heldLeft == 0 {
			g.release(int32(ui))
		}
	}
}

// release emits user ui's held event.
func (g *Generator) release(ui int32) {
	r := g.held[ui]
	delete(g.held, ui)
	g.users[ui].heldLeft = 0
	g.numHeld--
	g.emit(r)
}

// releaseOldest releases the longest-held event if it has been held for at
// least minAge records, and reports whether it did.
func (g *Generator) releaseOldest(minAge int64) bool {
	for g.holdHead < len(g.holds) {
		h := g.holds[g.holdHead]
		if g.emitted-h.at < minAge {
			return false // and every later hold is younger
		}
		g.holdHead++
		if r, ok := g.held[h.user]; !ok || r.Sequence != h.seq {
			continue // released already
		}
		g.release(h.user)
		return true
	}
	return false
}

// pick chooses the user of the next new event: half of the picks go to a
// user in its burst while there is one; every user is introduced by every
// other pick until all have had one; the rest are half uniform, half
// Zipf-skewed.
func (g *Generator) pick() int {
	if len(g.bursting) > 0 && g.rng.IntN(2) == 0 {
		return int(g.bursting[0])
	}
	if g.introduced < len(g.users) && g.newEvents%2 == 0 {
		g.introduced++
		return g.introduced - 1
	}
	if g.rng.IntN(2) == 0 {
		return g.rng.IntN(len(g.users))
	}
	i, _ := slices.BinarySearch(g.cdf, g.rng.Float64()*g.cdf[len(g.cdf)-1])
	return min(i, len(g.cdf)-1)
}

// advance moves user ui's clock to the time of its next event.
func (g *Generator) advance(ui int) {
	u := &g.users[ui]
	mult := 1.0
	switch u.burst {
	case burstPending:
		mult = quietFactor
		if u.n > burstAfter {
			u.burst, u.burstLeft = burstActive, burstLen
			g.bursting = append(g.bursting, int32(ui))
		}
	case burstDone:
		mult = quietFactor
	}
	if u.burst == burstActive {
		mult = 1.0 / burstDivisor
		if u.burstLeft--; u.burstLeft == 0 {
			u.burst = burstDone
			g.bursting = slices.DeleteFunc(g.bursting, func(i int32) bool { return int(i) == ui })
		}
	}
	u.clock += max(1, int64(g.stepMs*mult*(0.5+g.rng.Float64())))
}

// appendTime appends the time ms milliseconds after Start in timeLayout,
// at a fraction of the cost of time.Time.AppendFormat.
func (g *Generator) appendTime(b []byte, ms int64) []byte {
	const msPerDay = 24 * 60 * 60 * 1000
	abs := g.startMs + ms
	day := abs / msPerDay
	if abs < 0 && abs%msPerDay != 0 {
		day-- // floor
	}
	c := &g.dates[day&63]
	if c.date == nil || c.day != day {
		c.day = day
		c.date = time.UnixMilli(day*msPerDay).UTC().AppendFormat(c.date[:0], "2006-01-02T")
	}
	r := abs - day*msPerDay
	h, m, s, milli := r/3_600_000, r/60_000%60, r/1000%60, r%1000
	return append(append(b, c.date...),
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':',
		byte('0'+s/10), byte('0'+s%10), '.',
		byte('0'+milli/100), byte('0'+milli/10%10), byte('0'+milli%10), 'Z')
}

// keep copies b into the slab and returns the copy.
func (g *Generator) keep(b []byte) []byte {
	if len(b) > cap(g.slab)-len(g.slab) {
		if len(b) > slabSize/8 {
			return append([]byte(nil), b...)
		}
		g.slab = make([]byte, 0, slabSize)
	}
	n := len(g.slab)
	g.slab = append(g.slab, b...)
	return g.slab[n:len(g.slab):len(g.slab)]
}
