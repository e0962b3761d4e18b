package awserrors

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Host clock verdicts of an Explanation.
const (
	HostClockBehind  = "behind"
	HostClockAhead   = "ahead"
	HostClockUnknown = "unknown"
)

// Explanation says what an AWS error means for the host's clock and what to
// do about it. It is the JSON form of `skewproxy explain --json`.
type Explanation struct {
	// Failure is the class of failure; "" when the input was not recognised.
	Failure Failure `json:"failure"`
	// HostClock is "behind", "ahead" or "unknown".
	HostClock string `json:"host_clock"`
	// SkewSeconds is the signing time minus the server time (negative: the
	// host clock is behind); nil when unknown or not a clock problem.
	SkewSeconds *float64 `json:"skew_seconds"`
	// ServerTime is the server's time quoted in the error, if any.
	ServerTime *time.Time `json:"server_time"`
	// Advice says what to do, in one paragraph.
	Advice string `json:"advice"`

	signingTime time.Time
	expires     time.Time
	code        string
}

// queueSlack is how far past the server's window a signature may be and
// still be blamed on client-side queueing rather than the host clock.
const queueSlack = time.Minute

// defaultSkewWindow is the tolerance of most AWS services (S3 allows 15 min).
const defaultSkewWindow = 5 * time.Minute

