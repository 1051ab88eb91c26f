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
	fmt.Println(d.TotalActivity, d.Actions, d.FirstActivityAt, d.LastActivityAt, d.LastSequence)
	// Output:
	// evt-25: high high-activity, 5.2/min against 1/min over 26 events
	// 30 map[click:30] 2026-11-22T10:00:00.000Z 2026-11-22T10:00:02.900Z 30
}
