package proxy

import (
	"strings"
	"testing"
)

func TestAllowlist(t *testing.T) {
	cases := []struct {
		name            string
		allow           Allowlist
		service, region string
		wantFlag        string // "" = allowed
	}{
		{"zero value allows everything", Allowlist{}, "lambda", "eu-west-1", ""},
		{"service listed", Allowlist{Services: []string{"sts", "lambda"}}, "lambda", "eu-west-1", ""},
		{"service listed, other case", Allowlist{Services: []string{"Lambda"}}, "lambda", "eu-west-1", ""},
		{"service not listed", Allowlist{Services: []string{"sts"}}, "lambda", "us-east-1", "--allow-service"},
		{"no service derived", Allowlist{Services: []string{"sts"}}, "", "us-east-1", "--allow-service"},
		{"region listed", Allowlist{Regions: []string{"us-east-1"}}, "s3", "us-east-1", ""},
		{"region not listed", Allowlist{Regions: []string{"us-east-1"}}, "s3", "eu-west-1", "--allow-region"},
		{"both: region refused after service allowed", Allowlist{Services: []string{"s3"}, Regions: []string{"us-east-1"}}, "s3", "ap-south-1", "--allow-region"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.allow.refusal(tc.service, tc.region)
			if tc.wantFlag == "" {
				if got != "" {
					t.Fatalf("refused: %q", got)
				}
				return
			}
			if !strings.Contains(got, tc.wantFlag) {
				t.Fatalf("refusal %q does not name %s", got, tc.wantFlag)
			}
		})
	}
}
