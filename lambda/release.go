//go:build !kinlog_nonidempotent

package lambda

// nonIdempotentBuild is false in every build but the test variant (build tag
// kinlog_nonidempotent), which turns the progress protocol off to show what it prevents.
const nonIdempotentBuild = false
