// Tests of the connection probes against kfake over TCP (with and without
// SASL) and a real redis-server child with requirepass.
package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testenv"
)

// kfakeCluster starts a one-broker kfake cluster for t.
func kfakeCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// redisWithPassword starts a redis-server child that requires password and
// returns its address.
func redisWithPassword(t *testing.T, password string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH")
	}
	port := testenv.FreePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--requirepass", password)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	rc := redis.NewClient(&redis.Options{Addr: addr, Password: password})
	defer rc.Close()
	testenv.Eventually(t, 10*time.Second, func() bool { return rc.Ping(context.Background()).Err() == nil },
		"redis-server never answered")
	return addr
}

// selfSigned returns a TLS server configuration with a self-signed
// certificate for 127.0.0.1, which no client trusts.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// closedAddr returns an address nothing listens on.
func closedAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
}

func TestProbeKafka(t *testing.T) {
	plain := kfakeCluster(t)
	sasl := kfakeCluster(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "admin", "right-password"))
	withTLS := kfakeCluster(t, kfake.TLS(selfSigned(t)))
	cases := []struct {
		name      string
		brokers   []string
		mechanism string
		password  string
		tls       bool
		want      error // nil: success
		wantText  string
	}{
		{name: "reachable", brokers: plain},
		{name: "SASL accepted", brokers: sasl, mechanism: "PLAIN", password: "right-password"},
		{name: "wrong SASL password", brokers: sasl, mechanism: "PLAIN", password: "wrong",
			want: ErrAuth, wantText: "kafka: authentication failed (check kafka.sasl.mechanism, kafka.sasl.username, kafka.sasl.password)"},
		{name: "user unknown to the mechanism", brokers: sasl, mechanism: "SCRAM-SHA-512", password: "right-password",
			want: ErrAuth, wantText: "kafka: authentication failed"},
		{name: "SASL to a listener without SASL", brokers: plain, mechanism: "PLAIN", password: "right-password",
			want: ErrAuth, wantText: "kafka: authentication failed"},
		{name: "nothing listens", brokers: []string{closedAddr(t)},
			want: ErrUnreachable, wantText: "kafka: unreachable (check kafka.brokers)"},
		{name: "untrusted certificate", brokers: withTLS, tls: true, want: ErrTLS,
			wantText: "kafka: TLS handshake failed (check kafka.tls.*): unable to dial: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{name: "plain to a TLS listener", brokers: withTLS, want: ErrProtocol,
			wantText: "kafka: unexpected answer (check kafka.tls.enabled and kafka.sasl.mechanism"},
		{name: "TLS to a plain listener", brokers: plain, tls: true, want: ErrTLS,
			wantText: "kafka: TLS handshake failed (check kafka.tls.*): TCP connects but the TLS handshake did not complete"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default().Kafka
			c.Brokers = tc.brokers
			if tc.mechanism != "" {
				c.SASL = config.SASL{Mechanism: tc.mechanism, Username: "admin", Password: config.Secret(tc.password)}
			}
			c.TLS.Enabled = tc.tls
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			n, err := ProbeKafka(ctx, c)
			if tc.want == nil {
				if err != nil || n != 1 {
					t.Fatalf("ProbeKafka = %d, %v; want 1 broker", n, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("ProbeKafka error %v; want %v containing %q", err, tc.want, tc.wantText)
			}
			t.Log(err)
			if tc.password != "" && strings.Contains(err.Error(), tc.password) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestProbeRedis(t *testing.T) {
	addr := redisWithPassword(t, "right-password")
	cases := []struct {
		name     string
		addr     string
		password string
		tls      bool
		want     error
		wantText string
	}{
		{name: "right password", addr: addr, password: "right-password"},
		{name: "wrong password", addr: addr, password: "wrong",
			want: ErrAuth, wantText: "redis: authentication failed (check redis.username, redis.password): WRONGPASS"},
		{name: "no password", addr: addr, want: ErrAuth, wantText: "redis: authentication failed (check redis.username, redis.password): NOAUTH"},
		{name: "nothing listens", addr: closedAddr(t), want: ErrUnreachable, wantText: "redis: unreachable (check redis.addr)"},
		{name: "TLS to a plain server", addr: addr, password: "right-password", tls: true,
			want: ErrTLS, wantText: "redis: TLS handshake failed (check redis.tls.*): TCP connects but the TLS handshake did not complete"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default().Redis
			c.Addrs, c.Password, c.TLS.Enabled = []string{tc.addr}, config.Secret(tc.password), tc.tls
			c.DialTimeout, c.Timeout = 2*time.Second, 2*time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := ProbeRedis(ctx, c)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("ProbeRedis error %v; want %v containing %q", err, tc.want, tc.wantText)
			}
			t.Log(err)
		})
	}
}

// TestRunLogsAuthenticationFailures: `run` with a wrong Redis password and a
// wrong SASL password logs an error for each at start, naming the cause, and
// keeps running.
func TestRunLogsAuthenticationFailures(t *testing.T) {
	c := config.Default()
	c.Kafka.Brokers = kfakeCluster(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "admin", "right-password"))
	c.Kafka.SASL = config.SASL{Mechanism: "PLAIN", Username: "admin", Password: "wrong-kafka-password"}
	c.Redis.Addrs = []string{redisWithPassword(t, "right-password")}
	c.Redis.Password = "wrong-redis-password"
	c.HTTP.Addr = "127.0.0.1:0"
	var logs testenv.LockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, log, nil) }()
	defer func() {
		cancel()
		<-done
	}()
	for _, want := range []string{
		`"level":"ERROR","msg":"start-up connection check failed; the worker keeps retrying","err":"redis: authentication failed`,
		`"level":"ERROR","msg":"start-up connection check failed; the worker keeps retrying","err":"kafka: authentication failed`,
	} {
		testenv.Eventually(t, 20*time.Second, func() bool { return strings.Contains(logs.String(), want) },
			"no log line "+want+"\n"+logs.String())
	}
	if s := logs.String(); strings.Contains(s, "wrong-kafka-password") || strings.Contains(s, "wrong-redis-password") {
		t.Errorf("a password was logged:\n%s", s)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v; want it to keep running", err)
	default:
	}
}
