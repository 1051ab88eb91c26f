package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/worker"
)

// TestParkedCommands: `parked list` lists exactly the parked users from
// their stored state; `parked release USER` sends the control record to
// the partition of USER's park (exit 0), refuses a user that is not parked
// (exit 1, nothing sent), and wants exactly one user (exit 2).
func TestParkedCommands(t *testing.T) {
	k := testenv.Kafka(t)
	r := testenv.Redis(t)
	input := k.Topic("user.activity")
	k.CreateTopics(t, 4, input)
	prefix := r.Prefix()
	if prefix == "" {
		prefix = "sw"
	}
	t.Setenv("SW_KAFKA_BROKERS", strings.Join(k.Seeds(), ","))
	t.Setenv("SW_REDIS_ADDR", r.Addr())
	t.Setenv("SW_REDIS_KEY_PREFIX", prefix)
	t.Setenv("SW_TOPICS_INPUT", input)

	store := state.NewRedisStore(r.Client(t), dedupe.Keys{Prefix: prefix}, 0)
	var writes []state.Write
	for user, park := range map[string]*processors.Park{
		"u-parked":  {Partition: 2, Offset: 17, HeldThrough: 40, Reason: "internal_error"},
		"u}escaped": {Partition: 1, Offset: 3, HeldThrough: 3, Reason: "output_too_large"},
		"u-free":    nil,
	} {
		st := processors.State{LastSequence: 5, Park: park}
		data, err := st.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		writes = append(writes, state.Write{Aggregate: user, Data: data})
	}
	if out, err := store.Commit(context.Background(), writes); err != nil || out[0] != state.Committed {
		t.Fatalf("writing states: %v %v", out, err)
	}

	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := run("parked", "list")
	if code != 0 {
		t.Fatalf("parked list: exit %d: %s", code, errOut)
	}
	var rows []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	slices.Sort(rows)
	want := []string{`"u-parked" 2 17 40 internal_error`, `"u}escaped" 1 3 3 output_too_large`, "USER PARTITION OFFSET HELD_THROUGH REASON"}
	if !slices.Equal(rows, want) || !strings.Contains(errOut, "2 parked users") {
		t.Errorf("parked list printed\n%s%s", out, errOut)
	}

	code, out, errOut = run("parked", "release", "u-parked")
	if code != 0 || !strings.Contains(out, `release of "u-parked" sent to `+input+`[2]`) {
		t.Fatalf("parked release: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	cl := k.Client(t, kgo.ConsumeTopics(input), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	var got []*kgo.Record
	fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	if len(got) != 1 || got[0].Partition != 2 || string(got[0].Key) != "u-parked" || len(got[0].Headers) != 1 ||
		got[0].Headers[0].Key != worker.ControlHeader || string(got[0].Headers[0].Value) != worker.ControlRelease {
		t.Fatalf("input holds %v; want one release control record for u-parked on partition 2", got)
	}

	if code, _, errOut = run("parked", "release", "u-free"); code != 1 || !strings.Contains(errOut, `"u-free": the user is not parked`) {
		t.Errorf("release of a user that is not parked: exit %d, stderr %q; want 1 and 'not parked'", code, errOut)
	}
	if code, _, errOut = run("parked", "release", "a", "b"); code != 2 || !strings.Contains(errOut, "takes one argument") {
		t.Errorf("release of two users: exit %d, stderr %q; want 2", code, errOut)
	}
	ends, err := k.Admin(t).ListEndOffsets(context.Background(), input)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 1 {
		t.Errorf("%d records on the input, want only the one release", total)
	}
}
