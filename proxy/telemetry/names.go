package telemetry

import "go.opentelemetry.io/otel/attribute"

// Span attribute keys. The names are a contract (design.md): dashboards and
// outside checks query them.
const (
	KeyRPCSystem          = attribute.Key("rpc.system")
	KeyRPCService         = attribute.Key("rpc.service")
	KeyRPCMethod          = attribute.Key("rpc.method")
	KeyCloudRegion        = attribute.Key("cloud.region")
	KeyServerAddress      = attribute.Key("server.address")
	KeyHTTPRequestMethod  = attribute.Key("http.request.method")
	KeyHTTPResponseStatus = attribute.Key("http.response.status_code")
	KeyAWSRequestID       = attribute.Key("aws.request_id")
	KeyErrorType          = attribute.Key("error.type")

	KeyClockOffsetMS        = attribute.Key("skewproxy.clock.offset_ms")
	KeyClockSource          = attribute.Key("skewproxy.clock.source")
	KeyClockUncertaintyMS   = attribute.Key("skewproxy.clock.uncertainty_ms")
	KeyClientSignatureAgeMS = attribute.Key("skewproxy.client_signature.age_ms")
	// KeyClientSignatureVersion names the pre-SigV4 signature the proxy
	// upgraded ("s3v2", "s3v2-query", "2", "1", "0"); absent for SigV4.
	KeyClientSignatureVersion = attribute.Key("skewproxy.client_signature.version")
	KeyQueueAgeMS             = attribute.Key("skewproxy.queue.age_ms")
	KeyFailure                = attribute.Key("skewproxy.failure")
	KeyRetried                = attribute.Key("skewproxy.retried")
	KeyAPIGatewayFailure      = attribute.Key("skewproxy.apigw.failure")
	KeySigningTime            = attribute.Key("skewproxy.signing_time")
)

// Span event names.
const (
	EventQueued   = "queued"
	EventDequeued = "dequeued"
	EventSigned   = "signed"
	EventRetried  = "retried"
)

// rpcSystem is the value of rpc.system for every proxied request.
const rpcSystem = "aws-api"

// serviceIDs maps SigV4 signing names to the SDK service ids that the
// OpenTelemetry AWS SDK instrumentations put in rpc.service. A signing name
// missing here is used as it is (execute-api, for one, has no SDK client).
var serviceIDs = map[string]string{
	"apigateway":     "API Gateway",
	"athena":         "Athena",
	"cloudformation": "CloudFormation",
	"dynamodb":       "DynamoDB",
	"ec2":            "EC2",
	"ecr":            "ECR",
	"ecs":            "ECS",
	"eks":            "EKS",
	"events":         "EventBridge",
	"firehose":       "Firehose",
	"glue":           "Glue",
	"iam":            "IAM",
	"kinesis":        "Kinesis",
	"kms":            "KMS",
	"lambda":         "Lambda",
	"logs":           "CloudWatch Logs",
	"monitoring":     "CloudWatch",
	"route53":        "Route 53",
	"s3":             "S3",
	"sagemaker":      "SageMaker",
	"secretsmanager": "Secrets Manager",
	"sns":            "SNS",
	"sqs":            "SQS",
	"ssm":            "SSM",
	"states":         "SFN",
	"sts":            "STS",
	"xray":           "XRay",
}

// ServiceID returns the SDK service id for a SigV4 signing name ("lambda" ->
// "Lambda", "s3" -> "S3"); unknown names come back unchanged and "" becomes
// "unknown".
func ServiceID(signingName string) string {
	if signingName == "" {
		return "unknown"
	}
	if id, ok := serviceIDs[signingName]; ok {
		return id
	}
	return signingName
}
