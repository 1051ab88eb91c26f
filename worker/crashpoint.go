//go:build !swcrashpoints

package worker

// crashPoint is a named moment of the pipeline where a test binary built
// with the tag swcrashpoints can kill itself (see crashpoint_test_hook.go).
// In every other build it does nothing and compiles away.
func crashPoint(string) {}
