package timesource

import (
	"errors"
	"fmt"
	"time"
)

// maxYearsPastFloor is how far past the build-time floor a time may lie
// before it is refused as absurd. A binary is not run a century after its
// build, but a corrupt answer, a wrapped NTP era or a forged Date header
// can claim it.
const maxYearsPastFloor = 100

// latestWithoutFloor is the latest time accepted when no floor is set
// (NotBefore is zero): the start of the year 2200.
var latestWithoutFloor = time.Date(2200, time.January, 1, 0, 0, 0, 0, time.UTC)

// errImplausibleTime marks a source's time refused by checkPlausible.
var errImplausibleTime = errors.New("implausible time")

// latestPlausible returns the latest time accepted under the floor
// notBefore: notBefore plus maxYearsPastFloor years, or latestWithoutFloor
// when notBefore is zero.
func latestPlausible(notBefore time.Time) time.Time {
	if notBefore.IsZero() {
		return latestWithoutFloor
	}
	return notBefore.AddDate(maxYearsPastFloor, 0, 0)
}

// checkPlausible refuses t when it is earlier than the build-time floor
// notBefore (zero: no floor) or later than latestPlausible(notBefore). The
// error wraps errImplausibleTime and names both times.
func checkPlausible(t, notBefore time.Time) error {
	const layout = time.RFC3339
	if !notBefore.IsZero() && t.Before(notBefore) {
		return fmt.Errorf("%w: %s is before the build-time floor %s",
			errImplausibleTime, t.UTC().Format(layout), notBefore.UTC().Format(layout))
	}
	if latest := latestPlausible(notBefore); t.After(latest) {
		return fmt.Errorf("%w: %s is after the latest plausible time %s",
			errImplausibleTime, t.UTC().Format(layout), latest.UTC().Format(layout))
	}
	return nil
}
