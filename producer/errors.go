package producer

import (
	"errors"
	"fmt"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// Errors returned by [Producer.Put] and its variants, or carried by a [Result]. Match them
// with errors.Is: the returned errors wrap them with details.
var (
	// ErrClosed is returned by Put after Close, and carried by the results of records that
	// Close gave up on.
	ErrClosed = errors.New("producer: closed")
	// ErrBufferFull is returned by TryPut when the buffer has no room for the record.
	ErrBufferFull = errors.New("producer: buffer full")
	// ErrInvalidPartitionKey is returned for an empty partition key, one longer than 256
	// characters, or one that is not valid UTF-8.
	ErrInvalidPartitionKey = errors.New("producer: invalid partition key")
	// ErrInvalidExplicitHashKey is returned for an explicit hash key that is not a decimal
	// integer in 0 .. 2^128-1.
	ErrInvalidExplicitHashKey = errors.New("producer: invalid explicit hash key")
	// ErrRecordTooLarge is returned for a record whose partition key plus data exceed the
	// maximum record size ([WithMaxRecordSize]).
	ErrRecordTooLarge = errors.New("producer: record too large")
	// ErrRecordExpired is carried by the result of a record that could not be delivered
	// within its time to live ([WithRecordTTL]); the error also wraps the last failure.
	ErrRecordExpired = errors.New("producer: record time to live expired")
)

// EntryError is the failure Kinesis reported for one entry of a PutRecords request.
type EntryError struct {
	// Code is the entry's ErrorCode, such as ProvisionedThroughputExceededException,
	// InternalFailure or KMSAccessDeniedException.
	Code string
	// Message is the entry's ErrorMessage.
	Message string
}

// Error implements error.
func (e *EntryError) Error() string {
	return fmt.Sprintf("kinesis rejected record: %s: %s", e.Code, e.Message)
}

// Retryable reports whether the producer retries entries failing with this code
// (ProvisionedThroughputExceededException, InternalFailure).
func (e *EntryError) Retryable() bool { return retryableEntryCode(e.Code) }

func retryableEntryCode(code string) bool {
	switch code {
	case "ProvisionedThroughputExceededException", "InternalFailure", "InternalFailureException":
		return true
	}
	return false
}

// DeliveryError is returned by [Producer.Close] when records were not delivered: records
// whose failure was reported during the producer's life plus those Close gave up on.
type DeliveryError struct {
	// Failed is the number of user records reported failed since the producer started.
	Failed uint64
	// Err is the most recent failure.
	Err error
}

// Error implements error.
func (e *DeliveryError) Error() string {
	return fmt.Sprintf("producer: %d records not delivered; last error: %v", e.Failed, e.Err)
}

// Unwrap returns the most recent failure.
func (e *DeliveryError) Unwrap() error { return e.Err }

// retryableRequestError reports whether a whole PutRecords or ListShards call that failed
// with err is worth retrying. The SDK reports every failure to get a response — connection
// refused or reset, EOF, a TLS or DNS failure, the deadline of [WithRequestTimeout] — as an
// *awshttp.ResponseError with status code 0 wrapped in an OperationError: those are
// retried, as are throttling and server faults (HTTP 5xx and 429, or a server-fault code).
// Only faults of the request itself fail at once: an error response with a 4xx status and
// a client-fault code (stream not found, access denied, validation, KMS key disabled or not
// found), and the SDK's own parameter validation or serialization failures.
func retryableRequestError(err error) bool {
	var invalid smithy.InvalidParamsError
	var serialization *smithy.SerializationError
	if errors.As(err, &invalid) || errors.As(err, &serialization) {
		return false // the SDK refused the request before sending it
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		// No error response was read: a transport failure, or a response the SDK could not
		// parse. Whether the server applied the request is unknown; sending it again is the
		// only way not to lose it.
		return true
	}
	if retryableErrorCode(apiErr.ErrorCode()) {
		return true
	}
	status := 0
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	switch {
	case status >= 500 || status == 429:
		return true
	case apiErr.ErrorFault() == smithy.FaultServer:
		return true
	case status >= 400:
		return false
	case apiErr.ErrorFault() == smithy.FaultClient:
		return false
	}
	return true
}

// retryableErrorCode reports whether an error code names throttling or a transient fault,
// whatever status it came with.
func retryableErrorCode(code string) bool {
	switch code {
	case "ProvisionedThroughputExceededException", "InternalFailure", "InternalFailureException",
		"LimitExceededException", "ServiceUnavailable", "ServiceUnavailableException",
		"ThrottlingException", "Throttling", "ThrottledException", "RequestThrottled",
		"RequestThrottledException", "TooManyRequestsException", "RequestTimeout",
		"RequestTimeoutException", "RequestLimitExceeded", "SlowDown", "KMSThrottlingException":
		return true
	}
	return false
}
