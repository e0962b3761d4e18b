package timesource_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/timesource"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

// closedUDPPort returns "127.0.0.1:PORT" where nothing listens.
func closedUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return "127.0.0.1:" + strconv.Itoa(port)
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestChronySyncsDespiteHostOffset(t *testing.T) {
	addr := ntptest.Start(t)
	tests := []struct {
		name   string
		offset time.Duration
	}{
		{"host 3h ahead", 3 * time.Hour},
		{"host 20m behind", -20 * time.Minute},
		{"host 10y behind", -10 * 365 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := timesource.New(timesource.Config{
				// An unreachable first source must not delay the answer.
				Sources:    []string{"ntp://" + closedUDPPort(t), "ntp://" + addr},
				HostOffset: tt.offset,
				BurstGap:   20 * time.Millisecond,
			})
			if d := time.Until(c.Now()); abs(d-tt.offset) > 5*time.Millisecond {
				t.Fatalf("before sync Now() is host+%v, want host+%v", d, tt.offset)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- c.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			select {
			case <-c.Ready():
				t.Logf("synced after %v", time.Since(start))
			case <-time.After(2 * time.Second):
				t.Fatalf("not synced within 2s: %+v", c.Status())
			}
			// Let the burst finish so that the filter holds its best sample
			// even on a loaded machine.
			time.Sleep(200 * time.Millisecond)
			before := time.Now()
			now := c.Now()
			after := time.Now()
			if now.Before(before.Add(-5*time.Millisecond)) || now.After(after.Add(5*time.Millisecond)) {
				t.Fatalf("Now() = %v, want within 5ms of the clock chrony serves [%v, %v]", now, before, after)
			}
			st := c.Status()
			if !st.Synced || st.Source != "ntp://"+addr || st.Smeared || st.Passive || st.Reason != "" {
				t.Fatalf("Status = %+v, want synced to ntp://%s", st, addr)
			}
			if abs(st.Offset-tt.offset) > 5*time.Millisecond {
				t.Fatalf("Offset = %v, want %v ± 5ms", st.Offset, tt.offset)
			}
			if st.Uncertainty <= 0 || st.Uncertainty > 50*time.Millisecond {
				t.Fatalf("Uncertainty = %v, want within (0, 50ms] on loopback", st.Uncertainty)
			}
			if abs(time.Since(st.LastSync)) > 2*time.Second {
				t.Fatalf("LastSync = %v, want within the last 2 s", st.LastSync)
			}
		})
	}
}

