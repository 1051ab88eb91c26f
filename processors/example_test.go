package processors_test

import (
	"fmt"
	"time"

	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/topics"
)

func ExampleProcessor_Apply() {
	p, err := processors.New(processors.DefaultConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	var s processors.State // one user's state, loaded from the state store
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		e := &topics.Event{
			ID:          fmt.Sprintf("evt-%d", i),
			Type:        topics.TypeUserActivity,
			AggregateID: "u-42",
			Sequence:    int64(i + 1),
			Time:        start.Add(time.Duration(i) * 100 * time.Millisecond),
			Data:        topics.Activity{UserID: "u-42", Action: "click", Resource: "/home"},
		}
		if fx := p.Apply(&s, e); fx.Anomaly != nil {
			a := fx.Anomaly
			fmt.Printf("%s: %s %s, %v/min against %v/min over %d events\n", e.ID, a.Severity, a.AnomalyType, a.CurrentRate, a.AverageRate, a.WindowCount)
		}
	}
	d := s.Snapshot("u-42")
	fmt.Println(d.TotalActivity, s.Actions(), s.Resource("/home"), d.FirstActivityAt, d.LastActivityAt, d.LastSequence)
	// Output:
	// evt-25: high high-activity, 5.2/min against 1/min over 26 events
	// 30 [{click 30}] 30 2026-11-22T10:00:00.000Z 2026-11-22T10:00:02.900Z 30
}

func ExampleState_AppendAggregated() {
	p, err := processors.New(processors.DefaultConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	var s processors.State
	var buf []byte // reused from one output to the next
	for i, r := range []string{"/home", "/cart", "/home"} {
		e := &topics.Event{
			ID:          fmt.Sprintf("evt-%d", i),
			Type:        topics.TypeUserActivity,
			AggregateID: "u-42",
			Sequence:    int64(i + 1),
			Time:        time.Date(2026, 11, 22, 10, 0, i, 0, time.UTC),
			Data:        topics.Activity{UserID: "u-42", Action: "view", Resource: r},
		}
		p.Apply(&s, e)
		buf = s.AppendAggregated(buf[:0], topics.MetaFor(e, topics.AggregateID("u-42", e.ID)), "u-42")
	}
	fmt.Println(string(buf))
	// Output:
	// {"id":"aggregate:u-42:evt-2","type":"user.activity.aggregated","version":1,"source":"streamworker","aggregateId":"u-42","timestamp":"2026-11-22T10:00:02.000Z","data":{"userId":"u-42","totalActivity":3,"actions":{"view":3},"resources":{"/cart":1,"/home":2},"firstActivityAt":"2026-11-22T10:00:00.000Z","lastActivityAt":"2026-11-22T10:00:02.000Z","lastSequence":3},"metadata":{"correlationId":"evt-2","causationId":"evt-2"}}
}
