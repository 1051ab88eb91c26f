package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { Main(m) }

// TestBackends runs a short smoke suite on each backend: a record's round
// trip through Kafka and a SET/GET through Redis. The embedded backend runs
// everywhere; the others skip with the reason unless configured.
func TestBackends(t *testing.T) {
	for _, b := range []Backend{Embedded, External, Testcontainers} {
		t.Run(string(b), func(t *testing.T) {
			t.Run("kafka", func(t *testing.T) { smokeKafka(t, b) })
			t.Run("redis", func(t *testing.T) { smokeRedis(t, b) })
		})
	}
}

func smokeKafka(t *testing.T, b Backend) {
	k := Kafka(t, withKafkaBackend(b), WithTopics("smoke"), WithPartitions(2))
	if k.Backend() != b {
		t.Fatalf("Backend() = %s, want %s", k.Backend(), b)
	}
	if (k.Cluster() != nil) != (b == Embedded) {
		t.Fatalf("Cluster() = %v on the %s backend", k.Cluster(), b)
	}
	topic := k.Topic("smoke")
	if k.Topic(topic) != topic {
		t.Fatalf("Topic is not idempotent: %q -> %q", topic, k.Topic(topic))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p := k.Client(t)
	want := &kgo.Record{Topic: topic, Key: []byte("u-42"), Value: []byte(`{"id":"evt-1"}`)}
	if err := p.ProduceSync(ctx, want).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	c := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := c.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		t.Fatalf("poll: %v", err)
	}
	recs := fs.Records()
	if len(recs) != 1 || string(recs[0].Key) != "u-42" || string(recs[0].Value) != string(want.Value) {
		t.Fatalf("consumed %v, want the produced record", recs)
	}

	k.CreateTopics(t, 4, "more")
	md, err := k.Admin(t).ListTopics(ctx, k.Topic("more"))
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	if n := len(md[k.Topic("more")].Partitions); n != 4 {
		t.Fatalf("created topic has %d partitions, want 4", n)
	}
}

func smokeRedis(t *testing.T, b Backend) {
	r := Redis(t, withRedisBackend(b))
	if r.Backend() != b {
		t.Fatalf("Backend() = %s, want %s", r.Backend(), b)
	}
	if r.CanRestart() != (b == Embedded) {
		t.Fatalf("CanRestart() = %v on the %s backend", r.CanRestart(), b)
	}
	ctx := context.Background()
	c := r.Client(t)
	key := r.Prefix() + ":{smoke}:k"
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
}

func TestRedisRestart(t *testing.T) {
	tests := []struct {
		name     string
		opts     []RedisOption
		restart  func(*RedisServer)
		survives bool
	}{
		{"aof stop", []RedisOption{WithAOF()}, (*RedisServer).Stop, true},
		{"aof kill", []RedisOption{WithAOF()}, (*RedisServer).Kill, true},
		{"no aof", nil, (*RedisServer).Stop, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Redis(t, append(tt.opts, withRedisBackend(Embedded))...)
			ctx := context.Background()
			c := r.Client(t)
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			addr := r.Addr()
			tt.restart(r)
			if err := ping(addr); err == nil {
				t.Fatal("PING answered while the server is down")
			}
			r.Start()
			if r.Addr() != addr {
				t.Fatalf("restarted on %s, want %s", r.Addr(), addr)
			}
			got, err := c.Get(ctx, "k").Result()
			switch {
			case tt.survives && (err != nil || got != "v"):
				t.Fatalf("after restart GET = %q, %v; want v", got, err)
			case !tt.survives && err != redis.Nil:
				t.Fatalf("after restart GET = %q, %v; want redis.Nil", got, err)
			}
		})
	}
}

func TestBackendFromEnv(t *testing.T) {
	t.Setenv("REDIS_ADDR", "127.0.0.1:1")
	t.Setenv("SW_TEST_BACKEND", "")
	if got := backendFor(t, "REDIS_ADDR"); got != External {
		t.Fatalf("backend with REDIS_ADDR set = %s, want external", got)
	}
	t.Setenv("SW_TEST_BACKEND", "embedded")
	if got := backendFor(t, "REDIS_ADDR"); got != Embedded {
		t.Fatalf("backend with SW_TEST_BACKEND=embedded = %s, want embedded", got)
	}
}

// fakeTB records a fatal failure and stops the calling function the way
// testing.T does (runtime.Goexit is replaced by a panic recovered below).
type fakeTB struct {
	testing.TB
	failed string
}

type fatal struct{}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	panic(fatal{})
}

func runFake(fn func(tb testing.TB)) (failed string) {
	f := &fakeTB{}
	defer func() {
		if r := recover(); r != nil && r != (fatal{}) {
			panic(r)
		}
		failed = f.failed
	}()
	fn(f)
	return ""
}

func TestEventually(t *testing.T) {
	n := 0
	if msg := runFake(func(tb testing.TB) {
		Eventually(tb, time.Second, func() bool { n++; return n == 3 }, "never")
	}); msg != "" || n != 3 {
		t.Fatalf("Eventually failed (%q) or polled %d times, want success after 3", msg, n)
	}
	start := time.Now()
	msg := runFake(func(tb testing.TB) {
		Eventually(tb, 50*time.Millisecond, func() bool { return false }, "offset %d not committed", 7)
	})
	if !strings.Contains(msg, "offset 7 not committed") || !strings.Contains(msg, "50ms") {
		t.Fatalf("failure message %q lacks the formatted message or timeout", msg)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("Eventually gave up before its timeout")
	}
}

func TestFreePort(t *testing.T) {
	if p := FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
}

func TestBuildBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	const pkg = "./internal/testenv/testdata/hello"
	bin := BuildBinary(t, pkg)
	if again := BuildBinary(t, pkg); again != bin {
		t.Fatalf("second BuildBinary = %q, want the cached %q", again, bin)
	}
	out, err := exec.Command(bin, "a", "b").Output()
	if err != nil || string(out) != "hello 2\n" {
		t.Fatalf("running %s: %q, %v", bin, out, err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	}
}
