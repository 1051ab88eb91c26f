package topics_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/streamworker/streamworker/topics"
)

func ExampleDecoder_Decode() {
	var d topics.Decoder // 1 MiB limit
	e, err := d.Decode(&topics.Record{
		Key: []byte("u-42"),
		Value: []byte(`{"id":"evt-1","type":"user.activity","sequence":17,
			"timestamp":"2026-11-22T10:00:00.123Z","data":{"action":"click","resource":"/home"}}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(e.ID, e.AggregateID, e.Sequence, e.Version, e.Data.UserID, e.Data.Action, e.Time.Format(time.RFC3339Nano))

	_, err = d.Decode(&topics.Record{Key: []byte("u-42"), Value: []byte(`{"id":"evt-2","type":"user.activity","sequence":0}`)})
	var verr *topics.ValidationError
	if errors.As(err, &verr) {
		fmt.Println(verr.Reason, verr.Field)
		fmt.Println(err)
	}
	// Output:
	// evt-1 u-42 17 2 u-42 click 2026-11-22T10:00:00.123Z
	// invalid_sequence sequence
	// invalid event: sequence: invalid_sequence: 0 is below 1
}

func ExampleAppendMilestone() {
	e := topics.Event{ID: "evt-100", AggregateID: "u-42", Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)}
	id := topics.MilestoneID("u-42", 100)
	out := topics.AppendMilestone(nil, topics.MetaFor(&e, id), &topics.MilestoneData{UserID: "u-42", Milestone: "activity", Count: 100})
	fmt.Println(string(out))
	// Output:
	// {"id":"milestone:u-42:100","type":"user.milestone.reached","version":1,"source":"streamworker","aggregateId":"u-42","timestamp":"2026-11-22T10:00:00.123Z","data":{"userId":"u-42","milestone":"activity","count":100},"metadata":{"correlationId":"evt-100","causationId":"evt-100"}}
}
