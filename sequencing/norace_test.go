//go:build !race

package sequencing

const raceEnabled = false
