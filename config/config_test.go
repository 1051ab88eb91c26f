package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// envOf returns a LookupEnv over m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		check   func(Config) bool
		wantErr []string // substrings; none means success
	}{
		{name: "brokers are comma-separated", env: []string{"SW_KAFKA_BROKERS=a:1,b:2"},
			check: func(c Config) bool { return slices.Equal(c.Kafka.Brokers, []string{"a:1", "b:2"}) }},
		{name: "list items are trimmed", env: []string{"SW_REDIS_ADDR= r1:6379 , r2:6379 ,"},
			check: func(c Config) bool { return slices.Equal(c.Redis.Addrs, []string{"r1:6379", "r2:6379"}) }},
		{name: "thresholds", env: []string{"SW_MILESTONES_THRESHOLDS=1,10,50"},
			check: func(c Config) bool { return slices.Equal(c.Milestones.Thresholds, []int{1, 10, 50}) }},
		{name: "typed values", env: []string{
			"SW_DEDUPE_TTL=1h", "SW_KAFKA_MAX_POLL_RECORDS=10", "SW_ANOMALY_MIN_AVERAGE_RATE=0.25",
			"SW_OUTPUTS_COALESCE_AGGREGATES=false", "SW_SEQUENCING_MAX_BUFFERED_BYTES=8MiB", "SW_INPUT_MAX_BYTES=2048",
			"SW_KAFKA_TLS_ENABLED=true", "SW_KAFKA_TLS_SERVER_NAME=kafka.internal",
		}, check: func(c Config) bool {
			return c.Dedupe.TTL == time.Hour && c.Kafka.MaxPollRecords == 10 && c.Anomaly.MinAverageRate == 0.25 &&
				!c.Outputs.CoalesceAggregates && c.Sequencing.MaxBufferedBytes == 8*MiB && c.Input.MaxBytes == 2048 &&
				c.Kafka.TLS.Enabled && c.Kafka.TLS.ServerName == "kafka.internal"
		}},
		{name: "an empty variable is an empty value", env: []string{"SW_KAFKA_GROUP="},
			wantErr: []string{"config: kafka.group: must not be empty"}},
		{name: "empty brokers are refused, not localhost", env: []string{"SW_KAFKA_BROKERS="},
			wantErr: []string{"config: kafka.brokers: must not be empty"}},
		{name: "blank redis addresses are refused", env: []string{"SW_REDIS_ADDR= , "},
			wantErr: []string{"config: redis.addr: must not be empty"}},
		{name: "an empty number is refused", env: []string{"SW_DEDUPE_RECENT_SIZE="},
			wantErr: []string{"config: dedupe.recent_size: SW_DEDUPE_RECENT_SIZE is set but empty: unset it for the default (10000) or give a int"}},
		{name: "an empty duration is refused", env: []string{"SW_DEDUPE_TTL= "},
			wantErr: []string{"config: dedupe.ttl: SW_DEDUPE_TTL is set but empty"}},
		{name: "an empty optional string is fine", env: []string{"SW_KAFKA_SASL_MECHANISM=", "SW_MILESTONES_THRESHOLDS="},
			check: func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{name: "an unknown SW_ variable is refused with a suggestion", env: []string{"SW_KAFKA_BROKER=x:1"},
			wantErr: []string{"config: SW_KAFKA_BROKER: unknown environment variable: SW_ variables must name a configuration key; did you mean SW_KAFKA_BROKERS?"}},
		{name: "a lower-case variable is refused, not ignored", env: []string{"sw_kafka_brokers=x:1", "Sw_Kafka_Grup=g"},
			wantErr: []string{"config: sw_kafka_brokers: unknown environment variable: SW_ variables must name a configuration key; did you mean SW_KAFKA_BROKERS?",
				"config: Sw_Kafka_Grup: unknown environment variable: SW_ variables must name a configuration key; did you mean SW_KAFKA_GROUP?"}},
		{name: "an unknown SW_ variable far from any key", env: []string{"SW_NOT_A_KEY=1"},
			wantErr: []string{"config: SW_NOT_A_KEY: unknown environment variable"}},
		{name: "later entries win", env: []string{"SW_KAFKA_GROUP=a", "SW_KAFKA_GROUP=b"},
			check: func(c Config) bool { return c.Kafka.Group == "b" }},
		{name: "other variables are ignored", env: []string{"SW_TEST_BACKEND=embedded", "SW_SERVICE_HOST=10.0.0.1",
			"SW_PORT_9464_TCP_ADDR=10.0.0.1", "KAFKA_GROUP=x", "PATH=/bin"},
			check: func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{name: "milestones.every 0", env: []string{"SW_MILESTONES_EVERY=0"},
			wantErr: []string{"config: milestones.every = 0: must be at least 1"}},
		{name: "bad duration", env: []string{"SW_SEQUENCING_GAP_TIMEOUT=abc"},
			wantErr: []string{"config: sequencing.gap_timeout = abc: must be a duration"}},
		{name: "bad list of integers", env: []string{"SW_MILESTONES_THRESHOLDS=1,ten"},
			wantErr: []string{"config: milestones.thresholds = 1,ten: must be a list of integers"}},
		{name: "every problem at once", env: []string{"SW_KAFKA_BROKERS=nope", "SW_LOG_FORMAT=xml", "SW_RETRY_MAX_BACKOFF=1"},
			wantErr: []string{"kafka.brokers = nope: must be host:port", "log.format = xml", "retry.max_backoff = 1: must be a duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadFile("", tt.env)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !tt.check(c) {
					t.Errorf("unexpected config %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadFile succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestEnvErrorNamesKey(t *testing.T) {
	_, err := LoadFile("", []string{"SW_MILESTONES_EVERY=0"})
	var fe *FieldError
	if !errors.As(err, &fe) || *fe != (FieldError{Key: "milestones.every", Value: "0", Reason: "must be at least 1"}) {
		t.Fatalf("got %#v from %v", fe, err)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	c, err := LoadFile("testdata/full.good.yaml", []string{"SW_KAFKA_GROUP=env-group", "SW_TOPICS_PARTITIONS=6"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Group != "env-group" || c.Topics.Partitions != 6 || c.Kafka.ClientID != "worker-a" {
		t.Errorf("group %q partitions %d client_id %q: want env-group, 6 and the file's worker-a",
			c.Kafka.Group, c.Topics.Partitions, c.Kafka.ClientID)
	}
}

func TestPrecedence(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	err := fs.Parse([]string{
		"--config", "testdata/full.good.yaml",
		"--kafka.group=flag-group", "--kafka.brokers=f:1,g:2", "--milestones.thresholds=2,4",
		"--sequencing.gap_timeout=45s", "--anomaly.multiplier=7.5", "--outputs.coalesce_aggregates",
		"--input.max_bytes=4KiB", "--redis.db=5",
	})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SW_KAFKA_GROUP": "env-group", "SW_KAFKA_CLIENT_ID": "env-client", "SW_LOG_LEVEL": "warn"}
	c, err := Loader{LookupEnv: envOf(env)}.Load("", fs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		what      string
		got, want any
	}{
		{"flag over env and file", c.Kafka.Group, "flag-group"},
		{"flag list", c.Kafka.Brokers, []string{"f:1", "g:2"}},
		{"flag int list", c.Milestones.Thresholds, []int{2, 4}},
		{"flag duration", c.Sequencing.GapTimeout, 45 * time.Second},
		{"flag float", c.Anomaly.Multiplier, 7.5},
		{"flag bool", c.Outputs.CoalesceAggregates, true},
		{"flag size", c.Input.MaxBytes, 4 * KiB},
		{"flag int", c.Redis.DB, 5},
		{"env over file, unset flag ignored", c.Kafka.ClientID, "env-client"},
		{"env over file", c.Log.Level, "warn"},
		{"file, unset flag ignored", c.Kafka.CommitInterval, 2 * time.Second},
		{"file", c.Kafka.MaxPollRecords, 1000},
		{"file over default", c.Topics.Input, "prod.user.activity"},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.what, tt.got, tt.want)
		}
	}
}

func TestFlagValuesAreValidated(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--milestones.every=0", "--sequencing.max_buffered_bytes=lots"}); err != nil {
		t.Fatal(err)
	}
	_, err := Loader{}.Load("", fs)
	for _, w := range []string{"milestones.every = 0: must be at least 1", "sequencing.max_buffered_bytes = lots: must be a byte count"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not contain %q", err, w)
		}
	}
}

func TestLoadProcessEnvironment(t *testing.T) {
	t.Setenv("SW_KAFKA_GROUP", "process-env")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--config=testdata/full.good.yaml"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Group != "process-env" || c.Kafka.ClientID != "worker-a" {
		t.Errorf("group %q client_id %q", c.Kafka.Group, c.Kafka.ClientID)
	}
	if c, err := Load(nil); err != nil || c.Kafka.Group != "process-env" {
		t.Errorf("Load(nil) = %q, %v", c.Kafka.Group, err)
	}
}

func TestFileErrors(t *testing.T) {
	_, err := LoadFile("testdata/missing.yaml", nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "testdata/missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	_, err = LoadFile("testdata/files/ca.pem", nil)
	if err == nil || !strings.Contains(err.Error(), `unsupported file type "pem"`) {
		t.Errorf("unsupported type: %v", err)
	}
}

func TestPasswordFileIsTrimmed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFile("", []string{"SW_REDIS_PASSWORD_FILE=" + path})
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.Password.Reveal() != "from-file" || c.Redis.PasswordFile != "" {
		t.Errorf("password %q file %q", c.Redis.Password.Reveal(), c.Redis.PasswordFile)
	}
}

func TestSecretsAreMasked(t *testing.T) {
	c := Default()
	c.Kafka.SASL = SASL{Mechanism: "PLAIN", Username: "worker", Password: "kafka-pw-123"}
	c.Redis.Password = "redis-pw-456"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", c)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"YAML": string(y), "fmt": fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Redis.Password),
		"slog": logs.String(), "json": string(js),
	} {
		if strings.Contains(out, "pw-") {
			t.Errorf("%s shows a password:\n%s", name, out)
		}
		if !strings.Contains(out, "***") {
			t.Errorf("%s does not show the mask:\n%s", name, out)
		}
	}
	if !strings.Contains(string(y), "password: '***'") || !strings.Contains(string(y), "password_file: \"\"") {
		t.Errorf("YAML:\n%s", y)
	}

	r := c.Redacted()
	r.Kafka.Brokers[0] = "changed:1"
	if r.Kafka.SASL.Password != "***" || r.Redis.Password != "***" || r.Kafka.SASL.Username != "worker" {
		t.Errorf("Redacted = %#v", r)
	}
	if c.Kafka.SASL.Password.Reveal() != "kafka-pw-123" || c.Kafka.Brokers[0] != "localhost:9092" {
		t.Error("Redacted changed the original")
	}
	if Default().Redacted().Redis.Password != "" {
		t.Error("an unset secret is masked")
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	full, err := LoadFile("testdata/full.good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{"default": Default(), "full": full} {
		t.Run(name, func(t *testing.T) {
			y, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "printed.yaml")
			if err := os.WriteFile(path, y, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadFile(path, nil)
			if err != nil {
				t.Fatalf("printed config does not load: %v\n%s", err, y)
			}
			if want := c.Redacted(); !reflect.DeepEqual(got, want) {
				t.Errorf("round trip\n got %+v\nwant %+v\n%s", got, want, y)
			}
		})
	}
}

func TestKeysCoverEveryField(t *testing.T) {
	// An independent walk of Config: every leaf field must be a key.
	var fields []string
	var visit func(reflect.Type, string)
	visit = func(typ reflect.Type, prefix string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := f.Tag.Get("yaml")
			switch {
			case name == "":
				t.Errorf("%s%s has no yaml tag", prefix, f.Name)
			case f.Type.Kind() == reflect.Struct:
				visit(f.Type, prefix+name+".")
			default:
				fields = append(fields, prefix+name)
			}
		}
	}
	visit(reflect.TypeFor[Config](), "")

	var keys []string
	keyRE := regexp.MustCompile(`^[a-z]+(\.[a-z][a-z0-9_]*)+$`)
	for _, k := range Keys() {
		keys = append(keys, k.Key)
		if !keyRE.MatchString(k.Key) || k.Doc == "" || k.Env != EnvName(k.Key) || k.Type == "" {
			t.Errorf("bad key doc %+v", k)
		}
	}
	if !slices.Equal(keys, fields) {
		t.Errorf("Keys() = %v\nfields = %v", keys, fields)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(keys)))) != len(keys) {
		t.Error("duplicate keys")
	}

	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	for _, k := range Keys() {
		if f := fs.Lookup(k.Key); f == nil || f.Usage != k.Doc {
			t.Errorf("flag --%s: %+v", k.Key, f)
		}
	}
	if fs.Lookup(ConfigFlag) == nil {
		t.Error("no --config flag")
	}
}

