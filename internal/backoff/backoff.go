// Package backoff is the jittered exponential backoff kinlog's pipeline-level retries share
// (reader throttling, shard sync, S3 uploads). Single AWS calls are retried by the SDK's
// own retryer, not with this.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff yields waits drawn from [d/2, d), where d starts at Min and doubles up to Max.
// The zero value waits 0; it is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next wait.
func (b *Backoff) Next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.Min
	case b.cur < b.Max:
		b.cur = min(2*b.cur, b.Max)
	}
	half := b.cur / 2
	if half <= 0 {
		return b.cur
	}
	return half + rand.N(half)
}

// Reset starts the sequence again at Min.
func (b *Backoff) Reset() { b.cur = 0 }
