// Connection probes: one Kafka metadata request and one Redis PING with the
// configured addresses, TLS and credentials, and a diagnosis of a failure
// (authentication, TLS, unreachable) naming the keys to look at. Used by
// `config check --connect` and logged once when `run` starts.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamworker/streamworker/config"
)

// Causes of a failed probe, wrapped by a *ProbeError.
var (
	// ErrAuth: the server refused the credentials (SASL, Redis AUTH).
	ErrAuth = errors.New("authentication failed")
	// ErrTLS: the TLS handshake failed (untrusted or mismatched
	// certificate, TLS spoken to a plain listener or the reverse).
	ErrTLS = errors.New("TLS handshake failed")
	// ErrUnreachable: no connection could be made (refused, no route,
	// unknown host, timed out).
	ErrUnreachable = errors.New("unreachable")
	// ErrProtocol: connected, but the answer made no sense (often TLS
	// enabled on one side only).
	ErrProtocol = errors.New("unexpected answer")
)

// ProbeError is a failed probe of Kafka or Redis. Cause is one of ErrAuth,
// ErrTLS, ErrUnreachable and ErrProtocol, or nil when the failure fits none.
type ProbeError struct {
	Service string // "kafka" or "redis"
	Cause   error
	Hint    string // the keys to check
	Err     error  // what the client said
}

// Error returns e.g. "redis: authentication failed (check redis.username,
// redis.password): WRONGPASS invalid username-password pair".
func (e *ProbeError) Error() string {
	cause := "failed"
	if e.Cause != nil {
		cause = e.Cause.Error()
	}
	return fmt.Sprintf("%s: %s (check %s): %v", e.Service, cause, e.Hint, e.Err)
}

// Unwrap returns the cause and the client's error.
func (e *ProbeError) Unwrap() []error { return []error{e.Cause, e.Err} }

// ProbeTimeout bounds one probe when the context has no deadline.
const ProbeTimeout = 10 * time.Second

// ProbeKafka sends one metadata request to the cluster c describes, with its
// TLS and SASL settings, and returns the number of brokers it lists or a
// *ProbeError. It gives up at ctx's deadline, or after ProbeTimeout.
func ProbeKafka(ctx context.Context, c config.Kafka) (int, error) {
	opts, err := KafkaOpts(c)
	if err != nil {
		return 0, err
	}
	ctx, cancel := withProbeDeadline(ctx)
	defer cancel()
	deadline, _ := ctx.Deadline()
	h := &probeHooks{}
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(h), kgo.RequestRetries(2),
		kgo.RetryTimeout(time.Until(deadline)), kgo.DialTimeout(time.Until(deadline)/2))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	resp, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
	if err == nil {
		return len(resp.(*kmsg.MetadataResponse).Brokers), nil
	}
	e := &ProbeError{Service: "kafka", Err: err, Hint: "kafka.brokers"}
	h.mu.Lock()
	dialErr, saslErr := h.dialErr, h.saslErr
	h.mu.Unlock()
	if dialErr != nil && !errors.Is(err, dialErr) && errors.Is(err, context.DeadlineExceeded) {
		e.Err = fmt.Errorf("%w (first error: %w)", err, dialErr)
	}
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.UnsupportedSaslMechanism),
		errors.Is(err, kerr.IllegalSaslState):
		e.Cause, e.Hint = ErrAuth, kafkaSASLKeys
	case saslErr != nil:
		// Some brokers close the connection on failed credentials
		// instead of answering with SASL_AUTHENTICATION_FAILED.
		e.Cause, e.Hint = ErrAuth, kafkaSASLKeys
		e.Err = fmt.Errorf("the broker closed the connection during SASL authentication: %w", saslErr)
	case e.transport(err, c.TLS.Enabled, c.Brokers, "kafka.tls.*", "listener"):
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		strings.Contains(err.Error(), "invalid large response size"):
		// A TLS listener answers a plain request with an alert or by
		// closing; a SASL listener closes on a request before the
		// handshake.
		e.Cause, e.Hint = ErrProtocol, "kafka.tls.enabled and kafka.sasl.mechanism: the listener may expect TLS or SASL"
	}
	return 0, e
}

const kafkaSASLKeys = "kafka.sasl.mechanism, kafka.sasl.username, kafka.sasl.password"

