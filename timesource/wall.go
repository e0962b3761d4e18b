package timesource

import "time"

// WallClock reads the host's two clocks. Now is the wall clock, which an
// administrator, a daemon or a resume from suspend may step in either
// direction; Mono is a monotonic reading that never steps. Tests substitute
// a fake whose wall clock can be stepped ±1 h while its monotonic clock
// advances independently.
//
// Mono must be cheap: Corrected.Now calls it on every read.
type WallClock interface {
	// Now returns the host wall-clock time.
	Now() time.Time
	// Mono returns the time elapsed on a monotonic clock since an arbitrary,
	// fixed origin.
	Mono() time.Duration
}

// systemWall is the real WallClock: time.Now without its monotonic reading,
// and Go's runtime monotonic clock.
type systemWall struct{ origin time.Time }

// newSystemWall returns the host's clocks.
func newSystemWall() systemWall { return systemWall{origin: time.Now()} }

// Now returns the wall clock stripped of Go's monotonic reading, so that
// differences between readings are wall-clock differences.
func (s systemWall) Now() time.Time { return time.Now().Round(0) }

// Mono returns the monotonic time since the clock was created. On Linux it
// stops while the machine is suspended; the corrected clock detects that as
// a wall/monotonic divergence and resamples.
func (s systemWall) Mono() time.Duration { return time.Since(s.origin) }
