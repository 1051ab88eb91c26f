// Package app wires the configuration into running parts: the Kafka and
// Redis clients, the worker, and the HTTP endpoint of metrics and health.
package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/streamworker/streamworker/config"
)

// KafkaOpts returns the client options that reach the cluster c describes:
// seed brokers, client ID, TLS and SASL.
func KafkaOpts(c config.Kafka) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID)}
	if c.TLS.Enabled {
		tc, err := tlsConfig(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	user, pass := c.SASL.Username, c.SASL.Password.Reveal()
	switch c.SASL.Mechanism {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: unknown mechanism %q", c.SASL.Mechanism)
	}
	return opts, nil
}

// RedisClient returns a client for the Redis c describes: one address is a
// single node, several are a Cluster, and a master name means Sentinel.
func RedisClient(c config.Redis) (redis.UniversalClient, error) {
	opts := &redis.UniversalOptions{
		Addrs:        c.Addrs,
		Username:     c.Username,
		Password:     c.Password.Reveal(),
		DB:           c.DB,
		MasterName:   c.MasterName,
		DialTimeout:  c.DialTimeout,
		ReadTimeout:  c.Timeout,
		WriteTimeout: c.Timeout,
		PoolSize:     c.PoolSize,
	}
	if c.TLS.Enabled {
		tc, err := tlsConfig(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("redis.tls: %w", err)
		}
		opts.TLSConfig = tc
	}
	return redis.NewUniversalClient(opts), nil
}

func tlsConfig(c config.TLS) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // opt-in, documented as testing only
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
