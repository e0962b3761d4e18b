package fleet

import "strings"

// DefaultNamespace prefixes every key when Config.Namespace is empty.
const DefaultNamespace = "skewproxy"

// semKeys are the Redis keys of one semaphore. All four share one hash
// tag, so that a script touching them runs on one Redis Cluster node.
type semKeys struct {
	leases  string // ZSET lease id -> expiry (Redis TIME, ms)
	waiters string // ZSET waiter id -> ticket (corrected wall time, µs)
	waitExp string // ZSET waiter id -> expiry (Redis TIME, ms)
	aimd    string // HASH limited, eff, successes, epoch, paused_until, peak
}

func (k semKeys) list() []string { return []string{k.leases, k.waiters, k.waitExp, k.aimd} }

// keysFor returns the keys of function fn's semaphore in namespace ns, or
// of the all-functions semaphore when fn is "":
//
//	ns:{ns/fn}:leases   ns:{ns/fn}:waiters   ns:{ns/fn}:waitexp   ns:{ns/fn}:aimd
//	ns:{ns}:leases      ...
//
// The hash tag is the part in braces; braces and "%" in names are escaped
// so that a name cannot end the tag early.
func keysFor(ns, fn string) semKeys {
	tag := escapeTag(ns)
	if fn != "" {
		tag += "/" + escapeTag(fn)
	}
	p := escapeTag(ns) + ":{" + tag + "}:"
	return semKeys{leases: p + "leases", waiters: p + "waiters", waitExp: p + "waitexp", aimd: p + "aimd"}
}

// instancesKey is the ZSET of live proxies (instance id -> expiry), in the
// all-functions semaphore's slot.
func instancesKey(ns string) string {
	return escapeTag(ns) + ":{" + escapeTag(ns) + "}:instances"
}

// releasedChannel is the pub/sub channel on which a release names its
// function, waking the waiters of every proxy at once.
func releasedChannel(ns string) string { return escapeTag(ns) + ":released" }

var tagEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

func escapeTag(s string) string { return tagEscaper.Replace(s) }
