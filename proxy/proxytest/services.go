package proxytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AccountID is the AWS account the fake answers for (STS GetCallerIdentity).
const AccountID = "123456789012"

// CallerARN is the ARN STS GetCallerIdentity returns.
const CallerARN = "arn:aws:iam::" + AccountID + ":user/proxytest"

// serveSTS answers an STS request whose signature checked out and returns
// the operation name.
func (a *AWS) serveSTS(w http.ResponseWriter, r *http.Request, body []byte, reqID string) string {
	params := r.URL.Query()
	if r.Method == http.MethodPost {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			awsError{status: 400, code: "MalformedInput", message: "The request body is not a valid form"}.write(w, protoQuery, reqID)
			return ""
		}
		for k, v := range form {
			params[k] = v
		}
	}
	action := params.Get("Action")
	if action != "GetCallerIdentity" {
		awsError{status: 400, code: "InvalidAction", message: fmt.Sprintf("Could not find operation %s for version 2011-06-15", action)}.write(w, protoQuery, reqID)
		return action
	}
	out := fmt.Sprintf(`<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>%s</Arn>
    <UserId>AIDAPROXYTEST0000001</UserId>
    <Account>%s</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>%s</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
`, CallerARN, AccountID, reqID)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(out))
	return action
}

// The API Gateway paths that answer a failure (after a valid signature),
// as API Gateway words them. Any other path answers 200 with a JSON echo
// {"method": ..., "path": ..., "body": ...}.
const (
	// APIGWExplicitDeny: 403 {"Message":"User is not authorized to access this resource with an explicit deny"}.
	APIGWExplicitDeny = "/explicit-deny"
	// APIGWImplicitDeny: 403 {"message":"User is not authorized to access this resource"}.
	APIGWImplicitDeny = "/implicit-deny"
	// APIGWUnauthorized: 401 {"message":"Unauthorized"}.
	APIGWUnauthorized = "/unauthorized"
	// APIGWAuthorizerError: 500 {"message": null}.
	APIGWAuthorizerError = "/authorizer-error"
	// APIGWIntegrationError: 502 {"message": "Internal server error"}.
	APIGWIntegrationError = "/integration-error"
	// APIGWIntegrationTimeout: 504 {"message": "Endpoint request timed out"}.
	APIGWIntegrationTimeout = "/integration-timeout"
)

// apigwFailures maps a path to the status, x-amzn-ErrorType and body.
var apigwFailures = map[string]struct {
	status int
	typ    string
	body   string
}{
	APIGWExplicitDeny:       {403, "AccessDeniedException", `{"Message":"User is not authorized to access this resource with an explicit deny"}`},
	APIGWImplicitDeny:       {403, "AccessDeniedException", `{"message":"User is not authorized to access this resource"}`},
	APIGWUnauthorized:       {401, "UnauthorizedException", `{"message":"Unauthorized"}`},
	APIGWAuthorizerError:    {500, "AuthorizerConfigurationException", `{"message": null}`},
	APIGWIntegrationError:   {502, "InternalServerErrorException", `{"message": "Internal server error"}`},
	APIGWIntegrationTimeout: {504, "", `{"message": "Endpoint request timed out"}`},
}

// serveAPIGateway answers an execute-api request whose signature checked
// out and returns the path as the operation.
func serveAPIGateway(w http.ResponseWriter, r *http.Request, body []byte) string {
	if f, ok := apigwFailures[r.URL.Path]; ok {
		w.Header().Set("Content-Type", "application/json")
		if f.typ != "" {
			w.Header().Set("X-Amzn-ErrorType", f.typ)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(f.body))
		return r.URL.Path
	}
	out, _ := json.Marshal(map[string]string{"method": r.Method, "path": r.URL.Path, "body": string(body)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	return r.URL.Path
}

// WebIdentity configures the fake's STS AssumeRoleWithWebIdentity.
type WebIdentity struct {
	// Token is the web identity token a caller must present.
	Token string
	// Credentials are handed out (with their Expires) on success.
	Credentials Credentials
}

// serveWebIdentity answers an AssumeRoleWithWebIdentity request, which STS
// takes unsigned; ok is false for any other request.
func (a *AWS) serveWebIdentity(w http.ResponseWriter, r *http.Request, body []byte, reqID string) (op string, ok bool) {
	params := r.URL.Query()
	if r.Method == http.MethodPost {
		if form, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range form {
				params[k] = v
			}
		}
	}
	if params.Get("Action") != "AssumeRoleWithWebIdentity" {
		return "", false
	}
	wi := a.opts.WebIdentity
	if params.Get("WebIdentityToken") != wi.Token {
		awsError{status: 400, code: "InvalidIdentityToken", message: "Couldn't retrieve verification key from your identity provider"}.write(w, protoQuery, reqID)
		return "AssumeRoleWithWebIdentity", true
	}
	c := wi.Credentials
	out := fmt.Sprintf(`<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>%s</AccessKeyId>
      <SecretAccessKey>%s</SecretAccessKey>
      <SessionToken>%s</SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::%s:assumed-role/proxytest/session</Arn>
      <AssumedRoleId>AROAPROXYTEST:session</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>%s</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
`, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expires.UTC().Format(time.RFC3339), AccountID, reqID)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(out))
	return "AssumeRoleWithWebIdentity", true
}
