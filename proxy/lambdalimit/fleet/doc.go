// Package fleet makes the Lambda invoke limits of many skewproxy processes
// one fleet-wide limit, kept in Redis: a lambdalimit.Coordinator.
//
// Each function is a distributed semaphore, and --lambda-max-inflight one
// more over all functions. A slot is a lease with a TTL that the proxy
// renews while the invoke runs and removes when it ends, so a proxy that
// dies loses its slots within one TTL. Waiters queue in their own proxy
// (lambdalimit.Limiter); only the oldest local waiter of a semaphore
// registers in Redis, with its arrival in corrected wall time as ticket,
// and a slot goes to the oldest registered ticket across the fleet. The
// reaction to Lambda's 429s (halve on a throttle, +1 per window of
// successes, Retry-After) runs in Redis too, so one proxy's throttle slows
// every proxy. Every step is one atomic Lua script; the keys of a function
// share one Redis Cluster hash tag, and the all-functions semaphore has its
// own.
//
// When Redis does not answer within Config.Timeout, the coordinator falls
// back (lambdalimit.ModeLocal: each proxy keeps ceil(limit / fleet size)
// locally; lambdalimit.ModeClosed: held invokes are refused with a 429),
// keeps its leases, probes Redis, and returns to shared limits when it
// answers again, registering again the leases it granted meanwhile.
//
// It is not a general-purpose lock or rate limiter, it does not queue
// requests itself (lambdalimit does), and it never reads the host's wall
// clock: lease expiry is judged by Redis's own clock (TIME, one clock for
// the whole fleet), tickets by the proxy's corrected clock.
package fleet
