// Package timesource provides skewproxy's corrected clock: the best estimate
// of true UTC, built from NTP (the Amazon Time Sync Service) and from the
// times AWS itself reports, anchored to the host's monotonic clock.
//
// It is not a general NTP library and it never sets the host clock; it does
// not import proxy or signer.
package timesource

import "time"

// Clock is the corrected clock every signature's timestamp is read from.
// Implementations are safe for concurrent use.
type Clock interface {
	// Now returns the best estimate of true UTC. It never follows a step of
	// the host wall clock once any source has answered.
	Now() time.Time
	// Status describes the current estimate for /status and telemetry.
	Status() Status
	// Observe feeds a passive observation (an HTTP Date header, the server
	// time carried in a skew error) into the estimate.
	Observe(Observation)
}

// Status is a snapshot of the corrected clock, as /status reports it.
type Status struct {
	// Synced is true once an authoritative source (NTP, or a passive AWS
	// observation) has answered.
	Synced bool `json:"synced"`
	// Source names the source of the current estimate, e.g.
	// "ntp://169.254.169.123" or "http-date:sts.amazonaws.com"; "host" when
	// nothing has answered yet.
	Source string `json:"source"`
	// CorrectedTime is Now() at the moment of the snapshot.
	CorrectedTime time.Time `json:"corrected_time"`
	// Offset is the host clock minus true time (positive: host ahead).
	Offset time.Duration `json:"-"`
	// Uncertainty bounds the error of CorrectedTime.
	Uncertainty time.Duration `json:"-"`
	// LastSync is the true time of the last accepted sample; zero if none.
	LastSync time.Time `json:"last_sync"`
	// Smeared is true when the estimate comes from a leap-smearing source
	// (all NTP servers on AWS smear).
	Smeared bool `json:"leap_smeared"`
	// Reason says why Synced is false (empty when synced).
	Reason string `json:"reason,omitempty"`
	// Passive is true when the estimate comes from a passive observation
	// (an HTTP Date header, a skew error) rather than NTP: synced, but only
	// to within Precision.
	Passive bool `json:"passive,omitempty"`
	// Precision is the resolution of the current source's time (one second
	// for an HTTP Date header; zero for NTP).
	Precision time.Duration `json:"-"`
}

// Observation is a time reported by a server, bracketed by two readings of
// the corrected clock taken just before the request was sent and just after
// the answer's headers arrived.
type Observation struct {
	// Source names where the time came from, e.g.
	// "http-date:lambda.us-east-1.amazonaws.com", or
	// "https-date:sts.amazonaws.com" from a DateProbe.
	Source string
	// ServerTime is the time the server reported.
	ServerTime time.Time
	// Precision is the resolution of ServerTime (one second for an HTTP Date
	// header or an error message).
	Precision time.Duration
	// Sent and Received are Clock.Now() readings taken around the exchange.
	Sent, Received time.Time
	// Uncertainty is extra uncertainty added to the observation's own
	// (half its round trip plus half its Precision), for weakly trusted
	// sources such as a bootstrap HTTPS Date header; zero or negative adds
	// none.
	Uncertainty time.Duration
}
