// Tests of the group lag exporter against kfake: the total it exports (what
// the dashboard sums) equals kadm's group lag while partitions move between
// two group members, and the lag stays reported with no member at all.
package lagexport

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
)

const (
	topic      = "lag.input"
	group      = "lag-group"
	partitions = 6
	perPart    = 50
)

// seed writes perPart records to each partition.
func seed(t *testing.T, k *testenv.KafkaCluster) {
	t.Helper()
	cl := k.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p := range int32(partitions) {
		for range perPart {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// exported reads the lag once and returns what a scrape shows: the sum of
// streamworker_group_lag (the dashboard's total) and its series count.
func exported(t *testing.T, e *Exporter, reg *prometheus.Registry) (total float64, series int) {
	t.Helper()
	if _, err := e.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "streamworker_group_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key strings.Builder
			for _, l := range m.GetLabel() {
				key.WriteString(l.GetName() + "=" + l.GetValue() + ",")
			}
			if seen[key.String()] {
				t.Fatalf("series %s exported twice", key.String())
			}
			seen[key.String()] = true
			total += m.GetGauge().GetValue()
			series++
		}
	}
	return total, series
}

// kadmLag is the group's total lag as kadm computes it.
func kadmLag(t *testing.T, adm *kadm.Client) int64 {
	t.Helper()
	lags, err := adm.Lag(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	l := lags[group]
	if err := l.Error(); err != nil {
		t.Fatal(err)
	}
	return l.Lag.Total()
}

// member joins the group with manual commits only, so that the committed
// offsets change only where the test commits.
func member(t *testing.T, k *testenv.KafkaCluster) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Seeds()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assigned reports the partitions the group's members own, by member.
func assigned(t *testing.T, adm *kadm.Client) map[string]int {
	t.Helper()
	d, err := adm.DescribeGroups(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range d[group].Members {
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range c.Topics {
				out[m.MemberID] += len(tp.Partitions)
			}
		}
	}
	return out
}

// pollAndCommit polls once and commits what it got; it returns the count.
func pollAndCommit(t *testing.T, c *kgo.Client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	fs := c.PollRecords(ctx, 40)
	recs := fs.Records()
	if len(recs) > 0 {
		if err := c.CommitRecords(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
	}
	return len(recs)
}

func TestTotalEqualsKadmLagDuringHandOver(t *testing.T) {
	k := testenv.Kafka(t, testenv.WithTopics(topic), testenv.WithPartitions(partitions))
	seed(t, k)
	adm := k.Admin(t)
	e := New(adm, group, []string{topic}, "earliest")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)

	check := func(stage string) {
		t.Helper()
		total, series := exported(t, e, reg)
		want := kadmLag(t, adm)
		if series != partitions {
			t.Errorf("%s: %d lag series, want one per partition (%d)", stage, series, partitions)
		}
		if int64(total) != want {
			t.Errorf("%s: exported total lag %v, kadm's group lag %d", stage, total, want)
		}
		t.Logf("%s: exported total %v = kadm %d over %d partitions", stage, total, want, series)
	}

	// No member has ever joined: the whole topic is lag.
	total, series := exported(t, e, reg)
	if series != partitions || total != partitions*perPart {
		t.Fatalf("before any member: total %v over %d series, want %d over %d", total, series, partitions*perPart, partitions)
	}

	a := member(t, k)
	defer a.Close()
	committed := 0
	testenv.Eventually(t, 10*time.Second, func() bool {
		committed += pollAndCommit(t, a)
		return committed > 0 && len(assigned(t, adm)) == 1
	}, "first member owns the partitions and commits")
	check("one member")

	b := member(t, k)
	defer b.Close()
	// The hand-over: partitions move from a to b. Check while it happens
	// and after.
	check("second member joining")
	testenv.Eventually(t, 15*time.Second, func() bool {
		pollAndCommit(t, a)
		pollAndCommit(t, b)
		return len(assigned(t, adm)) == 2
	}, "both members own partitions")
	check("two members")
	for range 3 {
		pollAndCommit(t, b)
	}
	check("two members, more commits")

	a.Close()
	b.Close()
	testenv.Eventually(t, 10*time.Second, func() bool { return len(assigned(t, adm)) == 0 }, "group empty")
	check("no member")
	if total, _ := exported(t, e, reg); total == 0 || total == partitions*perPart {
		t.Fatalf("no member: total %v, want the lag left after the commits (between 0 and %d)", total, partitions*perPart)
	}
}

func TestLagWithZeroConsumersAndPartialCommits(t *testing.T) {
	k := testenv.Kafka(t, testenv.WithTopics(topic), testenv.WithPartitions(partitions))
	seed(t, k)
	adm := k.Admin(t)
	// The group committed partitions 0 and 1 only, and has no member.
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 10, LeaderEpoch: -1})
	offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: perPart, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(context.Background(), group, offs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		start string
		want  int64
	}{
		// 0: 40 left; 1: none; 2-5: a new member starts at the beginning.
		{"earliest", (perPart - 10) + 0 + 4*perPart},
		// a new member starts at the end of 2-5.
		{"latest", perPart - 10},
	} {
		e := New(adm, group, []string{topic}, tc.start)
		parts, err := e.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, p := range parts {
			total += p.Lag
		}
		if len(parts) != partitions || total != tc.want {
			t.Errorf("start %s: %d partitions, total %d; want %d, %d (%v)", tc.start, len(parts), total, partitions, tc.want, parts)
		}
		if n := testutil.CollectAndCount(e, "streamworker_group_lag"); n != partitions {
			t.Errorf("start %s: %d series, want %d", tc.start, n, partitions)
		}
	}
}

func TestReadErrorDropsTheLag(t *testing.T) {
	k := testenv.Kafka(t, testenv.WithTopics(topic), testenv.WithPartitions(partitions))
	seed(t, k)
	adm := k.Admin(t)
	e := New(adm, group, []string{topic}, "earliest")
	if _, err := e.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Read(ctx); err == nil {
		t.Fatal("read with a cancelled context succeeded")
	}
	if n := testutil.CollectAndCount(e, "streamworker_group_lag"); n != 0 {
		t.Errorf("%d lag series after a failed read, want 0", n)
	}
	if v := testutil.ToFloat64(e.errors); v != 1 {
		t.Errorf("read errors %v, want 1", v)
	}
	problems, err := testutil.CollectAndLint(e)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
