//go:build race

package signer

// raceEnabled: the race detector changes allocation counts (sync.Pool
// drops items on purpose), so allocation budgets are not checked.
const raceEnabled = true