// withProbeDeadline returns ctx with ProbeTimeout as its deadline if it has
// none.
func withProbeDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, ProbeTimeout)
}

// probeHooks records the first failed connection and the first failed SASL
// exchange of a probe's client.
type probeHooks struct {
	mu      sync.Mutex
	dialErr error
	saslErr error
}

func (h *probeHooks) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil && h.dialErr == nil {
		h.dialErr = err
	}
}

func (h *probeHooks) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil && h.saslErr == nil && (key == int16(kmsg.SASLAuthenticate) || key == int16(kmsg.SASLHandshake)) {
		h.saslErr = err
	}
}

// tcpConnects reports whether a plain TCP connection to one of addrs opens.
func tcpConnects(addrs []string) bool {
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			_ = c.Close()
			return true
		}
	}
	return false
}

// ProbeRedis sends one PING to the Redis c describes, with its TLS settings
// and credentials, and returns a *ProbeError when it fails. It gives up at
// ctx's deadline, or after ProbeTimeout.
func ProbeRedis(ctx context.Context, c config.Redis) error {
	rc, err := RedisClient(c)
	if err != nil {
		return err
	}
	defer rc.Close()
	ctx, cancel := withProbeDeadline(ctx)
	defer cancel()
	err = rc.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	e := &ProbeError{Service: "redis", Err: err, Hint: "redis.addr"}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "NOPERM"),
		strings.Contains(msg, "AUTH") && strings.Contains(msg, "without any password configured"):
		e.Cause, e.Hint = ErrAuth, "redis.username, redis.password"
	case e.transport(err, c.TLS.Enabled, c.Addrs, "redis.tls.*", "server"):
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), strings.Contains(msg, "redis: invalid reply"):
		e.Cause, e.Hint = ErrProtocol, "redis.tls.enabled: the server may expect TLS, or not"
	}
	return e
}

func isTLSError(err error) bool {
	var (
		header   tls.RecordHeaderError
		alert    tls.AlertError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &header) || errors.As(err, &alert) || errors.As(err, &verify) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		strings.Contains(err.Error(), "tls: ")
}

func isUnreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED)
}

// Probe probes Kafka and Redis at once and returns both results; nil means
// reachable and accepted.
func Probe(ctx context.Context, c config.Config) (kafkaErr, redisErr error) {
	var wg sync.WaitGroup
	wg.Go(func() { _, kafkaErr = ProbeKafka(ctx, c.Kafka) })
	wg.Go(func() { redisErr = ProbeRedis(ctx, c.Redis) })
	wg.Wait()
	return kafkaErr, redisErr
}

// logProbe probes Kafka and Redis once and logs each failure as an error
// naming its cause. It does not stop anything: the worker retries, and a
// server that comes up later is fine.
func logProbe(ctx context.Context, c config.Config, log *slog.Logger) {
	kafkaErr, redisErr := Probe(ctx, c)
	for _, err := range []error{kafkaErr, redisErr} {
		if err == nil || ctx.Err() != nil {
			continue
		}
		attrs := []any{"err", err}
		var pe *ProbeError
		if errors.As(err, &pe) {
			attrs = append(attrs, "service", pe.Service, "check", pe.Hint)
			if pe.Cause != nil {
				attrs = append(attrs, "cause", pe.Cause.Error())
			}
		}
		log.Error("start-up connection check failed; the worker keeps retrying", attrs...)
	}
}

// transport sets e's cause when err is a failure below the protocol: a TLS
// error, a TLS handshake that never completes on a port that accepts TCP
// (tlsKeys names the keys to check), or an unreachable address. It reports
// whether err was one.
func (e *ProbeError) transport(err error, tls bool, addrs []string, tlsKeys, peer string) bool {
	switch {
	case isTLSError(err):
		e.Cause, e.Hint = ErrTLS, tlsKeys
	case tls && isUnreachable(err) && tcpConnects(addrs):
		e.Cause, e.Hint = ErrTLS, tlsKeys
		e.Err = fmt.Errorf("TCP connects but the TLS handshake did not complete (does the %s speak TLS?): %w", peer, err)
	case isUnreachable(err):
		e.Cause = ErrUnreachable
	default:
		return false
	}
	return true
}
