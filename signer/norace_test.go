//go:build !race

package signer

// raceEnabled is false in a build without the race detector.
const raceEnabled = false
