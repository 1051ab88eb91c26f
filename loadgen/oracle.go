package loadgen

import (
	"maps"
	"slices"

	"github.com/streamworker/streamworker/topics"
)

// Oracle knows what a correct worker makes of a record stream: for each
// user, the unique valid events in the order they are applied, and the
// numbers of malformed records and of duplicates. Tests feed it every
// generated record and apply the processors to Events(user) in order to
// compute the expected final state.
//
// It decodes each record with topics.Decoder, so its events are exactly
// what the worker sees, and applies them as docs/contract.md ("Sequencing") says with no
// gap ever given up: a sequenced event when its predecessor has been
// applied (held in a buffer until then), an unsequenced one on arrival.
// That arrival order is the order of Observe calls. The Oracle assumes the
// order a partition gives: one user's records are in one partition (the key
// is the user ID and the murmur2 partitioner maps a key to one partition)
// and in emission order (kgo's idempotent producer keeps it).
//
// An Oracle is not safe for concurrent use.
type Oracle struct {
	dec        topics.Decoder
	seen       map[string]struct{}
	users      map[string]*oracleUser
	valid      int
	duplicates int
	malformed  int
}

type oracleUser struct {
	next     int64 // the sequence applied next
	events   []topics.Event
	buffered map[int64]topics.Event
}

// NewOracle returns an empty Oracle.
func NewOracle() *Oracle {
	return &Oracle{seen: make(map[string]struct{}), users: make(map[string]*oracleUser)}
}

// Observe takes the next record of the stream. A record the decoder rejects
// counts as malformed, one whose event ID was seen before as a duplicate.
// A sequenced event below the next expected sequence (late) is not
// applied; the generator never produces one.
func (o *Oracle) Observe(r Record) {
	tr := r.TopicsRecord()
	e, err := o.dec.Decode(&tr)
	if err != nil {
		o.malformed++
		return
	}
	if _, dup := o.seen[e.ID]; dup {
		o.duplicates++
		return
	}
	o.seen[e.ID] = struct{}{}
	o.valid++
	u := o.users[e.AggregateID]
	if u == nil {
		u = &oracleUser{next: 1}
		o.users[e.AggregateID] = u
	}
	switch {
	case e.Sequence == 0:
		u.events = append(u.events, e)
	case e.Sequence == u.next:
		u.events = append(u.events, e)
		u.next++
		for {
			b, ok := u.buffered[u.next]
			if !ok {
				break
			}
			delete(u.buffered, u.next)
			u.events = append(u.events, b)
			u.next++
		}
	case e.Sequence > u.next:
		if u.buffered == nil {
			u.buffered = make(map[int64]topics.Event)
		}
		u.buffered[e.Sequence] = e
	}
}

// Users returns the IDs of the users with at least one valid event, sorted.
func (o *Oracle) Users() []string {
	return slices.Sorted(maps.Keys(o.users))
}

// Events returns user's unique valid events in application order. Events
// still waiting for a missing predecessor are not included. The slice is a
// copy.
func (o *Oracle) Events(user string) []topics.Event {
	if u := o.users[user]; u != nil {
		return slices.Clone(u.events)
	}
	return nil
}

// Buffered returns the number of events still waiting for a missing
// predecessor; 0 once a whole generated stream has been observed.
func (o *Oracle) Buffered() int {
	n := 0
	for _, u := range o.users {
		n += len(u.buffered)
	}
	return n
}

// Valid returns the number of unique valid events observed.
func (o *Oracle) Valid() int { return o.valid }

// Duplicates returns the number of records that repeated an observed
// event ID.
func (o *Oracle) Duplicates() int { return o.duplicates }

// Malformed returns the number of records the decoder rejected.
func (o *Oracle) Malformed() int { return o.malformed }