var (
	// aws CLI and boto: "An error occurred (Code) when calling the Op
	// operation (reached max retries: 4): message".
	cliErrorRE = regexp.MustCompile(`(?s)An error occurred \(([^)]*)\)(?: when calling the \S+ operation)?(?: \(reached max retries: \d+\))?:\s*(.*)`)
	// aws-sdk-go-v2: "operation error Lambda: Invoke, https response error
	// StatusCode: 403, RequestID: abc, api error Code: message".
	goSDKErrorRE  = regexp.MustCompile(`(?s)api error ([A-Za-z0-9_.#]+): (.*)`)
	goSDKStatusRE = regexp.MustCompile(`StatusCode: (\d{3})`)
	goSDKReqIDRE  = regexp.MustCompile(`RequestID: ([A-Za-z0-9-]+)`)
	// JavaScript, Java and plain "Code: message" forms.
	codePrefixRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]*): (.*)`)
)

// Explain parses an AWS error as a person would paste it (the line the
// AWS CLI prints, an SDK error string, a JSON error body, or an S3 or query
// XML error body) and says which clock is off, by how much, and what to do.
// Unrecognised input gives Failure "" and HostClock "unknown".
func Explain(message string) Explanation {
	return explainClassification(classifyText(message))
}

// classifyText classifies free-form error text.
func classifyText(message string) Classification {
	s := strings.TrimSpace(message)
	if len(s) > classifyMaxBody {
		s = s[:classifyMaxBody]
	}
	// An error body, maybe after a prefix such as "Response body:".
	if i := strings.IndexAny(s, "{<"); i >= 0 {
		if c := Classify(0, nil, []byte(s[i:])); c.Failure != FailureNone {
			return c
		}
	}
	var f errorFields
	status := 0
	switch {
	case cliErrorRE.MatchString(s):
		m := cliErrorRE.FindStringSubmatch(s)
		f.code, f.message = m[1], m[2]
	case goSDKErrorRE.MatchString(s):
		m := goSDKErrorRE.FindStringSubmatch(s)
		f.code, f.message = m[1], m[2]
		if sm := goSDKStatusRE.FindStringSubmatch(s); sm != nil {
			status, _ = strconv.Atoi(sm[1])
		}
		if rm := goSDKReqIDRE.FindStringSubmatch(s); rm != nil {
			f.requestID = rm[1]
		}
	default:
		f.message = s
		if m := codePrefixRE.FindStringSubmatch(s); m != nil && looksLikeCode(m[1]) {
			f.code, f.message = m[1], m[2]
		}
	}
	return classifyFields(status, f)
}

// looksLikeCode tells an error code ("ExpiredTokenException") from the
// first word of a message ("Signature expired: ...").
func looksLikeCode(s string) bool {
	if oneOf(s, expiredTokenCodes) || oneOf(s, throttleCodes) {
		return true
	}
	for _, suffix := range []string{"Exception", "Error", "Fault", "DoesNotMatch", "TooSkewed", "Expired", "Denied"} {
		if strings.HasSuffix(s, suffix) && len(s) > len(suffix) {
			return true
		}
	}
	return false
}

// explainClassification turns a classification into advice.
func explainClassification(c Classification) Explanation {
	e := Explanation{
		Failure:     c.Failure,
		HostClock:   HostClockUnknown,
		signingTime: c.SigningTime,
		expires:     c.Expires,
		code:        c.Code,
	}
	if !c.ServerTime.IsZero() {
		st := c.ServerTime
		e.ServerTime = &st
	}
	var skew time.Duration
	known := c.Failure.IsSkew() && !c.SigningTime.IsZero() && !c.ServerTime.IsZero()
	if known {
		skew = c.SigningTime.Sub(c.ServerTime)
		secs := skew.Seconds()
		e.SkewSeconds = &secs
		switch {
		case skew < 0:
			e.HostClock = HostClockBehind
		case skew > 0:
			e.HostClock = HostClockAhead
		}
	} else {
		switch c.Failure {
		case FailureSignatureExpired:
			e.HostClock = HostClockBehind
		case FailureSignatureNotYetCurrent:
			e.HostClock = HostClockAhead
		}
	}
	window := c.Window
	if window == 0 {
		window = defaultSkewWindow
	}
	e.Advice = advice(c, known, skew, window)
	return e
}

const fixClock = "Fix time sync on the host (chronyd or systemd-timesyncd pointed at the Amazon Time Sync Service: 169.254.169.123, fd00:ec2::123 or time.aws.com), or put skewproxy in front: it signs every request at send time with a corrected clock, whatever the host clock says."

func advice(c Classification, known bool, skew time.Duration, window time.Duration) string {
	switch c.Failure {
	case FailureSignatureExpired:
		age := -skew
		switch {
		case known && age >= window-time.Second && age <= window+queueSlack:
			return fmt.Sprintf("The signature was %s old when AWS checked it, just past the %s AWS allows. "+
				"If the host clock is otherwise in sync, the request was most likely signed and then waited in a client-side queue: "+
				"an SDK with a fixed socket pool (the Node.js SDK keeps 50) queues further invokes after signing them, and every signature that waits %s is dead. "+
				"Raise the SDK's socket limit or lower its concurrency, or put skewproxy in front: it queues Lambda invokes itself and signs each request only when it is sent. "+
				"If the host clock really is %s behind, fix NTP/chrony.",
				humanDuration(age), humanDuration(window), humanDuration(window), humanDuration(age))
		case known:
			return fmt.Sprintf("The host clock is %s behind AWS (signed at %s, AWS's clock read %s; AWS allows %s). %s",
				humanDuration(age), stamp(c.SigningTime), stamp(c.ServerTime), humanDuration(window), fixClock)
		default:
			return "The signature was older than AWS allows (5 minutes for most services): either the host clock is behind, " +
				"or the request waited in a client-side queue (an SDK socket pool) after it was signed. " + fixClock
		}
	case FailureSignatureNotYetCurrent:
		if known {
			return fmt.Sprintf("The host clock is %s ahead of AWS (signed at %s, AWS's clock read %s). %s",
				humanDuration(skew), stamp(c.SigningTime), stamp(c.ServerTime), fixClock)
		}
		return "The signature is dated in the future: the host clock is ahead of AWS. " + fixClock
	case FailureRequestTimeTooSkewed:
		allowed := "15m (S3)"
		if c.Window > 0 {
			allowed = humanDuration(c.Window)
		}
		if known {
			dir := "behind"
			if skew > 0 {
				dir = "ahead of"
			}
			return fmt.Sprintf("The host clock is %s %s AWS (request time %s, server time %s; the service allows %s). %s",
				humanDuration(skew), dir, stamp(c.SigningTime), stamp(c.ServerTime), allowed, fixClock)
		}
		return "The request time differs from AWS's clock by more than the service allows (15 minutes for S3, 5 for most others): the host clock is off. " + fixClock
	case FailurePresignedExpired:
		when := ""
		if !c.Expires.IsZero() && !c.ServerTime.IsZero() {
			when = fmt.Sprintf(" It expired at %s and AWS's clock read %s (%s later).",
				stamp(c.Expires), stamp(c.ServerTime), humanDuration(c.ServerTime.Sub(c.Expires)))
		}
		return "The presigned URL's lifetime ran out." + when +
			" Presign a new URL with an X-Amz-Expires long enough for its use. If it died before its X-Amz-Expires, either the host that presigned it had a clock that was behind " +
			"(presign with a corrected clock: skewproxy presign), or it was signed with temporary credentials (an STS session, instance profile or Lambda role): " +
			"a URL never outlives the session token that signed it, so use long-term IAM user keys for lifetimes up to 7 days."
	case FailureExpiredToken:
		return "This is NOT a clock problem: the session token of the temporary credentials has expired. " +
			"Refresh the credentials (aws sso login, assume the role again, or use a credential provider that refreshes by itself instead of copied keys). " +
			"Re-signing with a corrected time will not help."
	case FailureSignatureMismatch:
		return "This is NOT a clock problem: AWS computed a different signature for the same request. " +
			"Check that the secret key belongs to the access key ID, that the region and service in the credential scope are right, " +
			"and the path and query encoding (S3 keys with spaces, '+' or non-ASCII characters are the usual cause); " +
			"also that nothing changed a signed header after signing."
	case FailureThrottled:
		return "This is NOT a clock problem: AWS is throttling the caller (a rate or concurrency limit). " +
			"Retry with backoff and limit concurrency; for Lambda, skewproxy's --lambda-max-inflight holds invokes in a queue at the proxy where waiting does not age their signatures."
	case FailureQueueTimeout:
		return "skewproxy held this Lambda invoke in its queue longer than --lambda-queue-timeout. " +
			"Raise --lambda-max-inflight or the function's concurrency, or lower the request rate."
	}
	return "Not recognised as an AWS clock, expiry, credentials or throttling error; skewproxy cannot explain it. " +
		"Paste the whole error: the line the AWS CLI prints, or the JSON or XML error body."
}

// Text renders the explanation for people: what failed, which clock is
// off and by how much, and what to do.
func (e Explanation) Text() string {
	var b strings.Builder
	switch e.Failure {
	case FailureNone:
		b.WriteString("Not a recognised AWS error.\n")
	default:
		fmt.Fprintf(&b, "%s (%s)\n", failureTitle(e.Failure), e.Failure)
	}
	switch {
	case e.SkewSeconds != nil && *e.SkewSeconds != 0:
		d := time.Duration(*e.SkewSeconds * float64(time.Second))
		fmt.Fprintf(&b, "Host clock: %s %s (signing time minus server time: %+.0fs)\n", humanDuration(d), e.HostClock, *e.SkewSeconds)
	case e.HostClock != HostClockUnknown:
		fmt.Fprintf(&b, "Host clock: %s (by how much is not in the message)\n", e.HostClock)
	case e.Failure == FailurePresignedExpired:
		b.WriteString("Host clock: not measurable from this error (only the presigning host's clock matters)\n")
	case e.Failure != FailureNone && !e.Failure.IsSkew():
		b.WriteString("Host clock: not the cause\n")
	}
	if !e.signingTime.IsZero() {
		fmt.Fprintf(&b, "Signing time: %s\n", stamp(e.signingTime))
	}
	if e.ServerTime != nil {
		fmt.Fprintf(&b, "Server time: %s\n", stamp(*e.ServerTime))
	}
	if !e.expires.IsZero() {
		fmt.Fprintf(&b, "Expired at: %s\n", stamp(e.expires))
	}
	fmt.Fprintf(&b, "What to do: %s\n", e.Advice)
	return b.String()
}

func failureTitle(f Failure) string {
	switch f {
	case FailureSignatureExpired:
		return "Signature expired"
	case FailureSignatureNotYetCurrent:
		return "Signature not yet current"
	case FailureRequestTimeTooSkewed:
		return "Request time too skewed"
	case FailurePresignedExpired:
		return "Presigned URL expired"
	case FailureExpiredToken:
		return "Security token expired"
	case FailureSignatureMismatch:
		return "Signature does not match"
	case FailureThrottled:
		return "Throttled"
	case FailureQueueTimeout:
		return "Timed out in skewproxy's Lambda queue"
	}
	return string(f)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// humanDuration renders |d| to the second in compact units: "20m3s",
// "1h", "3d4h".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	d = d.Round(time.Second)
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	return b.String()
}