func TestPassiveObservationsCarryTheClock(t *testing.T) {
	dead := "ntp://" + closedUDPPort(t)
	c := timesource.New(timesource.Config{Sources: []string{dead}, HostOffset: -3 * 365 * 24 * time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(c.Status().Reason, "refused") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := c.Status()
	if st.Synced || !strings.HasPrefix(st.Reason, "no time source has answered yet: "+dead+": ") {
		t.Fatalf("Status = %+v, want unsynced naming %s", st, dead)
	}

	// A Date header: whole seconds of the true (real) time.
	// It returns the exchange's duration measured on the real clock.
	observe := func(source string, serverNow func() time.Time) time.Duration {
		start := time.Now()
		sent := c.Now()
		time.Sleep(3 * time.Millisecond) // the exchange
		server := serverNow().Truncate(time.Second)
		time.Sleep(3 * time.Millisecond)
		received := c.Now()
		rtt := time.Since(start)
		c.Observe(timesource.Observation{Source: source, ServerTime: server, Precision: time.Second, Sent: sent, Received: received})
		return rtt
	}
	rtt := observe("http-date:sts.amazonaws.com", time.Now)
	select {
	case <-c.Ready():
	default:
		t.Fatalf("not ready after an observation: %+v", c.Status())
	}
	if d := time.Until(c.Now()); abs(d) > time.Second {
		t.Fatalf("Now() is %v off true time after a Date observation, want within 1s", d)
	}
	st = c.Status()
	if !st.Synced || !st.Passive || st.Source != "http-date:sts.amazonaws.com" || st.Precision != time.Second {
		t.Fatalf("Status = %+v, want synced passively to the Date header", st)
	}
	if st.Uncertainty < 500*time.Millisecond || st.Uncertainty > 500*time.Millisecond+rtt/2+time.Millisecond {
		t.Fatalf("Uncertainty = %v, want Precision/2 + RTT/2 = 0.5 s + %v", st.Uncertainty, rtt/2)
	}

	// The server time in a skew error says true time is 10 minutes later
	// than the estimate: far beyond both uncertainties, so it wins at once.
	skewed := func() time.Time { return time.Now().Add(10 * time.Minute) }
	observe("skew-error:lambda.us-east-1.amazonaws.com", skewed)
	if d := c.Now().Sub(skewed()); abs(d) > time.Second {
		t.Fatalf("Now() is %v off the skew error's server time, want within 1s", d)
	}
	if st := c.Status(); st.Source != "skew-error:lambda.us-east-1.amazonaws.com" {
		t.Fatalf("Source = %q, want the skew error", st.Source)
	}
	// A Date header that agrees with the corrected estimate changes nothing
	// visible beyond its precision.
	observe("http-date:sts.amazonaws.com", skewed)
	if d := c.Now().Sub(skewed()); abs(d) > time.Second {
		t.Fatalf("Now() is %v off after an agreeing observation", d)
	}
}

func TestQueryAgainstChrony(t *testing.T) {
	addr := ntptest.Start(t)
	dead := "ntp://" + closedUDPPort(t)
	rs := timesource.QueryAllWithOffset(context.Background(), []string{"ntp://" + addr, dead, "time.aws.com"}, time.Second, -20*time.Minute)
	if len(rs) != 3 {
		t.Fatalf("got %d results, want 3", len(rs))
	}
	ok := rs[0]
	if ok.Err != nil || ok.Stratum < 8 || ok.Leap != "none" {
		t.Fatalf("chrony result = %+v", ok)
	}
	// One query: its error is bounded by its uncertainty (RTT/2 + root
	// distance), which a loaded machine may push past 5 ms.
	if tol := max(5*time.Millisecond, ok.Uncertainty); abs(ok.Offset+20*time.Minute) > tol {
		t.Fatalf("Offset = %v, want -20m ± %v", ok.Offset, tol)
	}
	if abs(time.Since(ok.Time)) > time.Second || ok.Uncertainty <= 0 || ok.RTT <= 0 {
		t.Fatalf("chrony result = %+v", ok)
	}
	if rs[1].Err == nil || !strings.Contains(rs[1].Err.Error(), "refused") {
		t.Fatalf("closed port result = %+v, want connection refused", rs[1])
	}
	if rs[2].Err == nil || !strings.Contains(rs[2].Err.Error(), "missing scheme") {
		t.Fatalf("bad source result = %+v, want a parse error", rs[2])
	}

	var table bytes.Buffer
	timesource.FormatTable(&table, rs)
	out := table.String()
	if !strings.Contains(out, "-1199.99") && !strings.Contains(out, "-1200.00") {
		t.Errorf("table lacks the -1200 s offset:\n%s", out)
	}
	for _, want := range []string{"SOURCE", "ntp://" + addr, dead, "refused", "missing scheme"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	js, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if off, _ := back[0]["offset_seconds"].(float64); off > -1199.99 || off < -1200.01 {
		t.Errorf("offset_seconds = %v in %s", back[0]["offset_seconds"], js)
	}
	if back[1]["error"] == nil || back[0]["error"] != nil {
		t.Errorf("error fields wrong in %s", js)
	}
}

func TestQueryAllHonoursContext(t *testing.T) {
	// A bound loopback socket that never replies: only ctx ends the query.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	rs := timesource.QueryAll(ctx, []string{"ntp://" + silent.LocalAddr().String()}, 5*time.Second)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("QueryAll took %v despite a 100ms context", el)
	}
	if rs[0].Err == nil {
		t.Fatalf("result = %+v, want an error", rs[0])
	}
}
