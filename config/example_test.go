package config_test

import (
	"fmt"

	"github.com/spf13/pflag"
	"github.com/streamworker/streamworker/config"
)

func ExampleEnvName() {
	fmt.Println(config.EnvName("sequencing.gap_timeout"))
	// Output: SW_SEQUENCING_GAP_TIMEOUT
}

func ExampleLoadFile() {
	_, err := config.LoadFile("", []string{"SW_MILESTONES_EVERY=0", "SW_SEQUENCING_GAP_TIMEOUT=abc"})
	fmt.Println(err)
	// Output:
	// config: sequencing.gap_timeout = abc: must be a duration with a unit, e.g. 500ms, 30s, 5m or 24h
	// config: milestones.every = 0: must be at least 1
}

func ExampleLoader_Load() {
	fs := pflag.NewFlagSet("streamworker", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	_ = fs.Parse([]string{"--kafka.brokers=k1:9092,k2:9092"})

	env := map[string]string{"SW_KAFKA_BROKERS": "ignored:9092", "SW_KAFKA_GROUP": "workers"}
	l := config.Loader{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	cfg, err := l.Load("", fs)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Kafka.Brokers, cfg.Kafka.Group, cfg.Sequencing.GapTimeout)
	// Output: [k1:9092 k2:9092] workers 30s
}
