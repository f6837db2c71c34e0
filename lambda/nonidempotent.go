//go:build kinlog_nonidempotent

package lambda

// nonIdempotentBuild: this build is the deliberately non-idempotent variant for tests (build
// tag kinlog_nonidempotent): objects under deterministic names, no progress record.
const nonIdempotentBuild = true
