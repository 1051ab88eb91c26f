package loadgen

// Hostile records: what an attacker who controls a producer sends
// (docs/contract.md, "Limits"). Each is either a valid event of its own
// user, whose IDs hold the characters that once broke the Redis key layout,
// or a record the decoder must reject at its bounds. Hostile records never
// touch the users of the normal workload: their users are named apart
// ("h~..."), so a run with them must leave every normal user exactly as the
// same run without them.

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/topics"
)

// The hostile categories, taken in turn.
const (
	hostileKeyInjection    = iota // a user and an event ID that once shared a dedupe key
	hostileMarkOnState            // a mark key that once was another user's state key
	hostileHugeID                 // an event ID over input.max_id_bytes
	hostileHugeAggregate          // an aggregate ID over input.max_aggregate_id_bytes
	hostileHugeTraceparent        // a traceparent with a valid prefix and a long tail
	hostileSpoofedDLQ             // a malformed value that carries dlq.reason: late
	hostileSequenceMax            // a sequence beyond the largest one (2^53-1)
	hostileManyActions            // one more distinct action for a user who has too many
	hostileLongLabel              // an action over input.max_label_bytes
	hostileOddBytes               // IDs with NUL, braces, percent signs, the escape character, non-ASCII
	numHostile
)

// hostileBig is the size of the oversized fields: well over every bound,
// well under what a broker accepts by default.
const hostileBig = 300_000

// hostile emits the next hostile record (two for a key-injection pair).
func (g *Generator) hostile() {
	g.hostileN++
	n := strconv.FormatInt(g.hostileN, 10)
	ts := string(g.appendTime(nil, g.hostileN*1000))
	valid := func(id, user string, action string, hs ...kgo.RecordHeader) Record {
		v, _ := json.Marshal(map[string]any{"id": id, "type": topics.TypeUserActivity, "aggregateId": user,
			"timestamp": ts, "data": map[string]string{"action": action, "resource": "/h"}})
		return Record{Kind: Valid, ID: id, User: user, Key: []byte(user), Value: v, Headers: hs}
	}
	bad := func(reason topics.Reason, user, value string, hs ...kgo.RecordHeader) Record {
		return Record{Kind: Malformed, ID: "hostile-" + n, User: user, Key: []byte(user), Value: []byte(value),
			Headers: hs, Reason: reason}
	}
	switch (g.hostileN - 1) % numHostile {
	case hostileKeyInjection:
		u := "h~a" + n
		g.emit(valid("b}:seen:c"+n, u, "click"))
		g.emit(valid("c"+n, u+"}:seen:b", "click"))
	case hostileMarkOnState:
		u := "h~v" + n
		g.emit(valid("x"+n+"}:state", u, "click"))
		g.emit(valid("e"+n, u+"}:seen:x"+n, "click"))
	case hostileHugeID:
		g.emit(bad(topics.ReasonInvalidID, "h~i", `{"id":"`+strings.Repeat("i", hostileBig)+`","type":"user.activity","aggregateId":"h~i","timestamp":"`+ts+`"}`))
	case hostileHugeAggregate:
		u := strings.Repeat("u", hostileBig)
		g.emit(bad(topics.ReasonInvalidAggregateID, "h~g", `{"id":"hg`+n+`","type":"user.activity","aggregateId":"`+u+`","timestamp":"`+ts+`"}`))
	case hostileHugeTraceparent:
		tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" + strings.Repeat("x", hostileBig)
		g.emit(valid("ht"+n, "h~t", "click", kgo.RecordHeader{Key: "traceparent", Value: []byte(tp)}))
	case hostileSpoofedDLQ:
		g.emit(bad(topics.ReasonMalformed, "h~d", "{not json", kgo.RecordHeader{Key: "dlq.reason", Value: []byte("late")}))
	case hostileSequenceMax:
		g.emit(bad(topics.ReasonInvalidSequence, "h~q", `{"id":"hq`+n+`","type":"user.activity","aggregateId":"h~q","sequence":9223372036854775807,"timestamp":"`+ts+`"}`))
	case hostileManyActions:
		g.emit(valid("hm"+n, "h~m", "act-"+n))
	case hostileLongLabel:
		g.emit(bad(topics.ReasonInvalidData, "h~l", `{"id":"hl`+n+`","type":"user.activity","aggregateId":"h~l","timestamp":"`+ts+`","data":{"action":"`+strings.Repeat("a", hostileBig)+`"}}`))
	case hostileOddBytes:
		g.emit(valid("id\x00{%~}"+n+"\u00e9", "h~\x00{%7D~}é"+n, "click"))
	}
}