// TestContractKeys pins the key names, environment variables and defaults
// that operators and tooling rely on.
func TestContractKeys(t *testing.T) {
	want := map[string]struct{ env, def string }{
		"kafka.brokers":                 {"SW_KAFKA_BROKERS", "localhost:9092"},
		"kafka.group":                   {"SW_KAFKA_GROUP", "streamworker"},
		"kafka.start_offset":            {"SW_KAFKA_START_OFFSET", "earliest"},
		"kafka.commit_interval":         {"SW_KAFKA_COMMIT_INTERVAL", "1s"},
		"kafka.sasl.password":           {"SW_KAFKA_SASL_PASSWORD", ""},
		"topics.input":                  {"SW_TOPICS_INPUT", "user.activity"},
		"topics.aggregates":             {"SW_TOPICS_AGGREGATES", "user.activity.aggregated"},
		"topics.milestones":             {"SW_TOPICS_MILESTONES", "user.milestone.reached"},
		"topics.anomalies":              {"SW_TOPICS_ANOMALIES", "anomaly.detected"},
		"topics.dlq":                    {"SW_TOPICS_DLQ", "user.activity.dlq"},
		"topics.gaps":                   {"SW_TOPICS_GAPS", "user.activity.gaps"},
		"redis.addr":                    {"SW_REDIS_ADDR", "localhost:6379"},
		"redis.password":                {"SW_REDIS_PASSWORD", ""},
		"redis.db":                      {"SW_REDIS_DB", "0"},
		"redis.key_prefix":              {"SW_REDIS_KEY_PREFIX", "sw"},
		"dedupe.ttl":                    {"SW_DEDUPE_TTL", "24h"},
		"sequencing.gap_timeout":        {"SW_SEQUENCING_GAP_TIMEOUT", "30s"},
		"sequencing.max_buffered":       {"SW_SEQUENCING_MAX_BUFFERED", "1000"},
		"sequencing.max_buffered_bytes": {"SW_SEQUENCING_MAX_BUFFERED_BYTES", "64MiB"},
		"input.max_bytes":               {"SW_INPUT_MAX_BYTES", "1MiB"},
		"aggregation.max_resources":     {"SW_AGGREGATION_MAX_RESOURCES", "1000"},
		"aggregation.max_actions":       {"SW_AGGREGATION_MAX_ACTIONS", "100"},
		"input.max_id_bytes":            {"SW_INPUT_MAX_ID_BYTES", "256"},
		"input.max_aggregate_id_bytes":  {"SW_INPUT_MAX_AGGREGATE_ID_BYTES", "256"},
		"input.max_label_bytes":         {"SW_INPUT_MAX_LABEL_BYTES", "128"},
		"kafka.max_message_bytes":       {"SW_KAFKA_MAX_MESSAGE_BYTES", "1MiB"},
		"kafka.lag_interval":            {"SW_KAFKA_LAG_INTERVAL", "5s"},
		"redis.min_replicas_acked":      {"SW_REDIS_MIN_REPLICAS_ACKED", "0"},
		"redis.replica_ack_timeout":     {"SW_REDIS_REPLICA_ACK_TIMEOUT", "1s"},
		"anomaly.window":                {"SW_ANOMALY_WINDOW", "5m"},
		"anomaly.multiplier":            {"SW_ANOMALY_MULTIPLIER", "5"},
		"anomaly.min_events":            {"SW_ANOMALY_MIN_EVENTS", "10"},
		"anomaly.default_average_rate":  {"SW_ANOMALY_DEFAULT_AVERAGE_RATE", "1"},
		"anomaly.min_average_rate":      {"SW_ANOMALY_MIN_AVERAGE_RATE", "0.1"},
		"milestones.every":              {"SW_MILESTONES_EVERY", "100"},
		"milestones.thresholds":         {"SW_MILESTONES_THRESHOLDS", ""},
		"http.addr":                     {"SW_HTTP_ADDR", ":9464"},
		"http.pprof":                    {"SW_HTTP_PPROF", "false"},
	}
	got := map[string]KeyDoc{}
	for _, k := range Keys() {
		got[k.Key] = k
	}
	for key, w := range want {
		k, ok := got[key]
		if !ok || k.Env != w.env || k.Default != w.def {
			t.Errorf("%s: got %+v, want env %s default %q", key, k, w.env, w.def)
		}
	}
	if !got["kafka.sasl.password"].Secret || !got["redis.password"].Secret || got["redis.username"].Secret {
		t.Error("secret keys are not marked")
	}
}

