package ntptest

import (
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func TestStartServesHostClock(t *testing.T) {
	addr := Start(t)
	resp, err := ntp.QueryWithOptions(addr, ntp.QueryOptions{Timeout: time.Second})
	if err != nil {
		t.Fatalf("query chrony at %s: %v", addr, err)
	}
	if err := resp.Validate(); err != nil {
		t.Fatalf("chrony answer invalid: %v", err)
	}
	if resp.Stratum < 8 || resp.Stratum > 9 {
		t.Errorf("stratum = %d, want 8 or 9 (local stratum 8)", resp.Stratum)
	}
	if off := resp.ClockOffset; off > 5*time.Millisecond || off < -5*time.Millisecond {
		t.Errorf("chrony serves a clock %v off the host clock, want within 5ms", off)
	}
}

func TestStartShiftedServesTheShiftedWorld(t *testing.T) {
	cases := []struct {
		name  string
		shift time.Duration
	}{
		{"two hours ahead", 2 * time.Hour},
		{"ten years behind", -10 * 365 * 24 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := StartShifted(t, tc.shift)
			resp, err := ntp.QueryWithOptions(addr, ntp.QueryOptions{Timeout: time.Second})
			if err != nil {
				t.Fatalf("query chrony at %s: %v", addr, err)
			}
			if err := resp.Validate(); err != nil {
				t.Fatalf("chrony answer invalid: %v", err)
			}
			if off := resp.ClockOffset - tc.shift; off > 50*time.Millisecond || off < -50*time.Millisecond {
				t.Errorf("chrony serves the host clock %v, want %v (within 50ms)", resp.ClockOffset, tc.shift)
			}
		})
	}
}
