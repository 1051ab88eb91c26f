package loadgen

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/topics"
)

// Every string the generator writes into JSON is plain ASCII without quotes
// or backslashes, so it is written without escaping.

// event generates the next new valid event of user ui.
func (g *Generator) event(ui int) Record {
	u := &g.users[ui]
	u.n++
	g.advance(ui)
	r := Record{Kind: Valid, User: u.id, Key: u.key}

	b := append(append(append(g.buf[:0], "evt-"...), u.id...), '-')
	if g.cfg.Unsequenced > 0 && g.rng.Float64() < g.cfg.Unsequenced {
		u.unseq++
		b = strconv.AppendInt(append(b, 'n'), u.unseq, 10)
	} else {
		u.seq++
		r.Sequence = u.seq
		b = strconv.AppendInt(b, u.seq, 10)
	}
	id := g.keep(b)
	r.ID = string(id)
	action := actionFor(g.rng.IntN(100))
	resource := g.resources[g.rng.IntN(len(g.resources))]
	if g.rng.IntN(10) < 4 {
		resource = g.resources[g.rng.IntN(5)] // the main pages are popular
	}
	var corr, trace []byte
	if g.rng.IntN(2) == 0 {
		corr = g.keep(strconv.AppendInt(append(append(append(g.buf[:0], "corr-"...), u.id...), '-'), int64((u.n-1)/5+1), 10))
	}
	if g.rng.IntN(10) < 3 {
		trace = g.keep(appendHex(appendHex(g.buf[:0], g.rng.Uint64()), g.rng.Uint64()|1))
	}

	if g.cfg.CloudEvents > 0 && g.rng.Float64() < g.cfg.CloudEvents {
		r.Headers = make([]kgo.RecordHeader, 0, 12)
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: "ce_specversion", Value: g.ce.spec},
			kgo.RecordHeader{Key: "ce_id", Value: id},
			kgo.RecordHeader{Key: "ce_type", Value: g.ce.typ},
			kgo.RecordHeader{Key: "ce_source", Value: g.ce.source},
			kgo.RecordHeader{Key: "ce_time", Value: g.keep(g.appendTime(g.buf[:0], u.clock))},
			kgo.RecordHeader{Key: "ce_aggregateid", Value: u.key},
		)
		if r.Sequence > 0 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "ce_sequence", Value: g.keep(strconv.AppendInt(g.buf[:0], r.Sequence, 10))})
		}
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: "ce_schemaversion", Value: g.ce.schema},
			kgo.RecordHeader{Key: "content-type", Value: g.ce.contentType},
		)
		if corr != nil {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "ce_correlationid", Value: corr})
			if trace != nil {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: "ce_traceid", Value: trace})
			}
		}
		r.Value = g.keep(appendData(g.buf[:0], u.id, action, resource))
	} else {
		v := append(append(g.buf[:0], `{"id":"`...), id...)
		v = append(v, `","type":"user.activity","version":1,"source":"loadgen"`...)
		if g.rng.IntN(10) != 0 { // else the key alone carries the aggregate
			v = append(append(append(v, `,"aggregateId":"`...), u.id...), '"')
		}
		if r.Sequence > 0 {
			v = strconv.AppendInt(append(v, `,"sequence":`...), r.Sequence, 10)
		}
		v = append(g.appendTime(append(v, `,"timestamp":"`...), u.clock), '"')
		v = appendData(append(v, `,"data":`...), u.id, action, resource)
		if corr != nil {
			v = append(append(append(v, `,"metadata":{"correlationId":"`...), corr...), '"')
			if trace != nil {
				v = append(append(append(v, `,"traceId":"`...), trace...), '"')
			}
			v = append(v, '}')
		}
		r.Value = g.keep(append(v, '}'))
	}
	if trace != nil {
		tp := append(append(append(g.buf[:0], "00-"...), trace...), '-')
		tp = append(appendHex(tp, g.rng.Uint64()|1), "-01"...)
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "traceparent", Value: g.keep(tp)})
	}
	return r
}

// actionFor maps a number in [0,100) to an action: view 40%, click 30%,
// search 15%, login 10%, purchase 5%.
func actionFor(x int) string {
	switch {
	case x < 40:
		return "view"
	case x < 70:
		return "click"
	case x < 85:
		return "search"
	case x < 95:
		return "login"
	}
	return "purchase"
}

func appendData(b []byte, userID, action, resource string) []byte {
	b = append(append(append(b, `{"userId":"`...), userID...), `","action":"`...)
	b = append(append(append(b, action...), `","resource":"`...), resource...)
	return append(b, `"}`...)
}

// appendHex appends x as 16 lower-case hex digits.
func appendHex(b []byte, x uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[x>>shift&0xf])
	}
	return b
}

