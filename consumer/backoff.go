package consumer

import (
	"math/rand/v2"
	"time"
)

// backoff is a jittered exponential backoff: each wait is drawn from [d/2, d) where d
// doubles from min up to max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	if half <= 0 {
		return b.cur
	}
	return half + rand.N(half)
}

func (b *backoff) reset() { b.cur = 0 }
