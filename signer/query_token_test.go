package signer

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

func TestClientQueryTokenDropped(t *testing.T) {
	for _, useSDK := range []bool{false, true} {
		s := New(credentials.NewStaticCredentialsProvider("AKIDPROXY", "proxy-secret", ""), Options{UseSDKSigner: useSDK})
		req, err := http.NewRequest(http.MethodGet, "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Security-Token=client-token", nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Prepare(req)
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Sign(context.Background(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.URL.RawQuery, "client-token") || !strings.Contains(out.URL.RawQuery, "Action=GetCallerIdentity") {
			t.Errorf("UseSDKSigner=%v: outgoing query %q, want the client's token gone and the rest kept", useSDK, out.URL.RawQuery)
		}
	}
}
