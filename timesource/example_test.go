package timesource_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/skewproxy/skewproxy/timesource"
)

func ExampleParseSource() {
	for _, s := range []string{"ntp://169.254.169.123", "ntp://[fd00:ec2::123]", "ntp://127.0.0.1:11123", "time.aws.com"} {
		src, err := timesource.ParseSource(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(src, src.Addr())
	}
	// Output:
	// ntp://169.254.169.123 169.254.169.123:123
	// ntp://[fd00:ec2::123] [fd00:ec2::123]:123
	// ntp://127.0.0.1:11123 127.0.0.1:11123
	// error: time source "time.aws.com": missing scheme: want ntp://HOST[:PORT]
}

func ExampleNew() {
	c := timesource.New(timesource.Config{
		Sources:    []string{"ntp://169.254.169.123", "ntp://time.aws.com"},
		HostOffset: -20 * time.Minute, // --clock-offset
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	// Sign with c.Now(); serve /readyz from c.Status().Synced or c.Ready().
	select {
	case <-c.Ready():
		fmt.Println("synced:", c.Status().Source)
	case <-time.After(2 * time.Second):
		fmt.Println("not synced:", c.Status().Reason)
	}
	// No Output line: the example is compiled, not run (it would leave
	// loopback).
}

func ExampleDateProbe_Probe() {
	build := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // stamped at build time
	c := timesource.New(timesource.Config{
		Sources:   []string{"ntp://169.254.169.123"},
		NotBefore: build,
	})
	// Before NTP answers, or where UDP port 123 is blocked, bootstrap from
	// one HTTPS Date header; the first NTP answer replaces it.
	probe := timesource.DateProbe{NotBefore: build}
	o, err := probe.Probe(context.Background(), c, "sts.amazonaws.com", "sts.amazonaws.com:443")
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Observe(o)
	fmt.Println(c.Status().Source) // https-date:sts.amazonaws.com
	// No Output line: the example is compiled, not run (it would leave
	// loopback).
}

func ExampleFormatTable() {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	timesource.FormatTable(os.Stdout, []timesource.QueryResult{
		{Source: "ntp://169.254.169.123", Offset: -20 * time.Minute, RTT: 300 * time.Microsecond,
			Uncertainty: 400 * time.Microsecond, Stratum: 3, Leap: "none", Time: t0},
		{Source: "ntp://time.aws.com", Err: errors.New("i/o timeout")},
	})
	// Output:
	// SOURCE                 OFFSET         UNCERTAINTY  RTT        STRATUM  LEAP  TIME / ERROR
	// ntp://169.254.169.123  -1200.000000s  ±0.000400s   0.000300s  3        none  2026-03-01T12:00:00Z
	// ntp://time.aws.com     -              -            -          -        -     i/o timeout
}
