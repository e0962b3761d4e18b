package timesource

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/beevik/ntp"
)

// QueryResult is one source's answer to the `skewproxy time` command.
type QueryResult struct {
	// Source is the --time-source value as given.
	Source string `json:"source"`
	// Offset is the host clock (plus the simulated offset) minus true time:
	// positive means the host is ahead.
	Offset time.Duration `json:"-"`
	// RTT is the round-trip delay of the query.
	RTT time.Duration `json:"-"`
	// Uncertainty bounds the error of Time: RTT/2 + root distance.
	Uncertainty time.Duration `json:"-"`
	// Stratum is the server's stratum.
	Stratum uint8 `json:"stratum"`
	// Leap is the leap indicator: "none", "insert", "delete" or
	// "unsynchronized".
	Leap string `json:"leap"`
	// Time is the true time the answer implies, read when it arrived.
	Time time.Time `json:"time"`
	// Err is why the source gave no usable answer; nil when it did.
	Err error `json:"-"`
}

// MarshalJSON renders durations as float seconds (offset_seconds,
// rtt_seconds, uncertainty_seconds, as /status does) and Err as a string.
func (r QueryResult) MarshalJSON() ([]byte, error) {
	type plain QueryResult
	out := struct {
		plain
		Offset      float64    `json:"offset_seconds"`
		RTT         float64    `json:"rtt_seconds"`
		Uncertainty float64    `json:"uncertainty_seconds"`
		Time        *time.Time `json:"time,omitempty"`
		Error       string     `json:"error,omitempty"`
	}{plain: plain(r), Offset: r.Offset.Seconds(), RTT: r.RTT.Seconds(), Uncertainty: r.Uncertainty.Seconds()}
	if !r.Time.IsZero() {
		out.Time = &r.Time
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	return json.Marshal(out)
}

// QueryAll queries each source once, in parallel, and returns the results
// in the order of sources. Offsets are relative to the real host clock.
func QueryAll(ctx context.Context, sources []string, timeout time.Duration) []QueryResult {
	return QueryAllWithOffset(ctx, sources, timeout, 0)
}

// QueryAllWithOffset is QueryAll with the host clock shifted by hostOffset
// (the --clock-offset simulation), so that Offset is what the shifted host
// would be off by.
func QueryAllWithOffset(ctx context.Context, sources []string, timeout, hostOffset time.Duration) []QueryResult {
	return queryAll(ctx, sources, timeout, hostOffset, SystemQuery, func() time.Time { return time.Now().Round(0) })
}

// queryAll is QueryAllWithOffset with the query and the host clock
// injected.
func queryAll(ctx context.Context, sources []string, timeout, hostOffset time.Duration, q QueryFunc, now func() time.Time) []QueryResult {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	out := make([]QueryResult, len(sources))
	var wg sync.WaitGroup
	for i, s := range sources {
		out[i].Source = s
		src, err := ParseSource(s)
		if err != nil {
			out[i].Err = err
			continue
		}
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
			defer cancel()
			resp, err := q(qctx, src.Addr(), ntp.QueryOptions{Timeout: timeout, GetSystemTime: now})
			if err != nil {
				out[i].Err = fmt.Errorf("query %s: %w", src, err)
				return
			}
			host := now()
			out[i].RTT = resp.RTT
			out[i].Stratum = resp.Stratum
			out[i].Leap = leapString(resp.Leap)
			out[i].Uncertainty = responseUncertainty(resp)
			out[i].Offset = hostOffset - resp.ClockOffset
			out[i].Time = host.Add(resp.ClockOffset)
			if err := checkResponse(resp); err != nil {
				out[i].Err = fmt.Errorf("%s: %w", src, err)
			}
		})
	}
	wg.Wait()
	return out
}

// FormatTable writes results as an aligned table: source, offset,
// uncertainty, round trip, stratum, leap, and the true time or the error.
// Write errors are the writer's to report (as with fmt.Fprintf).
func FormatTable(w io.Writer, rs []QueryResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tOFFSET\tUNCERTAINTY\tRTT\tSTRATUM\tLEAP\tTIME / ERROR")
	for _, r := range rs {
		if r.Err != nil && r.Time.IsZero() {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t%v\n", r.Source, r.Err)
			continue
		}
		last := r.Time.UTC().Format(time.RFC3339Nano)
		if r.Err != nil {
			last = r.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%+.6fs\t±%.6fs\t%.6fs\t%d\t%s\t%s\n",
			r.Source, r.Offset.Seconds(), r.Uncertainty.Seconds(), r.RTT.Seconds(), r.Stratum, r.Leap, last)
	}
	_ = tw.Flush()
}
