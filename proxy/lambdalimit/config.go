package lambdalimit

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// DefaultQueueTimeout is how long an invoke may wait in the queue when
// Config.QueueTimeout is zero.
const DefaultQueueTimeout = 4 * time.Minute

// Config configures a Limiter. The zero value admits everything at once
// (no limits) with the default queue timeout.
type Config struct {
	// MaxInflight bounds the invokes in flight across all functions
	// (--lambda-max-inflight); 0 means no total limit.
	MaxInflight int
	// FunctionMaxInflight bounds the invokes in flight per function
	// (--lambda-function-max-inflight NAME=N). Keys may be written in any
	// form ParseFunction accepts (name, name:qualifier, partial or full
	// ARN); they are normalised to the bare name, so a limit applies to an
	// invoke whatever form the client used. When two keys name the same
	// function the smaller limit wins. A value of 0 means no limit.
	FunctionMaxInflight map[string]int
	// LimitEvents also holds Event (asynchronous) invokes. By default they
	// pass at once: Lambda queues them itself and answers immediately.
	// DryRun invokes always pass at once.
	LimitEvents bool
	// QueueTimeout is the longest an invoke waits before it is refused with
	// a 429 (--lambda-queue-timeout); 0 means DefaultQueueTimeout. It also
	// caps how long an upstream Retry-After pauses a function.
	QueueTimeout time.Duration
	// MaxQueue bounds the invokes waiting across all functions; an invoke
	// that finds the queue full is refused at once. 0 means no bound.
	MaxQueue int
	// Now reads the limiter's own timeline: queue age and how long a
	// Retry-After pause lasts. Only differences between its readings count,
	// so nil means time.Now and its monotonic reading. (Timers always run
	// on real time.)
	Now func() time.Time
	// Clock is the corrected wall clock an HTTP-date Retry-After is
	// judged by (a host clock off by hours would make a date pause for
	// hours or not at all). nil means Now.
	Clock func() time.Time
	// Coordinator, when set, makes MaxInflight and FunctionMaxInflight
	// fleet-wide: every admitted invoke also takes a slot from it (package
	// lambdalimit/fleet keeps them in Redis). nil keeps the limits local.
	Coordinator Coordinator
	// Logger receives debug events (throttles, pauses, refusals); nil
	// discards them. Only function names and durations are logged.
	Logger *slog.Logger
}

func (c Config) queueTimeout() time.Duration {
	if c.QueueTimeout <= 0 {
		return DefaultQueueTimeout
	}
	return c.QueueTimeout
}

func (c Config) now() func() time.Time {
	if c.Now == nil {
		return time.Now // monotonic: only differences of readings are used
	}
	return c.Now
}

func (c Config) clock() func() time.Time {
	if c.Clock == nil {
		return c.now()
	}
	return c.Clock
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// functionLimits normalises FunctionMaxInflight to queue keys.
func (c Config) functionLimits() map[string]int {
	out := make(map[string]int, len(c.FunctionMaxInflight))
	for ident, n := range c.FunctionMaxInflight {
		if n <= 0 {
			continue
		}
		k := FunctionKey(ident)
		if old, ok := out[k]; !ok || n < old {
			out[k] = n
		}
	}
	return out
}

// ParseFunctionMaxInflight parses repeated --lambda-function-max-inflight
// values of the form NAME=N (N >= 0) into a map for
// Config.FunctionMaxInflight. NAME may be any form ParseFunction accepts.
func ParseFunctionMaxInflight(specs []string) (map[string]int, error) {
	out := make(map[string]int, len(specs))
	for _, s := range specs {
		name, num, ok := strings.Cut(s, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("lambda function limit %q: want NAME=N", s)
		}
		n, err := strconv.Atoi(strings.TrimSpace(num))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("lambda function limit %q: N must be a whole number >= 0", s)
		}
		out[name] = n
	}
	return out, nil
}
