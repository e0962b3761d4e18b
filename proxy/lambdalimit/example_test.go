package lambdalimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
)

func ExampleRecognize() {
	req := httptest.NewRequest(http.MethodPost,
		"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn%3Aprod/invocations", nil)
	inv, ok := lambdalimit.Recognize(req)
	fmt.Println(ok, inv.Function, inv.Qualifier, inv.Type)
	// Output: true my-fn prod RequestResponse
}

func ExampleLimiter_Admit() {
	l := lambdalimit.New(lambdalimit.Config{
		MaxInflight:         20,
		FunctionMaxInflight: map[string]int{"arn:aws:lambda:us-east-1:123456789012:function:my-fn": 5},
	})
	req := httptest.NewRequest(http.MethodPost,
		"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-fn/invocations", nil)

	release, waited, err := l.Admit(context.Background(), req)
	if err != nil {
		// A *Throttle carries its own answer to the client: th.Answer().
		fmt.Println("refused:", err)
		return
	}
	// ... sign the request now, send it, stream the answer back ...
	fmt.Println("in flight:", l.Inflight(), "waited:", waited)
	release(http.StatusOK, http.Header{})
	st := l.Status().Functions["my-fn"]
	fmt.Println("in flight:", l.Inflight(), "limit:", st.Limit)
	// Output:
	// in flight: 1 waited: 0s
	// in flight: 0 limit: 5
}
