package proxy

import (
	"net/http"
	"slices"
	"strings"
)

// Allowlist limits the blast radius of the proxy's credentials: it signs
// only for the listed signing names and regions. An empty list allows
// every value.
type Allowlist struct {
	// Services are signing names ("s3", "lambda", "sts"), matched without
	// regard to case.
	Services []string
	// Regions are signing regions ("us-east-1"), matched without regard
	// to case.
	Regions []string
}

// refusal says why the allowlist refuses service and region, naming the
// flag to change; "" when it allows them.
func (a Allowlist) refusal(service, region string) string {
	if len(a.Services) > 0 && !containsFold(a.Services, service) {
		return "skewproxy does not sign for service " + quoteOrNone(service) + ": it is not in --allow-service (" + strings.Join(a.Services, ", ") + ")"
	}
	if len(a.Regions) > 0 && !containsFold(a.Regions, region) {
		return "skewproxy does not sign for region " + quoteOrNone(region) + ": it is not in --allow-region (" + strings.Join(a.Regions, ", ") + ")"
	}
	return ""
}

func containsFold(list []string, v string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), v) })
}

func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return `"` + s + `"`
}

// refuseNotAllowed answers 403 AccessDenied, before anything is signed or
// sent, for a request outside Proxy.Allow.
func (x *exchange) refuseNotAllowed(req *http.Request) *http.Response {
	msg := x.e.p.Allow.refusal(x.info.Service, x.info.Region)
	if msg == "" {
		return nil
	}
	x.e.log.Warn("request not sent: outside the signing allowlist", "host", x.host,
		"service", x.info.Service, "region", x.info.Region)
	return x.finishLocal(req, reply(req, x.info.Service, http.StatusForbidden, "AccessDenied", msg))
}
