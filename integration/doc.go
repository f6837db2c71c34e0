// Package integration holds end-to-end and fault tests that run against the local AWS stack
// (infra/local). They find the services through the SDK's AWS_ENDPOINT_URL_* variables.
// TestCeleryAgent also runs Debian's Celery, redis-server and logrotate (examples/celery),
// which `infra/local/stack up` installs when it runs as root.
package integration
