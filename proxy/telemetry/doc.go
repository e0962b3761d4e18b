// Package telemetry turns the proxy's per-request events into OpenTelemetry
// spans and metrics: one client span per proxied AWS request that says how
// far off the host clock was, how long the request waited and which failure
// it hit, plus the skewproxy_* metrics named in design.md.
//
// It uses only the OpenTelemetry API; the SDK and exporters are installed by
// cmd/skewproxy. It is not a place for protocol logic: it never classifies
// AWS answers itself (the signer does) and it never reads request bodies,
// credentials, signatures or Authorization values.
package telemetry
