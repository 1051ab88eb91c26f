//go:build !testcontainers

package testenv

import "testing"

const containersOff = "testenv: the testcontainers backend is compiled only with -tags testcontainers"

func redisContainer(tb testing.TB) string {
	tb.Skip(containersOff)
	return ""
}

func kafkaContainer(tb testing.TB) []string {
	tb.Skip(containersOff)
	return nil
}