// The defects of malformed records, in the order they cycle.
const (
	badTruncated = iota
	badArray
	badNotUTF8
	badMissingID
	badNumericID
	badMissingType
	badSequenceZero
	badSequenceNegative
	badSequenceString
	badTimestamp
	badDataString
	badMetadataArray
	badVersion
	badNoAggregate
	badCESequence
	badCESpecVersion
	badOversized // only with Config.Oversized
	numBad
)

// envelope holds the raw JSON of an envelope's members; "" omits one.
type envelope struct{ id, typ, version, agg, seq, ts, data, meta string }

func (e envelope) append(b []byte) []byte {
	b = append(b, '{')
	first := true
	for _, m := range [...]struct{ k, v string }{
		{"id", e.id}, {"type", e.typ}, {"version", e.version}, {"aggregateId", e.agg},
		{"sequence", e.seq}, {"timestamp", e.ts}, {"data", e.data}, {"metadata", e.meta},
	} {
		if m.v == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(append(append(append(b, '"'), m.k...), `":`...), m.v...)
	}
	return append(b, '}')
}

// malformed generates the next malformed record: a valid-looking event of
// a random user with exactly one defect.
func (g *Generator) malformed() Record {
	g.malformedN++
	kinds := int64(badOversized)
	if g.cfg.Oversized {
		kinds = numBad
	}
	u := &g.users[g.rng.IntN(len(g.users))]
	id := "bad-" + strconv.FormatInt(g.malformedN, 10)
	r := Record{Kind: Malformed, ID: id, User: u.id, Key: u.key}
	ts := string(g.appendTime(nil, u.clock))
	data := string(appendData(nil, u.id, "view", "/home"))
	e := envelope{
		id: `"` + id + `"`, typ: `"user.activity"`, version: "1", agg: `"` + u.id + `"`,
		ts: `"` + ts + `"`, data: data,
	}
	var v []byte
	switch (g.malformedN - 1) % kinds {
	case badTruncated:
		r.Reason = topics.ReasonMalformed
		v = e.append(nil)
		v = v[:len(v)*2/3] // a proper prefix of an object is never JSON
	case badArray:
		r.Reason = topics.ReasonMalformed
		v = append(e.append([]byte{'['}), ']')
	case badNotUTF8:
		r.Reason = topics.ReasonMalformed
		e.data = `{"userId":"` + u.id + `","action":"view","resource":"/home\xff"}`
	case badMissingID:
		r.Reason = topics.ReasonInvalidID
		e.id = ""
	case badNumericID:
		r.Reason = topics.ReasonInvalidID
		e.id = strconv.FormatInt(g.malformedN, 10)
	case badMissingType:
		r.Reason = topics.ReasonInvalidType
		e.typ = ""
	case badSequenceZero:
		r.Reason = topics.ReasonInvalidSequence
		e.seq = "0"
	case badSequenceNegative:
		r.Reason = topics.ReasonInvalidSequence
		e.seq = "-3"
	case badSequenceString:
		r.Reason = topics.ReasonInvalidSequence
		e.seq = `"7"`
	case badTimestamp:
		r.Reason = topics.ReasonInvalidTimestamp
		e.ts = `"22/11/2026 10:00:00"`
	case badDataString:
		r.Reason = topics.ReasonInvalidData
		e.data = `"view /home"`
	case badMetadataArray:
		r.Reason = topics.ReasonInvalidMetadata
		e.meta = `["corr-1"]`
	case badVersion:
		r.Reason = topics.ReasonUnknownVersion
		e.version = "99"
	case badNoAggregate:
		r.Reason = topics.ReasonMissingAggregateID
		e.agg, r.Key, r.User = "", nil, ""
	case badCESequence, badCESpecVersion:
		spec, seq := "1.0", "seven"
		r.Reason = topics.ReasonInvalidSequence
		if (g.malformedN-1)%kinds == badCESpecVersion {
			spec, seq = "0.3", "1"
			r.Reason = topics.ReasonInvalidSpecVersion
		}
		r.Headers = []kgo.RecordHeader{
			{Key: "ce_specversion", Value: []byte(spec)},
			{Key: "ce_id", Value: []byte(id)},
			{Key: "ce_type", Value: g.ce.typ},
			{Key: "ce_source", Value: g.ce.source},
			{Key: "ce_time", Value: []byte(ts)},
			{Key: "ce_aggregateid", Value: u.key},
			{Key: "ce_sequence", Value: []byte(seq)},
		}
		v = []byte(data)
	case badOversized:
		r.Reason = topics.ReasonTooLarge
		pad := make([]byte, topics.DefaultMaxBytes)
		for i := range pad {
			pad[i] = 'x'
		}
		e.data = `{"userId":"` + u.id + `","action":"view","resource":"/` + string(pad) + `"}`
	}
	if v == nil {
		v = e.append(nil)
	}
	r.Value = v
	return r
}
