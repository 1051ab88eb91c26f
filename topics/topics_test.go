package topics_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/streamworker/streamworker/topics"
)

func TestDefaultNames(t *testing.T) {
	want := topics.Names{
		Input:      "user.activity",
		Aggregates: "user.activity.aggregated",
		Milestones: "user.milestone.reached",
		Anomalies:  "anomaly.detected",
		DLQ:        "user.activity.dlq",
		Gaps:       "user.activity.gaps",
		Parked:     "user.activity.parked",
	}
	if got := topics.DefaultNames(); got != want {
		t.Fatalf("got %+v", got)
	}
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNamesValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(n *topics.Names)
		want   string // in the error; "" for none
	}{
		{"defaults", func(n *topics.Names) {}, ""},
		{"empty", func(n *topics.Names) { n.DLQ = "" }, "topics.dlq"},
		{"illegal character", func(n *topics.Names) { n.Input = "user activity" }, "topics.input"},
		{"dot", func(n *topics.Names) { n.Gaps = "." }, "topics.gaps"},
		{"too long", func(n *topics.Names) { n.Anomalies = strings.Repeat("a", 250) }, "topics.anomalies"},
		{"longest legal", func(n *topics.Names) { n.Anomalies = strings.Repeat("a", 249) }, ""},
		{"duplicate", func(n *topics.Names) { n.Milestones = n.Aggregates }, "topics.milestones"},
		{"parked is the DLQ", func(n *topics.Names) { n.Parked = n.DLQ }, "topics.parked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := topics.DefaultNames()
			tt.modify(&n)
			err := n.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, topics.ErrInvalidTopicName)):
				t.Fatalf("error %v, want one naming %s and wrapping ErrInvalidTopicName", err, tt.want)
			}
		})
	}
}

func TestSpecs(t *testing.T) {
	n := topics.DefaultNames()
	specs := topics.Specs(n, 12, 3)
	if len(specs) != 7 {
		t.Fatalf("%d specs", len(specs))
	}
	byName := map[string]topics.Spec{}
	for _, s := range specs {
		if s.Partitions != 12 || s.ReplicationFactor != 3 {
			t.Errorf("%s: partitions %d rf %d", s.Name, s.Partitions, s.ReplicationFactor)
		}
		byName[s.Name] = s
	}
	cfg := func(topic, key string) string {
		v := byName[topic].Configs[key]
		if v == nil {
			return ""
		}
		return *v
	}
	tests := []struct{ topic, policy, retention string }{
		{n.Input, "delete", "604800000"},
		{n.Aggregates, "compact", ""},
		{n.Milestones, "delete", "604800000"},
		{n.Anomalies, "delete", "604800000"},
		{n.DLQ, "delete", "1209600000"},
		{n.Gaps, "delete", "1209600000"},
		{n.Parked, "delete", "-1"}, // held events outlive their park
	}
	for _, tt := range tests {
		if _, ok := byName[tt.topic]; !ok {
			t.Errorf("no spec for %s", tt.topic)
			continue
		}
		if got := cfg(tt.topic, topics.ConfigCleanupPolicy); got != tt.policy {
			t.Errorf("%s: cleanup.policy %q, want %q", tt.topic, got, tt.policy)
		}
		if got := cfg(tt.topic, topics.ConfigRetentionMs); got != tt.retention {
			t.Errorf("%s: retention.ms %q, want %q", tt.topic, got, tt.retention)
		}
	}
	// Each spec owns its config map.
	*specs[0].Configs[topics.ConfigCleanupPolicy] = "compact"
	if cfg(n.Milestones, topics.ConfigCleanupPolicy) != "delete" {
		t.Fatal("specs share config values")
	}
}