func TestValidate(t *testing.T) {
	def := Default()
	if err := def.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	var zero Config
	err := zero.Validate()
	if err == nil {
		t.Fatal("the zero Config is valid")
	}
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k.Key] = true
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("%T is not a joined error", err)
	}
	for _, e := range joined.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) || !known[fe.Key] {
			t.Errorf("%v does not name a key", e)
		}
	}
	if n := len(joined.Unwrap()); n < 30 {
		t.Errorf("%d problems in the zero Config, want every one", n)
	}
}

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ByteSize
		str  string
	}{
		{"1048576", MiB, "1MiB"}, {"64MiB", 64 * MiB, "64MiB"}, {"512KiB", 512 * KiB, "512KiB"},
		{"3GiB", 3 * GiB, "3GiB"}, {"100B", 100, "100"}, {" 2 MiB ", 2 * MiB, "2MiB"}, {"1536", 1536, "1536"},
		{"0", 0, "0"},
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(tt.in)); err != nil || b != tt.want || b.String() != tt.str {
			t.Errorf("%q: got %d (%s), %v; want %d (%s)", tt.in, b, b, err, tt.want, tt.str)
		}
	}
	for _, in := range []string{"", "64MB", "-1", "1.5MiB", "MiB", "9999999999999GiB", "12 parsecs"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q: got %d, want an error", in, b)
		}
	}
}

func TestSlogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "warn": slog.LevelWarn, "error": slog.LevelError, "info": slog.LevelInfo, "bogus": slog.LevelInfo} {
		if got := (Log{Level: in}).SlogLevel(); got != want {
			t.Errorf("%s: got %v", in, got)
		}
	}
}
