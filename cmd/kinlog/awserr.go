package main

import (
	"errors"
	"net"
	"strings"

	"github.com/aws/smithy-go"
)

// hintFor returns what to do about an AWS error, when that is known: a missing resource,
// missing or rejected credentials, a denied action, an endpoint that does not answer. The
// error itself is printed too; the hint is the next line.
func hintFor(err error) string {
	// The SDK has no error type for an empty credential chain; its message is stable.
	if msg := err.Error(); strings.Contains(msg, "failed to retrieve credentials") || strings.Contains(msg, "no EC2 IMDS role found") || strings.Contains(msg, "get credentials:") {
		return `no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for the local stack: eval "$(infra/local/stack env)")`
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ResourceNotFoundException":
			return "a stream or table named in the configuration does not exist in this account and region: check the name, AWS_REGION and the AWS_ENDPOINT_URL_* variables (kinlog init creates them)"
		case "NoSuchBucket":
			return "the bucket does not exist: check sink.s3.bucket (or --bucket), AWS_REGION and AWS_ENDPOINT_URL_S3 (kinlog init creates it)"
		case "AccessDenied", "AccessDeniedException", "Forbidden":
			return "access denied: the credentials' policy does not allow this call (" + operationOf(err) + "); infra/terraform has the policies kinlog needs"
		case "UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException":
			return "the credentials were rejected (" + ae.ErrorCode() + "): check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and that they belong to the endpoint's account"
		}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "nothing answers at " + oe.Addr.String() + ": check the AWS_ENDPOINT_URL_* variables; for the local stack, is it up? (infra/local/stack status)"
	}
	return ""
}

// operationOf names the API operation of an SDK error ("Kinesis: PutRecords").
func operationOf(err error) string {
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		return oe.ServiceID + " " + oe.OperationName
	}
	return "the call"
}
