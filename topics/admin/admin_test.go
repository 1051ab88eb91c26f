package admin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/topics/admin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster starts a one-broker kfake cluster on a TCP port and returns an
// admin client for it.
func cluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	t.Cleanup(adm.Close)
	return c, adm
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// describe returns the partition count and the cleanup.policy and
// retention.ms of topic.
func describe(t *testing.T, adm *kadm.Client, topic string) (partitions int, policy, retention string) {
	t.Helper()
	ctx := testContext(t)
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), topic)
	if err != nil {
		t.Fatal(err)
	}
	d := details[topic]
	if d.Err != nil {
		t.Fatalf("topic %s: %v", topic, d.Err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		switch c.Key {
		case topics.ConfigCleanupPolicy:
			policy = c.MaybeValue()
		case topics.ConfigRetentionMs:
			retention = c.MaybeValue()
		}
	}
	return len(d.Partitions), policy, retention
}

func TestEnsureCreatesAllAndIsIdempotent(t *testing.T) {
	_, adm := cluster(t)
	ctx := testContext(t)
	specs := topics.Specs(topics.DefaultNames(), 3, 1)

	results, err := admin.Ensure(ctx, adm, specs)
	if err != nil {
		t.Fatalf("first Ensure: %v", err)
	}
	if len(results) != len(specs) {
		t.Fatalf("%d results for %d specs", len(results), len(specs))
	}
	for i, r := range results {
		if r.Topic != specs[i].Name || !r.Created || r.Err != nil || r.Partitions != 3 {
			t.Errorf("first run, %s: %+v", specs[i].Name, r)
		}
	}
	for _, s := range specs {
		partitions, policy, retention := describe(t, adm, s.Name)
		if partitions != 3 || policy != *s.Configs[topics.ConfigCleanupPolicy] {
			t.Errorf("%s: %d partitions, cleanup.policy %q", s.Name, partitions, policy)
		}
		if want := s.Configs[topics.ConfigRetentionMs]; want != nil && retention != *want {
			t.Errorf("%s: retention.ms %q, want %q", s.Name, retention, *want)
		}
	}

	results, err = admin.Ensure(ctx, adm, specs)
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	for i, r := range results {
		want := *specs[i].Configs[topics.ConfigCleanupPolicy]
		if r.Created || r.Err != nil || r.Partitions != 3 || r.ReplicationFactor != 1 || r.CleanupPolicy != want {
			t.Errorf("second run, %s: %+v", specs[i].Name, r)
		}
	}
}

func TestEnsureReportsMismatches(t *testing.T) {
	n := topics.DefaultNames()
	c, adm := cluster(t, kfake.SeedTopics(2, n.Input))
	if err := c.CreateTopic(n.Aggregates, 3, map[string]string{topics.ConfigCleanupPolicy: "delete"}); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)

	results, err := admin.Ensure(ctx, adm, topics.Specs(n, 3, 1))
	if err == nil {
		t.Fatal("Ensure reported no mismatch")
	}
	if !errors.Is(err, admin.ErrMismatch) {
		t.Fatalf("error %v does not wrap ErrMismatch", err)
	}
	for _, topic := range []string{n.Input, n.Aggregates} {
		if !strings.Contains(err.Error(), "topic "+topic+":") {
			t.Errorf("error %q does not name %s", err, topic)
		}
	}
	byTopic := map[string]admin.Result{}
	for _, r := range results {
		byTopic[r.Topic] = r
	}
	var mm *admin.MismatchError
	if r := byTopic[n.Input]; !errors.As(r.Err, &mm) || mm.Setting != "partitions" || mm.Got != "2" || mm.Want != "3" || r.Created {
		t.Errorf("input: %+v", r)
	}
	if r := byTopic[n.Aggregates]; !errors.As(r.Err, &mm) || mm.Setting != topics.ConfigCleanupPolicy || mm.Got != "delete" || mm.Want != "compact" {
		t.Errorf("aggregates: %+v", r)
	}
	for _, topic := range []string{n.Milestones, n.Anomalies, n.DLQ, n.Gaps} {
		if r := byTopic[topic]; !r.Created || r.Err != nil {
			t.Errorf("%s: %+v", topic, r)
		}
	}
	// Nothing was altered.
	if partitions, _, _ := describe(t, adm, n.Input); partitions != 2 {
		t.Errorf("input now has %d partitions", partitions)
	}
	if _, policy, _ := describe(t, adm, n.Aggregates); policy != "delete" {
		t.Errorf("aggregates cleanup.policy now %q", policy)
	}

	// A spec that leaves the partition count to the broker does not check it.
	specs := []topics.Spec{{Name: n.Input, Partitions: -1, ReplicationFactor: -1}}
	if results, err := admin.Ensure(ctx, adm, specs); err != nil || results[0].Partitions != 2 {
		t.Fatalf("Ensure with partitions -1: %+v, %v", results, err)
	}
}

