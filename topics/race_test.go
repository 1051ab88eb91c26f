//go:build race

package topics_test

// raceEnabled reports a build with the race detector, which adds
// allocations of its own to some code paths.
const raceEnabled = true
