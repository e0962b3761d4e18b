package lambdalimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// invokeReq builds a synchronous Invoke request for ident as an SDK sends it.
func invokeReq(ident string) *http.Request {
	return httptest.NewRequest(http.MethodPost,
		"http://lambda.us-east-1.amazonaws.com/2015-03-31/functions/"+url.PathEscape(ident)+"/invocations", nil)
}

// admit calls Admit with a bounded context and fails the test on error.
func admit(t *testing.T, l *Limiter, ident string) func(int, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rel, _, err := l.Admit(ctx, invokeReq(ident))
	if err != nil {
		t.Fatalf("Admit(%s): %v", ident, err)
	}
	return rel
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func ok200(rel func(int, http.Header)) { rel(http.StatusOK, http.Header{}) }