func TestEnsureCreateError(t *testing.T) {
	_, adm := cluster(t)
	ctx := testContext(t)
	// One broker cannot hold three replicas.
	specs := []topics.Spec{
		{Name: "ok", Partitions: 1, ReplicationFactor: 1},
		{Name: "bad", Partitions: 1, ReplicationFactor: 3},
	}
	results, err := admin.Ensure(ctx, adm, specs)
	if err == nil || !strings.Contains(err.Error(), "create topic bad") || errors.Is(err, admin.ErrMismatch) {
		t.Fatalf("error %v, want one naming topic bad", err)
	}
	if !results[0].Created || results[0].Err != nil || results[1].Created || results[1].Err == nil {
		t.Fatalf("results %+v", results)
	}
}

// TestEnsurePartitionsAddedOutOfBand: an upgrade whose topics have gained
// partitions (kafka-topics --alter) since they were created passes, with a
// warning naming both counts; Ensure still alters nothing.
func TestEnsurePartitionsAddedOutOfBand(t *testing.T) {
	_, adm := cluster(t)
	ctx := testContext(t)
	n := topics.DefaultNames()
	specs := topics.Specs(n, 3, 1)
	if _, err := admin.Ensure(ctx, adm, specs); err != nil {
		t.Fatal(err)
	}
	resps, err := adm.UpdatePartitions(ctx, 5, n.Input) // 3 -> 5
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	results, err := admin.Ensure(ctx, adm, specs)
	if err != nil {
		t.Fatalf("Ensure refused a topic with more partitions than configured: %v", err)
	}
	for _, r := range results {
		if r.Topic != n.Input {
			if r.Warning != "" || r.Partitions != 3 {
				t.Errorf("%s: %+v", r.Topic, r)
			}
			continue
		}
		if r.Partitions != 5 || r.Created {
			t.Errorf("input: %+v", r)
		}
		for _, want := range []string{"topic " + n.Input + ": 5 partitions", "3 configured", "topics.partitions"} {
			if !strings.Contains(r.Warning, want) {
				t.Errorf("warning %q lacks %q", r.Warning, want)
			}
		}
		if !strings.HasSuffix(r.String(), "(warning)") {
			t.Errorf("String() = %q", r.String())
		}
	}
	if partitions, _, _ := describe(t, adm, n.Input); partitions != 5 {
		t.Errorf("input now has %d partitions", partitions)
	}
}

// TestEnsureFewerPartitionsNamesTheFix: an existing topic with fewer
// partitions than configured fails with an error naming the topic, both
// counts, the kafka-topics command that adds them and the effect on order.
func TestEnsureFewerPartitionsNamesTheFix(t *testing.T) {
	n := topics.DefaultNames()
	_, adm := cluster(t, kfake.SeedTopics(2, n.Input))
	_, err := admin.Ensure(testContext(t), adm, topics.Specs(n, 6, 1))
	if !errors.Is(err, admin.ErrMismatch) {
		t.Fatalf("Ensure: %v, want ErrMismatch", err)
	}
	for _, want := range []string{
		"topic " + n.Input + ": 2 partitions, fewer than the 6 configured",
		"kafka-topics --bootstrap-server <broker> --alter --topic " + n.Input + " --partitions 6",
		"out of order",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
