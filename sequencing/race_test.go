//go:build race

package sequencing

// raceEnabled reports a -race build, under which the randomized tests run
// fewer cases.
const raceEnabled = true
