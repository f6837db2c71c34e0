// Package integration holds end-to-end and fault tests that run against the local AWS stack
// (infra/local). They find the services through the SDK's AWS_ENDPOINT_URL_* variables.
package integration
