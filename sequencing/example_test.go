package sequencing_test

import (
	"fmt"
	"time"

	"github.com/streamworker/streamworker/sequencing"
)

func ExampleBuffer() {
	type event struct {
		id  string
		seq int64
	}
	buf := sequencing.NewBuffer[event](sequencing.DefaultConfig())
	last := int64(0) // the user's lastSequence
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

	// Partition order: 3, 2, 1, then 3 again.
	for offset, e := range []event{{"c", 3}, {"b", 2}, {"a", 1}, {"c", 3}} {
		switch sequencing.Classify(sequencing.Expected(last), e.seq) {
		case sequencing.DecisionApply:
			fmt.Println("apply", e.id)
			last = e.seq
			for {
				next, ok := buf.Pop("u-42", sequencing.Expected(last))
				if !ok {
					break
				}
				fmt.Println("apply", next.id)
				last = next.seq
			}
		case sequencing.DecisionBuffer:
			fmt.Println("buffer", e.id, buf.Add("u-42", e.seq, e.id, int64(offset), 100, now, e))
		case sequencing.DecisionBehind:
			fmt.Println("behind", e.id, "(duplicate or late, by its dedupe mark)")
		}
		if off, _, ok := buf.MinOffset(); ok {
			fmt.Println("  commit point held at offset", off)
		}
	}
	// Output:
	// buffer c buffered
	//   commit point held at offset 0
	// buffer b buffered
	//   commit point held at offset 0
	// apply a
	// apply b
	// apply c
	// behind c (duplicate or late, by its dedupe mark)
}
