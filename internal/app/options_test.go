// Tests that the configuration maps onto the worker's options with the
// packages' own defaults.
package app

import (
	"reflect"
	"testing"
	"time"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/topics"
)

func TestDefaultConfigMapsToPackageDefaults(t *testing.T) {
	o, err := WorkerOptions(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if o.Sequencing != sequencing.DefaultConfig() {
		t.Errorf("sequencing %+v, want %+v", o.Sequencing, sequencing.DefaultConfig())
	}
	if !reflect.DeepEqual(o.Processors, processors.DefaultConfig()) {
		t.Errorf("processors %+v, want %+v", o.Processors, processors.DefaultConfig())
	}
	if o.Topics != topics.DefaultNames() {
		t.Errorf("topics %+v, want %+v", o.Topics, topics.DefaultNames())
	}
	if o.Limits != topics.DefaultLimits() {
		t.Errorf("limits %+v, want %+v", o.Limits, topics.DefaultLimits())
	}
}

func TestLagIntervalIsMapped(t *testing.T) {
	c := config.Default()
	c.Kafka.LagInterval = 42 * time.Second
	o, err := WorkerOptions(c)
	if err != nil {
		t.Fatal(err)
	}
	if o.LagInterval != 42*time.Second {
		t.Errorf("LagInterval %v, want kafka.lag_interval 42s", o.LagInterval)
	}
}
